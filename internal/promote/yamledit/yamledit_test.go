package yamledit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// changedLines returns the lines (split on \n, so \r stays visible) that differ.
func changedLines(t *testing.T, before, after []byte) []string {
	t.Helper()
	a := strings.Split(string(before), "\n")
	b := strings.Split(string(after), "\n")
	if len(a) != len(b) {
		t.Fatalf("line count changed from %d to %d", len(a), len(b))
	}
	var out []string
	for i := range a {
		if a[i] != b[i] {
			out = append(out, b[i])
		}
	}
	return out
}

func TestSet_ChangesOnlyTheScalarLine(t *testing.T) {
	tests := []struct {
		name, file, key, value, wantLine string
	}{
		{"double quotes stay double", "commented.yaml", "spec.values.deployment.tag", "1.2.2", `      tag: "1.2.2"     # current tag`},
		{"plain stays plain when still a string", "commented.yaml", "spec.values.deployment.plainTag", "1.2.2", `      plainTag: 1.2.2`},
		{"plain gets quoted when it would become a float", "commented.yaml", "spec.values.deployment.plainTag", "1.10", `      plainTag: "1.10"`},
		{"plain digest gets quoted", "commented.yaml", "spec.values.deployment.digest", "sha256:1111", `      digest: "sha256:1111"`},
		{"single quotes stay single and escape", "commented.yaml", "spec.values.deployment.single", "it's 1.2.2", `      single: 'it''s 1.2.2'`},
		{"anchor survives", "commented.yaml", "spec.values.deployment.anchored", "1.2.2", `      anchored: &tagref 1.2.2`},
		{"explicit tag survives", "commented.yaml", "spec.values.deployment.tagged", "8", `      tagged: !!str 8`},
		{"key in a flow map", "commented.yaml", "spec.values.deployment.flowTag.tag", "1.2.2", `      flowTag: {tag: 1.2.2, other: x}`},
		{"flow map value in metadata", "commented.yaml", "metadata.labels.tier", "back", `  labels: {team: web, tier: "back"}   # a flow map`},
		{"list element by index", "commented.yaml", "spec.values.deployment.list.2", "1.2.2", `      list: [a, b, 1.2.2]`},
		{"int stays plain int", "commented.yaml", "spec.values.service.port", "8080", `      port: 8080`},
		{"int gets quoted for a string", "commented.yaml", "spec.values.service.port", "http", `      port: "http"`},
		{"CRLF line endings survive", "crlf.yaml", "spec.values.deployment.tag", "1.2.2", "      tag: \"1.2.2\" # crlf\r"},
		{"the one document that has the key", "multidoc.yaml", "spec.x", "2", "spec: {x: 2}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := readFixture(t, tt.file)
			out, err := Set(in, tt.key, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			got := changedLines(t, in, out)
			if len(got) != 1 || got[0] != tt.wantLine {
				t.Fatalf("changed lines = %q, want exactly [%q]", got, tt.wantLine)
			}
			if v, err := Get(out, tt.key); err != nil || v != tt.value {
				t.Fatalf("Get after Set = %q, %v; want %q", v, err, tt.value)
			}
		})
	}
}

func TestSet_SameValueReturnsInputUnchanged(t *testing.T) {
	in := readFixture(t, "commented.yaml")
	out, err := Set(in, "spec.values.deployment.tag", "1.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatal("output differs")
	}
}

func TestSet_RejectsBadKeys(t *testing.T) {
	tests := []struct {
		name, file, key string
		want            error
		wantText        string
	}{
		{"missing key names the missing part", "commented.yaml", "spec.values.deployment.nope", ErrKeyNotFound, `"spec.values.deployment" has no "nope"`},
		{"missing parent", "commented.yaml", "spec.nothing.tag", ErrKeyNotFound, `"spec" has no "nothing"`},
		{"map is not a scalar", "commented.yaml", "spec.values.deployment", ErrNotScalar, "map"},
		{"list is not a scalar", "commented.yaml", "spec.values.deployment.list", ErrNotScalar, "list"},
		{"path through a scalar", "commented.yaml", "kind.x", ErrKeyNotFound, `"kind" is a scalar`},
		{"alias is refused", "commented.yaml", "spec.values.deployment.uses", ErrUnsupported, "alias"},
		{"block scalar is refused", "commented.yaml", "metadata.annotations.note", ErrUnsupported, "block scalar"},
		{"several documents have the key", "multidoc.yaml", "spec.values.deployment.tag", ErrAmbiguous, "documents [2 3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Set(readFixture(t, tt.file), tt.key, "9.9.9")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("err = %q, want it to name the key and say %q", err, tt.wantText)
			}
		})
	}
}

// A list's last element ("-") of an empty list is missing, not a crash (kyaml indexes -1).
func TestSet_LastElementOfAnEmptyListIsMissing(t *testing.T) {
	for _, tt := range []struct{ doc, key, want string }{
		{"[]\n", "-", `the document root is an empty list, it has no "-"`},
		{"spec:\n  containers: []\n", "spec.containers.-.image", `"spec.containers" is an empty list, it has no "-"`},
	} {
		_, err := Set([]byte(tt.doc), tt.key, "9.9.9")
		if !errors.Is(err, ErrKeyNotFound) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Set(%q, %q) = %v, want ErrKeyNotFound saying %q", tt.doc, tt.key, err, tt.want)
		}
	}
}

// A quoted value over several lines is refused like a block scalar: replacing it would move
// every line after it.
func TestSet_QuotedValueOverSeveralLinesIsRefused(t *testing.T) {
	for _, doc := range []string{"a: {b: '\n'}\nc: d\n", "a: \"1.2\n  .3\"\nc: d\n"} {
		_, err := Set([]byte(doc), "a.b", "2.0.0")
		if doc[3] == '"' {
			_, err = Set([]byte(doc), "a", "2.0.0")
		}
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "over several lines") {
			t.Errorf("Set on %q = %v, want ErrUnsupported saying it is over several lines", doc, err)
		}
	}
}

func TestSet_InvalidYAMLIsAnError(t *testing.T) {
	_, err := Set([]byte("a: [b\nc: d: e\n"), "a", "x")
	if !errors.Is(err, ErrInvalidYAML) {
		t.Fatalf("err = %v, want ErrInvalidYAML", err)
	}
}

func TestSetFile_ErrorNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "instance.yaml")
	if err := os.WriteFile(path, readFixture(t, "crlf.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := SetFile(path, "spec.values.deployment.image", "x")
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want it to name %s", err, path)
	}
	changed, err := SetFile(path, "spec.values.deployment.tag", "2.0.0")
	if err != nil || !changed {
		t.Fatalf("SetFile = %v, %v", changed, err)
	}
	if v, _ := GetFile(path, "spec.values.deployment.tag"); v != "2.0.0" {
		t.Fatalf("GetFile = %q", v)
	}
}

func FuzzSet(f *testing.F) {
	f.Add(readFixture(f, "commented.yaml"), "spec.values.deployment.tag", "1.2.2")
	f.Add(readFixture(f, "crlf.yaml"), "spec.values.deployment.tag", "1.10")
	f.Add(readFixture(f, "multidoc.yaml"), "spec.x", "sha256:abc")
	f.Add([]byte("a: {b: 'c'}\n"), "a.b", "it's")
	f.Add([]byte("a:\n  - x\n  - y # c\n"), "a.1", "z")
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		out, err := Set(data, key, value)
		if err != nil {
			return
		}
		// Set verifies its own output; check independently that the value reads back
		// and that nothing before the first or after the last changed byte moved.
		if got, err := Get(out, key); err != nil || got != value {
			t.Fatalf("Get after Set = %q, %v; want %q", got, err, value)
		}
		if _, err := parseDocs(out); err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		i := 0
		for i < len(data) && i < len(out) && data[i] == out[i] {
			i++
		}
		j := 0
		for j < len(data)-i && j < len(out)-i && data[len(data)-1-j] == out[len(out)-1-j] {
			j++
		}
		if bytes.ContainsAny(data[i:len(data)-j], "\n") && bytes.Count(data[i:len(data)-j], []byte("\n")) != bytes.Count(out[i:len(out)-j], []byte("\n")) {
			t.Fatalf("the edit changed the number of lines: %q -> %q", data[i:len(data)-j], out[i:len(out)-j])
		}
	})
}
