package charts_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// The markers around the generated values table in kropipe/README.md.
const (
	valuesBegin = "<!-- values: generated from values.yaml by charts/readme_test.go; do not edit -->"
	valuesEnd   = "<!-- end of values -->"
)

// valueRow is one documented value: a key whose comment starts with "# --" (helm-docs' mark).
type valueRow struct {
	key, typ, def, doc string
}

// valueRows reads values.yaml's documented keys, in file order.
func valueRows(values []byte) ([]valueRow, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a map of values")
	}
	var rows []valueRow
	var walk func(prefix string, m *yaml.Node) error
	walk = func(prefix string, m *yaml.Node) error {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			name := prefix + k.Value
			if text, ok := docComment(k.HeadComment); ok {
				def, err := defaultOf(v)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				rows = append(rows, valueRow{key: name, typ: typeOf(v), def: def, doc: text})
				continue
			}
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				if err := walk(name+".", v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return rows, walk("", doc.Content[0])
}

// docComment is the text of a key's comment from its "# --" line on, joined into one line.
func docComment(head string) (string, bool) {
	lines := strings.Split(head, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "# --") {
			start = i
		}
	}
	if start < 0 {
		return "", false
	}
	var words []string
	for i, l := range lines[start:] {
		l = strings.TrimPrefix(strings.TrimSpace(l), "#")
		if i == 0 {
			l = strings.TrimPrefix(strings.TrimSpace(l), "--")
		}
		if l = strings.TrimSpace(l); l != "" {
			words = append(words, l)
		}
	}
	return strings.Join(words, " "), true
}

func typeOf(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch v.Tag {
	case "!!int":
		return "int"
	case "!!bool":
		return "bool"
	case "!!float":
		return "number"
	}
	return "string"
}

// defaultOf is the value as compact JSON, as `--set-json` would take it.
func defaultOf(v *yaml.Node) (string, error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return "", err
	}
	b, err := json.Marshal(x)
	return string(b), err
}

// valuesTable is the Markdown table of values.yaml's documented keys.
func valuesTable(values []byte) (string, error) {
	rows, err := valueRows(values)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n| --- | --- | --- | --- |\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", r.key, r.typ, cell(r.def), cell(r.doc))
	}
	return b.String(), nil
}

// replaceBetween puts body between the begin and end marker lines of doc.
func replaceBetween(doc, begin, end, body string) (string, error) {
	i := strings.Index(doc, begin+"\n")
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q ... %q section", begin, end)
	}
	return doc[:i+len(begin)+1] + body + doc[j:], nil
}
