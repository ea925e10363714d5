package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A miniature of an upstream api__v1_openapi.json: a namespaced kind, a cluster-scoped kind, a
// subresource with another group's kind, and the all-namespaces list path.
const miniDoc = `{
  "paths": {
    "/api/v1/namespaces": {"get": {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Namespace"}}},
    "/api/v1/namespaces/{name}": {"get": {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Namespace"}}},
    "/api/v1/namespaces/{name}/finalize": {"put": {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Namespace"}}},
    "/api/v1/pods": {"get": {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}},
    "/api/v1/namespaces/{namespace}/pods": {"post": {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}, "parameters": []},
    "/api/v1/namespaces/{namespace}/pods/{name}/eviction": {"post": {"x-kubernetes-group-version-kind": {"group": "policy", "version": "v1", "kind": "Eviction"}}},
    "/api/v1/watch/namespaces/{namespace}/pods": {"get": {"x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}}
  },
  "components": {"schemas": {
    "io.k8s.api.core.v1.Namespace": {"x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Namespace"}]},
    "io.k8s.api.core.v1.Pod": {"x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}]},
    "io.k8s.api.core.v1.PodList": {"x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "PodList"}]},
    "io.k8s.api.policy.v1.Eviction": {"x-kubernetes-group-version-kind": [{"group": "policy", "version": "v1", "kind": "Eviction"}]},
    "io.k8s.api.core.v1.PodSpec": {"type": "object"}
  }}
}`

func TestKindsOf_ResourcesAndScopesFromPaths(t *testing.T) {
	var doc document
	if err := json.Unmarshal([]byte(miniDoc), &doc); err != nil {
		t.Fatal(err)
	}
	got, err := kindsOf(&doc, "", "v1")
	if err != nil {
		t.Fatal(err)
	}
	want := []kind{
		{Kind: "Namespace", Schema: "io.k8s.api.core.v1.Namespace", Resource: "namespaces"},
		{Kind: "Pod", Schema: "io.k8s.api.core.v1.Pod", Resource: "pods", Namespaced: true},
		{Kind: "PodList", Schema: "io.k8s.api.core.v1.PodList"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kindsOf =\n%+v\nwant\n%+v", got, want)
	}
}

func TestStripDocs_KeepsPropertiesNamedDescription(t *testing.T) {
	var s map[string]any
	in := `{"description": "doc", "type": "object", "properties": {
	  "description": {"type": "string", "description": "the field called description"},
	  "items": {"type": "array", "items": {"description": "doc", "type": "string"}},
	  "either": {"allOf": [{"description": "doc", "$ref": "#/components/schemas/X"}]},
	  "labels": {"type": "object", "additionalProperties": {"description": "doc", "type": "string"}}
	}}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	stripDocs(s)
	got, _ := json.Marshal(s)
	want := `{"properties":{"description":{"type":"string"},"either":{"allOf":[{"$ref":"#/components/schemas/X"}]},"items":{"items":{"type":"string"},"type":"array"},"labels":{"additionalProperties":{"type":"string"},"type":"object"}},"type":"object"}`
	if string(got) != want {
		t.Errorf("stripDocs =\n%s\nwant\n%s", got, want)
	}
}
