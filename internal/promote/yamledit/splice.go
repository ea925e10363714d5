package yamledit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// lineStart returns the byte offset of the 1-based line, counting line breaks the way
// go.yaml.in/yaml/v3 does (CRLF, CR, LF, NEL, LS, PS), so that its Line/Column marks
// map back to bytes.
func lineStart(data []byte, line int) (int, bool) {
	pos := 0
	if strings.HasPrefix(string(data[:min(3, len(data))]), "\ufeff") {
		pos = 3 // the parser's marks start after a byte order mark
	}
	for cur := 1; cur < line; cur++ {
		for {
			if pos >= len(data) {
				return 0, false
			}
			if w := breakWidth(data[pos:]); w > 0 {
				pos += w
				break
			}
			_, w := utf8.DecodeRune(data[pos:])
			pos += w
		}
	}
	return pos, true
}

func breakWidth(b []byte) int {
	switch {
	case len(b) >= 2 && b[0] == '\r' && b[1] == '\n':
		return 2
	case b[0] == '\r' || b[0] == '\n':
		return 1
	case len(b) >= 2 && b[0] == 0xC2 && b[1] == 0x85:
		return 2
	case len(b) >= 3 && b[0] == 0xE2 && b[1] == 0x80 && (b[2] == 0xA8 || b[2] == 0xA9):
		return 3
	}
	return 0
}

// scalarSpan returns the byte range [start, end) of the scalar's text, without its
// anchor or tag, so that those survive the edit too.
// oneLine is the span [start, end) of quoted scalar n unless it runs over several lines: a
// quoted scalar may (its line breaks fold into spaces), and replacing it would then move every
// line after it, which an edit of one value must not.
func oneLine(data []byte, n *yaml.Node, start, end int) (int, int, error) {
	if bytes.ContainsAny(data[start:end], "\r\n\u0085\u2028\u2029") {
		return 0, 0, fmt.Errorf("the value at line %d is a quoted scalar over several lines; only single-line scalars are edited", n.Line)
	}
	return start, end, nil
}

func scalarSpan(data []byte, loc location) (int, int, error) {
	n := loc.node
	pos, ok := lineStart(data, n.Line)
	if !ok {
		return 0, 0, fmt.Errorf("line %d is past the end of the file", n.Line)
	}
	for c := 1; c < n.Column; c++ {
		if pos >= len(data) {
			return 0, 0, fmt.Errorf("column %d is past the end of line %d", n.Column, n.Line)
		}
		_, w := utf8.DecodeRune(data[pos:])
		pos += w
	}
	pos = skipProperties(data, pos)
	if pos >= len(data) {
		return 0, 0, errors.New("the scalar has no text")
	}
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		if data[pos] != '"' {
			return 0, 0, fmt.Errorf("expected '\"' at line %d", n.Line)
		}
		for i := pos + 1; i < len(data); i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return oneLine(data, n, pos, i+1)
			}
		}
		return 0, 0, errors.New("unterminated double-quoted scalar")
	case n.Style&yaml.SingleQuotedStyle != 0:
		if data[pos] != '\'' {
			return 0, 0, fmt.Errorf("expected \"'\" at line %d", n.Line)
		}
		for i := pos + 1; i < len(data); i++ {
			if data[i] == '\'' {
				if i+1 < len(data) && data[i+1] == '\'' {
					i++
					continue
				}
				return oneLine(data, n, pos, i+1)
			}
		}
		return 0, 0, errors.New("unterminated single-quoted scalar")
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return 0, 0, fmt.Errorf("the value at line %d is a block scalar (| or >); only single-line scalars are edited", n.Line)
	}
	// Plain: up to the end of the line, a comment, or (in flow context) an indicator.
	end := pos
	for end < len(data) && breakWidth(data[end:]) == 0 {
		c := data[end]
		if c == '#' && end > pos && (data[end-1] == ' ' || data[end-1] == '\t') {
			break
		}
		if loc.flow && (c == ',' || c == ']' || c == '}') {
			break
		}
		if c == ':' && end+1 < len(data) && (data[end+1] == ' ' || data[end+1] == '\t' || (loc.flow && strings.IndexByte(",]}", data[end+1]) >= 0)) {
			break
		}
		end++
	}
	for end > pos && (data[end-1] == ' ' || data[end-1] == '\t') {
		end--
	}
	if string(data[pos:end]) != n.Value {
		if n.Value == "" && n.Tag == "!!null" {
			return 0, 0, fmt.Errorf("the value at line %d is empty; write a placeholder value first", n.Line)
		}
		return 0, 0, fmt.Errorf("the plain value at line %d spans several lines; quote it", n.Line)
	}
	return pos, end, nil
}

// skipProperties moves past an anchor (&a) and a tag (!!str, !<…>) with the spaces,
// comments and line breaks that may follow them.
func skipProperties(data []byte, pos int) int {
	for pos < len(data) && (data[pos] == '&' || data[pos] == '!') {
		if data[pos] == '!' && pos+1 < len(data) && data[pos+1] == '<' {
			for pos < len(data) && data[pos] != '>' {
				pos++
			}
			pos++
		} else {
			for pos < len(data) && !isBlank(data[pos]) && breakWidth(data[pos:]) == 0 {
				pos++
			}
		}
		for pos < len(data) {
			switch {
			case isBlank(data[pos]):
				pos++
			case data[pos] == '#':
				for pos < len(data) && breakWidth(data[pos:]) == 0 {
					pos++
				}
			case breakWidth(data[pos:]) > 0:
				pos += breakWidth(data[pos:])
			default:
				goto next
			}
		}
	next:
	}
	return pos
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// render writes value in the scalar's original style, falling back to double quotes
// when that style cannot hold it or would change how it is read.
func render(n *yaml.Node, value string, flow bool) string {
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		return doubleQuote(value)
	case n.Style&yaml.SingleQuotedStyle != 0:
		if printableLine(value) {
			return "'" + strings.ReplaceAll(value, "'", "''") + "'"
		}
		return doubleQuote(value)
	}
	if plainSafe(value, flow) && keepsType(n.Value, value) {
		return value
	}
	return doubleQuote(value)
}

func doubleQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xfeff || r == utf8.RuneError:
			if r <= 0xff {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func printableLine(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xfeff {
			return false
		}
	}
	return true
}

// plainSafe is deliberately stricter than the YAML spec: anything that is not an
// ordinary word/version/path gets quoted, including digests (they contain ':').
func plainSafe(s string, flow bool) bool {
	if s == "" || !printableLine(s) {
		return false
	}
	if strings.ContainsAny(s[:1], "-?:,[]{}#&*!|>'\"%@`~ ") {
		return false
	}
	if strings.ContainsAny(s, ":#\t") || strings.HasSuffix(s, " ") {
		return false
	}
	if flow && strings.ContainsAny(s, ",[]{}") {
		return false
	}
	return true
}

// keepsType reports whether writing value plain resolves to the same YAML type as the
// old plain value did. Floats never stay plain: 1.10 would be read back as 1.1.
func keepsType(old, value string) bool {
	ot, nt := plainTag(old), plainTag(value)
	return ot == nt && (nt == "!!str" || nt == "!!int" || nt == "!!bool")
}

func plainTag(s string) string {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil || len(n.Content) != 1 || n.Content[0].Kind != yaml.ScalarNode {
		return ""
	}
	return n.Content[0].ShortTag()
}

// verify re-parses the output and checks that the key now holds value and that every
// other node, value and comment is as before.
func verify(before, after []byte, key, value string) error {
	a, err := parseDocs(before)
	if err != nil {
		return err
	}
	b, err := parseDocs(after)
	if err != nil {
		return fmt.Errorf("the edit would make the file invalid YAML (%v)", err)
	}
	if len(a) != len(b) {
		return errors.New("the edit would change the number of documents")
	}
	got, err := Get(after, key)
	if err != nil {
		return fmt.Errorf("the edited value cannot be read back (%v)", err)
	}
	if got != value {
		return fmt.Errorf("the edited value reads back as %q", got)
	}
	diffs := 0
	for i := range a {
		if !sameTree(a[i], b[i], &diffs) {
			return errors.New("the edit would change the document's structure")
		}
	}
	if diffs != 1 {
		return fmt.Errorf("the edit would change %d values", diffs)
	}
	return nil
}

func sameTree(a, b *yaml.Node, diffs *int) bool {
	if a.Kind != b.Kind || a.Anchor != b.Anchor || len(a.Content) != len(b.Content) ||
		a.HeadComment != b.HeadComment || a.LineComment != b.LineComment || a.FootComment != b.FootComment {
		return false
	}
	if a.Kind == yaml.ScalarNode && (a.Value != b.Value || a.Tag != b.Tag) {
		*diffs++
	}
	if a.Kind == yaml.AliasNode && a.Value != b.Value {
		return false
	}
	for i := range a.Content {
		if !sameTree(a.Content[i], b.Content[i], diffs) {
			return false
		}
	}
	return true
}
