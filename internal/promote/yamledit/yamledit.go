// Package yamledit changes one scalar in a YAML file and leaves every other byte alone:
// comments, key order, quoting, blank lines, indentation and line endings survive an edit.
//
// The tree (kustomize/kyaml RNodes) is used only to find the scalar; the new bytes are
// spliced into the original text at the scalar's position, because re-marshalling the
// tree reformats the file and destroys what its owners wrote by hand.
package yamledit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Errors a caller can test with errors.Is. They are always wrapped in a *KeyError
// that says which key and which part of it failed.
var (
	ErrInvalidYAML  = errors.New("not valid YAML")
	ErrKeyNotFound  = errors.New("key not found")
	ErrNotScalar    = errors.New("not a scalar")
	ErrAmbiguous    = errors.New("key found in several documents")
	ErrUnsupported  = errors.New("unsupported scalar form")
	ErrDuplicateKey = errors.New("duplicate key")
	ErrTooLarge     = errors.New("file too large")
)

// MaxFileSize is the largest file Get and Set read (1 MiB, the limit cmp-sidecar
// renders with): an instance file is a few hundred bytes, and parsing a huge one
// costs hundreds of megabytes.
const MaxFileSize = 1 << 20

// KeyError reports why a key could not be read or written. File is empty unless the
// caller went through GetFile/SetFile or filled it in.
type KeyError struct {
	File   string
	Key    string
	Detail string // a sentence in the user's nouns, e.g. `"spec.values" has no key "deployment"`
	Err    error  // one of the Err* sentinels
}

func (e *KeyError) Error() string {
	where := ""
	if e.File != "" {
		where = " in " + e.File
	}
	if e.Detail == "" {
		return fmt.Sprintf("key %s%s: %v", e.Key, where, e.Err)
	}
	return fmt.Sprintf("key %s%s: %v: %s", e.Key, where, e.Err, e.Detail)
}

func (e *KeyError) Unwrap() error { return e.Err }

// Get returns the value of the scalar at the dotted key path (for example
// "spec.values.deployment.tag"). Path parts may also be list selectors understood by
// kyaml ("[name=app]") or indexes ("0").
func Get(data []byte, key string) (string, error) {
	loc, err := locate(data, key)
	if err != nil {
		return "", err
	}
	return loc.node.Value, nil
}

// Set returns data with the scalar at key replaced by value. Only the bytes of that
// scalar change. The original quoting style is kept; a plain scalar is double-quoted
// when writing it plain would change how YAML reads it (1.10 would become a float,
// sha256:… contains a colon). The result is re-parsed and compared with the input
// before it is returned, so a bug here surfaces as an error, never as a damaged file.
func Set(data []byte, key, value string) ([]byte, error) {
	loc, err := locate(data, key)
	if err != nil {
		return nil, err
	}
	if loc.node.Value == value {
		return data, nil
	}
	start, end, err := scalarSpan(data, loc)
	if err != nil {
		return nil, &KeyError{Key: key, Err: ErrUnsupported, Detail: err.Error()}
	}
	repl := render(loc.node, value, loc.flow)
	out := make([]byte, 0, len(data)-(end-start)+len(repl))
	out = append(out, data[:start]...)
	out = append(out, repl...)
	out = append(out, data[end:]...)
	if err := verify(data, out, key, value); err != nil {
		return nil, &KeyError{Key: key, Err: ErrUnsupported, Detail: err.Error()}
	}
	return out, nil
}

// GetFile is Get on a file; errors name the file.
func GetFile(path, key string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v, err := Get(data, key)
	return v, withFile(err, path)
}

// SetFile is Set on a file, written back with its original permissions; errors name
// the file. It reports whether the file changed.
func SetFile(path, key, value string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	out, err := Set(data, key, value)
	if err != nil {
		return false, withFile(err, path)
	}
	if bytes.Equal(out, data) {
		return false, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return true, os.WriteFile(path, out, st.Mode().Perm())
}

func withFile(err error, file string) error {
	var ke *KeyError
	if errors.As(err, &ke) && ke.File == "" {
		ke.File = file
	}
	return err
}

// location is the scalar found for a key.
type location struct {
	node *yaml.Node
	flow bool // inside a flow collection: ",]}" end a plain scalar there
}

// SplitKey splits a dotted key path into its parts. Dots inside a list selector
// ("[name=a.b]") do not split.
func SplitKey(key string) []string {
	var parts []string
	depth, last := 0, 0
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case '.':
			if depth == 0 {
				parts = append(parts, key[last:i])
				last = i + 1
			}
		}
	}
	return append(parts, key[last:])
}

func parseDocs(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
}

func locate(data []byte, key string) (location, error) {
	if len(data) > MaxFileSize {
		return location{}, &KeyError{Key: key, Err: ErrTooLarge,
			Detail: fmt.Sprintf("it is %d bytes and the promoter edits files of at most %d (1 MiB, as cmp-sidecar renders): move the rest out of the file", len(data), MaxFileSize)}
	}
	parts := SplitKey(key)
	for _, p := range parts {
		if p == "" {
			return location{}, &KeyError{Key: key, Err: ErrKeyNotFound, Detail: "the key path has an empty part"}
		}
	}
	docs, err := parseDocs(data)
	if err != nil {
		return location{}, &KeyError{Key: key, Err: ErrInvalidYAML, Detail: err.Error()}
	}
	var (
		found    []location
		foundIn  []int
		firstErr error
	)
	for i, doc := range docs {
		if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
			continue
		}
		loc, err := walk(doc.Content[0], key, parts)
		if err != nil {
			if firstErr == nil || !errors.Is(err, ErrKeyNotFound) {
				firstErr = err
			}
			if !errors.Is(err, ErrKeyNotFound) {
				return location{}, err
			}
			continue
		}
		found = append(found, loc)
		foundIn = append(foundIn, i+1)
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return location{}, &KeyError{Key: key, Err: ErrAmbiguous,
			Detail: fmt.Sprintf("documents %v all have it; keep one per file", foundIn)}
	case firstErr != nil:
		return location{}, firstErr
	default:
		return location{}, &KeyError{Key: key, Err: ErrKeyNotFound, Detail: "the file has no YAML document"}
	}
}

// walk follows the path one part at a time with kyaml's PathGetter so that the error
// can name the first part that is missing.
func walk(root *yaml.Node, key string, parts []string) (location, error) {
	cur := yaml.NewRNode(root)
	flow := root.Style&yaml.FlowStyle != 0
	for i, part := range parts {
		y := cur.YNode()
		if y.Kind == yaml.AliasNode {
			return location{}, &KeyError{Key: key, Err: ErrUnsupported,
				Detail: fmt.Sprintf("%q is an alias (*%s); edit the anchor instead", strings.Join(parts[:i], "."), y.Value)}
		}
		if y.Kind != yaml.MappingNode && y.Kind != yaml.SequenceNode {
			return location{}, &KeyError{Key: key, Err: ErrKeyNotFound,
				Detail: fmt.Sprintf("%q is a scalar, not a map", strings.Join(parts[:i], "."))}
		}
		if err := duplicates(y, key, parts[:i], part); err != nil {
			return location{}, err
		}
		// kyaml reads "-" as a list's last element and indexes an empty list at -1 (a
		// panic, found by FuzzSet): an empty list has no such element.
		if y.Kind == yaml.SequenceNode && len(y.Content) == 0 {
			return location{}, &KeyError{Key: key, Err: ErrKeyNotFound,
				Detail: fmt.Sprintf("%s is an empty list, it has no %q", orRoot(strings.Join(parts[:i], ".")), part)}
		}
		next, err := cur.Pipe(yaml.Lookup(part))
		if err != nil || next == nil {
			return location{}, &KeyError{Key: key, Err: ErrKeyNotFound,
				Detail: fmt.Sprintf("%s has no %q", orRoot(strings.Join(parts[:i], ".")), part)}
		}
		cur = next
		if cur.YNode().Style&yaml.FlowStyle != 0 {
			flow = true
		}
	}
	n := cur.YNode()
	switch n.Kind {
	case yaml.ScalarNode:
		return location{node: n, flow: flow}, nil
	case yaml.AliasNode:
		return location{}, &KeyError{Key: key, Err: ErrUnsupported,
			Detail: fmt.Sprintf("the value is an alias (*%s); edit the anchor instead", n.Value)}
	default:
		return location{}, &KeyError{Key: key, Err: ErrNotScalar,
			Detail: fmt.Sprintf("the value is a %s", kindName(n.Kind))}
	}
}

// duplicates refuses a mapping on the key's path that has the next part more than
// once. YAML parsers disagree on which one counts: kyaml's lookup finds the first,
// kubectl, kro and cmp-sidecar keep the last; an edit of either would make Git say one
// value and the cluster run another.
func duplicates(m *yaml.Node, key string, parent []string, part string) error {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	var lines []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == part {
			lines = append(lines, fmt.Sprint(k.Line))
		}
	}
	if len(lines) < 2 {
		return nil
	}
	where := "the document root"
	if len(parent) > 0 {
		where = fmt.Sprintf("%q", strings.Join(parent, "."))
	}
	return &KeyError{Key: key, Err: ErrDuplicateKey,
		Detail: fmt.Sprintf("%s has %q %d times (lines %s); tools disagree on which counts: keep one", where, part, len(lines), strings.Join(lines, ", "))}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "map"
	case yaml.SequenceNode:
		return "list"
	case yaml.DocumentNode:
		return "document"
	default:
		return "non-scalar"
	}
}

// orRoot names a path for an error: quoted, or "the document root" when empty.
func orRoot(path string) string {
	if path == "" {
		return "the document root"
	}
	return fmt.Sprintf("%q", path)
}
