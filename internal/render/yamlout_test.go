package render

import (
	"bytes"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// sameAsLibrary fails t when marshalYAML and sigs.k8s.io/yaml.Marshal disagree on obj: their
// bytes and whether they fail. go-yaml's key order is not a total order for some mixes of
// digits and other characters ("9no!", "10*", "1e3null#") and sort.Sort is not stable, so for
// such keys the library itself answers in several orders, following Go's random map order:
// when it does, marshalYAML's answer must be one of its orders of the same documents.
func sameAsLibrary(t *testing.T, what string, obj map[string]interface{}) {
	t.Helper()
	want, wantErr := yaml.Marshal(obj)
	got, gotErr := marshalYAML(obj)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("%s: marshalYAML error %v; sigs.k8s.io/yaml.Marshal error %v", what, gotErr, wantErr)
	}
	if bytes.Equal(got, want) {
		return
	}
	for range 50 {
		if again, _ := yaml.Marshal(obj); !bytes.Equal(again, want) {
			var g, w interface{}
			if err := yaml.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s: marshalYAML gave unreadable YAML %q: %v", what, got, err)
			}
			if err := yaml.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if !equalJSON(t, g, w) {
				t.Fatalf("%s: marshalYAML = %q; sigs.k8s.io/yaml.Marshal = %q", what, got, want)
			}
			return // the library's order varies: the same documents suffice
		}
	}
	t.Fatalf("%s: marshalYAML = %q; sigs.k8s.io/yaml.Marshal = %q", what, got, want)
}

// Every document of kro's module (examples, chainsaw tests, RGDs, CRDs, instances) and of this
// repository's examples, decoded as a render holds objects — integers as int64 — and as a JSON
// decode would — every number float64.
func TestMarshalYAML_SameAsLibrary(t *testing.T) {
	roots := []string{filepath.Dir(filepath.Dir(kroExamples(t))), examplesRepo}
	docs := 0
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !isYAMLFile(d.Name()) {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
			for i := 1; ; i++ {
				var obj map[string]interface{}
				if err := dec.Decode(&obj); err != nil {
					if err != io.EOF {
						t.Logf("%s: document %d not decoded: %v", path, i, err) // templates with Go template syntax
					}
					break
				}
				if obj == nil {
					continue
				}
				docs++
				sameAsLibrary(t, path, obj)
				sameAsLibrary(t, path+" (int64)", integers(obj).(map[string]interface{}))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if docs < 100 {
		t.Fatalf("compared %d documents: kro's module should hold hundreds", docs)
	}
	t.Logf("%d documents, as float64 and int64 numbers", docs)
}

// integers turns integral float64s into int64, as unstructured objects decoded from YAML hold them.
func integers(v interface{}) interface{} {
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
	case map[string]interface{}:
		for k, e := range v {
			v[k] = integers(e)
		}
	case []interface{}:
		for i, e := range v {
			v[i] = integers(e)
		}
	}
	return v
}

// The values a round trip through JSON and go-yaml rewrites or refuses, and types a decoded
// object never holds: the library's answer either way.
func TestMarshalYAML_EdgeValues(t *testing.T) {
	values := map[string]interface{}{
		"empty": "", "space": " x ", "colon": "a: b", "hash": "# c", "dash": "- d", "quote": `"'`,
		"bools": "true", "yes": "yes", "null": "null", "tilde": "~", "number": "0123", "octal": "0o17",
		"float text": "1e3", "inf text": ".inf", "newline": "a\nb", "crlf": "a\r\nb", "tab": "\t",
		"control": "a\x01b", "nul": "a\x00b", "del": "a\x7fb", "c1": "a\u0085b", "c1b": "a\u009bb",
		"bom": "\ufeffx", "nonchar": "\uffff", "ls": "a\u2028b", "html": "<a&b>", "emoji": "🙂",
		"invalid utf8": "a\xffb", "long": strings.Repeat("word ", 40), "merge": "<<",
		"int": int64(-42), "big int": int64(math.MaxInt64), "float": 1.5, "integral float": 3.0,
		"tiny": 1e-7, "huge": 1e21, "negative zero": math.Copysign(0, -1), "max float": math.MaxFloat64,
		"nan": math.NaN(), "inf": math.Inf(1), "nil": nil, "true": true,
		"nil map": map[string]interface{}(nil), "nil list": []interface{}(nil),
		"empty map": map[string]interface{}{}, "empty list": []interface{}{},
		"int type": 7, "int32": int32(7), "uint64": uint64(7), "strings": []string{"a"},
		"string map": map[string]string{"a": "b"},
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			sameAsLibrary(t, "value", map[string]interface{}{"v": v})
			sameAsLibrary(t, "list", map[string]interface{}{"l": []interface{}{v, v}})
			if s, ok := v.(string); ok {
				sameAsLibrary(t, "key", map[string]interface{}{s: "v"})
			}
		})
	}
}

// Random objects of the shapes a render produces, keys sorted by go-yaml's order included.
func TestMarshalYAML_RandomObjects(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		obj := randomMap(r, 3)
		sameAsLibrary(t, "random object "+string(rune('a'+i%26)), obj)
	}
}

func FuzzMarshalYAML(f *testing.F) {
	f.Add("key", "value", int64(1), 1.5)
	f.Add("a10", "a9", int64(-1), 1e21)
	f.Add("<<", "\x7f", int64(0), math.Copysign(0, -1))
	f.Fuzz(func(t *testing.T, k, s string, n int64, x float64) {
		sameAsLibrary(t, "fuzz", map[string]interface{}{
			k: s, s: []interface{}{n, x, k}, "n": n, "x": x, "m": map[string]interface{}{k: map[string]interface{}{s: x}},
		})
	})
}

func randomMap(r *rand.Rand, depth int) map[string]interface{} {
	m := map[string]interface{}{}
	for range r.IntN(6) {
		m[randomString(r)] = randomValue(r, depth)
	}
	return m
}

func randomValue(r *rand.Rand, depth int) interface{} {
	n := 7
	if depth > 0 {
		n = 9
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return r.Int64N(1<<40) - 1<<39
	case 3:
		return []float64{0, 1, -1, 0.5, 1e-7, 1e20, 1e21, 123456789.125, 1.0 / 3}[r.IntN(9)]
	case 4, 5, 6:
		return randomString(r)
	case 7:
		return randomMap(r, depth-1)
	default:
		l := make([]interface{}, r.IntN(4))
		for i := range l {
			l[i] = randomValue(r, depth-1)
		}
		return l
	}
}

// randomString draws from words YAML reads specially, digits and the characters that need quoting.
func randomString(r *rand.Rand) string {
	parts := []string{"a", "Z", "9", "10", "0x1F", "-", ":", " ", "#", "'", `"`, "\n", "\t", "true", "no",
		"null", "~", ".5", "1e3", "{", "[", "*", "&", "!", "%", "@", "`", "é", "日本", "\x01", "\u2028"}
	var b strings.Builder
	for range r.IntN(4) {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}
