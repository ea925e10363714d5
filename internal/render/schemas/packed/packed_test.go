package packed

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

// TestEncodeDecode_KeepsEveryPartKubernetesSchemasUse round-trips schemas through the packed
// form, compared with what spec.Schema's own JSON decoder makes of the same document.
func TestEncodeDecode_KeepsEveryPartKubernetesSchemasUse(t *testing.T) {
	for _, doc := range []string{
		`{}`,
		`{"type": "object", "properties": {}, "required": []}`,
		`{"type": ["string", "null"], "format": "int-or-string", "nullable": true}`,
		`{"type": "object", "default": {"a": [1, 2.5, "x", true, false, null, {}], "b": {}}, "enum": ["A", 3, null]}`,
		`{"type": "object", "additionalProperties": false}`,
		`{"type": "object", "additionalProperties": true}`,
		`{"type": "object", "additionalProperties": {"type": "string", "default": ""}}`,
		`{"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "default": "x"}}},
		  "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-patch-merge-key": "name"}`,
		`{"oneOf": [{"type": "string"}, {"type": "integer"}], "anyOf": [{}], "allOf": [{"type": "object"}]}`,
		`{"x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}], "x-kubernetes-unions": [{"fields-to-discriminateBy": {"a": "A"}}]}`,
	} {
		var want spec.Schema
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		b, err := Encode(&want)
		if err != nil {
			t.Fatalf("Encode(%s): %v", doc, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", doc, err)
		}
		if !reflect.DeepEqual(got, &want) {
			gj, _ := json.Marshal(got)
			t.Errorf("round trip of %s gave %s (%#v)", doc, gj, got)
		}
		again, _ := Encode(got)
		if string(again) != string(b) {
			t.Errorf("Encode of %s is not deterministic", doc)
		}
	}
}

func TestEncode_RefusesWhatItCannotHold(t *testing.T) {
	for doc, part := range map[string]string{
		`{"type": "string", "pattern": "^a$"}`:                      "pattern",
		`{"properties": {"a": {"$ref": "#/components/x"}}}`:         "properties.a",
		`{"type": "array", "items": [{"type": "string"}]}`:          "items",
		`{"type": "integer", "maximum": 3}`:                         "maximum",
		`{"type": "object", "x-kubernetes-weird": 1, "title": "t"}`: "title",
	} {
		var s spec.Schema
		if err := json.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatal(err)
		}
		_, err := Encode(&s)
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("Encode(%s) = %v, want an error naming %s", doc, err, part)
		}
	}
}

func TestDecode_CorruptBytesAreAnError(t *testing.T) {
	var s spec.Schema
	if err := json.Unmarshal([]byte(`{"type": "object", "properties": {"a": {"type": "string"}}}`), &s); err != nil {
		t.Fatal(err)
	}
	b, err := Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-2],
		"trailing":  append(append([]byte{}, b...), 0),
		"header":    append([]byte("KPS0"), b[4:]...),
	} {
		if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestArchive_FindsEachSchemaByName(t *testing.T) {
	schemas := map[string][]byte{}
	want := map[string]*spec.Schema{}
	for name, doc := range map[string]string{"apps_v1.Deployment": `{"type": "object"}`, "core_v1.Service": `{"type": "string"}`, "core_v1#x": `{}`} {
		var s spec.Schema
		if err := json.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatal(err)
		}
		b, err := Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		schemas[name], want[name] = b, &s
	}
	a, err := OpenArchive(EncodeArchive(schemas))
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		got, ok, err := a.Schema(name)
		if err != nil || !ok || !reflect.DeepEqual(got, w) {
			t.Errorf("Schema(%q) = %v, %v, %v; want %v", name, got, ok, err, w)
		}
	}
	if _, ok, err := a.Schema("batch_v1.Job"); ok || err != nil {
		t.Errorf("Schema of a name not stored = %v, %v; want not found", ok, err)
	}
	if _, err := OpenArchive(EncodeArchive(schemas)[:20]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("OpenArchive of a truncated archive = %v, want ErrCorrupt", err)
	}
}
