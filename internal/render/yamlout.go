package render

import (
	"encoding/json"
	"math"
	"unicode/utf8"

	goyaml "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// marshalYAML gives the bytes sigs.k8s.io/yaml.Marshal gives for a rendered object, without its
// detour: Marshal encodes the object to JSON, parses that JSON back with go-yaml and encodes
// what the parse built — a fifth of a warm render-server request's CPU and a third of what it
// allocates. Building that value straight from the object (string keys, JSON strings, numbers
// as go-yaml reads their JSON text) and encoding it with the same go-yaml gives the same
// output. Whatever the round trip could alter — a value type a decoded object never holds, a
// string JSON or go-yaml would rewrite or refuse, a NaN — goes the library's way, so errors
// and odd values stay the library's. TestMarshalYAML_SameAsLibrary and FuzzMarshalYAML hold
// the two to the same bytes.
func marshalYAML(obj map[string]interface{}) ([]byte, error) {
	if v, ok := yamlValue(obj); ok {
		return goyaml.Marshal(v)
	}
	return yaml.Marshal(obj)
}

// yamlValue is what go-yaml decodes from v's JSON encoding, or false when that takes more than
// this function knows.
func yamlValue(v interface{}) (interface{}, bool) {
	switch v := v.(type) {
	case nil, bool, int64:
		return v, true // JSON integers decode to int, which go-yaml writes as it writes int64
	case string:
		return v, roundTrips(v)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false // JSON has no such number: the library reports the error
		}
		// json writes an integral float without a fraction (3, not 3.0), which go-yaml then
		// reads as an int, and chooses between plain and exponent form by magnitude: let them.
		j, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		var out interface{}
		if err := goyaml.Unmarshal(j, &out); err != nil {
			return nil, false
		}
		return out, true
	case map[string]interface{}:
		if v == nil {
			return nil, true // JSON null
		}
		m := make(map[interface{}]interface{}, len(v))
		for k, e := range v {
			if !roundTrips(k) || k == "<<" { // "<<" is go-yaml's merge key
				return nil, false
			}
			ev, ok := yamlValue(e)
			if !ok {
				return nil, false
			}
			m[k] = ev
		}
		return m, true
	case []interface{}:
		if v == nil {
			return nil, true // JSON null
		}
		s := make([]interface{}, len(v))
		for i, e := range v {
			ev, ok := yamlValue(e)
			if !ok {
				return nil, false
			}
			s[i] = ev
		}
		return s, true
	}
	return nil, false
}

// roundTrips reports whether s comes out of a JSON encoding read back by go-yaml unchanged:
// json.Marshal replaces invalid UTF-8 and escapes control characters (which go-yaml unescapes),
// but writes DEL, the C1 controls and the non-characters go-yaml's reader refuses as they are.
func roundTrips(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r <= 0x9f || r == 0xfeff || r == 0xfffe || r == 0xffff {
			return false
		}
		i += size
	}
	return true
}
