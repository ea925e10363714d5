package render

import (
	"context"
	"errors"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// collectionsRGD has every collection shape SimpleSchema can write: maps of scalars and of
// objects, sets, list-maps of a custom type, and free-form objects.
const collectionsRGD = `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: collections
spec:
  schema:
    apiVersion: v1alpha1
    kind: Collections
    types:
      Port:
        name: string | required=true
        port: integer
    spec:
      labels: "map[string]string"
      limits: "map[string]integer"
      sidecars: "map[string]Port"
      tags: "[]string | uniqueItems=true"
      ports: "[]Port | listType=map listMapKey=name"
      extra: object
  resources:
    - id: cm
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${schema.metadata.name}
          labels: ${schema.spec.labels}
        data:
          tags: ${schema.spec.tags.join(",")}
          ports: ${string(schema.spec.ports.size())}
`

func renderCollections(t *testing.T, spec string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"rgds/collections.yaml": collectionsRGD,
		"app/instance.yaml":     "apiVersion: kro.run/v1alpha1\nkind: Collections\nmetadata:\n  name: c\nspec:\n" + spec,
	})
	e, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Render(context.Background(), "app")
	if err != nil {
		return nil, err
	}
	return decodeStream(t, out), nil
}

// TestAdmission_CollectionsAsTheAPIServerChecksThem feeds instances with map and list fields
// through admission: what the API server accepts renders, what it refuses fails with its
// message.
func TestAdmission_CollectionsAsTheAPIServerChecksThem(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		wantErr []string
		check   func(t *testing.T, cm *unstructured.Unstructured)
	}{
		{
			name: "map of strings reaches the template",
			spec: "  labels: {team: a, tier: web}\n  tags: []\n  ports: []\n",
			check: func(t *testing.T, cm *unstructured.Unstructured) {
				if l := cm.GetLabels(); l["team"] != "a" || l["tier"] != "web" {
					t.Errorf("labels = %v, want the instance's map", l)
				}
			},
		},
		{
			name: "map of objects and a free-form object are accepted",
			spec: "  labels: {}\n  sidecars:\n    log: {name: log, port: 24224}\n  extra:\n    anything: {goes: [1, 2]}\n  tags: [a, b]\n  ports: [{name: http, port: 80}, {name: grpc, port: 90}]\n",
			check: func(t *testing.T, cm *unstructured.Unstructured) {
				if d, _, _ := unstructured.NestedStringMap(cm.Object, "data"); d["tags"] != "a,b" || d["ports"] != "2" {
					t.Errorf("data = %v", d)
				}
			},
		},
		{
			name:    "map value of the wrong type",
			spec:    "  limits: {cpu: lots}\n",
			wantErr: []string{"spec.limits.cpu", "Invalid value", "integer"},
		},
		{
			name:    "object in a map with an unknown field",
			spec:    "  sidecars:\n    log: {name: log, prot: 1}\n",
			wantErr: []string{"spec.sidecars.log.prot", "unknown field"},
		},
		{
			name:    "object in a map missing a required field",
			spec:    "  sidecars:\n    log: {port: 1}\n",
			wantErr: []string{"spec.sidecars.log.name", "Required value"},
		},
		{
			name:    "duplicate item of a set (uniqueItems)",
			spec:    "  tags: [production, staging, production]\n",
			wantErr: []string{"spec.tags[2]", "Duplicate value", `"production"`},
		},
		{
			name:    "duplicate key of a list map",
			spec:    "  ports: [{name: http, port: 80}, {name: http, port: 81}]\n",
			wantErr: []string{"spec.ports[1]", "Duplicate value", "http"},
		},
		{
			name:    "unknown field of an object in a list",
			spec:    "  ports: [{name: http, prt: 80}]\n",
			wantErr: []string{"spec.ports[0].prt", "unknown field"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := renderCollections(t, tt.spec)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("rendered %v, want an error", ids(objs))
				}
				var invalid *InvalidInstanceError
				if !errors.As(err, &invalid) {
					t.Errorf("error %v is not an *InvalidInstanceError", err)
				}
				for _, w := range append([]string{"app/instance.yaml", `Collections "c"`}, tt.wantErr...) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 1 {
				t.Fatalf("objects = %v", ids(objs))
			}
			tt.check(t, objs[0])
		})
	}
}

// semanticsCRD carries the schema features SimpleSchema v0.9.4 cannot write but a CRD can
// (maxProperties, int-or-string, map-type, preserve-unknown-fields, nested list maps): admission
// enforces them with the API server's code whatever produced the schema.
const semanticsCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.kro.run
spec:
  group: kro.run
  names: {kind: Thing, listKind: ThingList, plural: things, singular: thing}
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                selector:
                  type: object
                  maxProperties: 2
                  x-kubernetes-map-type: atomic
                  additionalProperties: {type: string}
                port:
                  x-kubernetes-int-or-string: true
                raw:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
                groups:
                  type: array
                  items:
                    type: object
                    properties:
                      members:
                        type: array
                        x-kubernetes-list-type: map
                        x-kubernetes-list-map-keys: [id]
                        items:
                          type: object
                          required: [id]
                          properties:
                            id: {type: integer}
                            role: {type: string}
`

func TestAdmission_CRDSemanticsEnforcedByAPIServerCode(t *testing.T) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict([]byte(semanticsCRD), &crd); err != nil {
		t.Fatal(err)
	}
	adm, err := newAdmission(&crd)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    string
		wantErr []string
	}{
		{name: "within every limit", spec: "selector: {a: x, b: w}\nport: http\nraw: {any: {thing: 1}}\ngroups: [{members: [{id: 1}, {id: 2}]}]\n"},
		{name: "int-or-string takes an integer", spec: "port: 8080\n"},
		{name: "more keys than maxProperties", spec: "selector: {a: x, b: w, c: z}\n", wantErr: []string{"spec.selector", "Too many", "2"}},
		{name: "int-or-string refuses a boolean", spec: "port: true\n", wantErr: []string{"spec.port", "Invalid value"}},
		{name: "duplicate key of a list map nested in a list", spec: "groups: [{members: [{id: 1}, {id: 1, role: x}]}]\n", wantErr: []string{"spec.groups[0].members[1]", "Duplicate value"}},
		{name: "map value of the wrong type", spec: "selector: {a: 1}\n", wantErr: []string{"spec.selector.a", "Invalid value", "string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var spec map[string]interface{}
			if err := yaml.Unmarshal([]byte(tt.spec), &spec); err != nil {
				t.Fatal(err)
			}
			inst := &unstructured.Unstructured{Object: map[string]interface{}{
				"apiVersion": "kro.run/v1alpha1", "kind": "Thing",
				"metadata": map[string]interface{}{"name": "t", "namespace": "default"}, "spec": spec,
			}}
			err := adm.admit(context.Background(), inst)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if raw, _, _ := unstructured.NestedMap(inst.Object, "spec", "raw"); tt.name == "within every limit" && raw["any"] == nil {
					t.Errorf("preserve-unknown-fields content pruned: %v", inst.Object["spec"])
				}
				return
			}
			if err == nil {
				t.Fatal("admitted, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
