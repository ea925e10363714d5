package render

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// databaseRGD is the child: a defaulted, bounded size, a forEach over replicas and an
// includeWhen, so expansion must run the child's own admission and graph.
const databaseRGD = `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: database
spec:
  schema:
    apiVersion: v1alpha1
    kind: Database
    spec:
      size: integer | default=1 minimum=0 maximum=10
      zones: "[]string | default=[\"a\"]"
      backup: boolean | default=false
  resources:
    - id: config
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${schema.metadata.name}
        data:
          size: ${string(schema.spec.size)}
    - id: shards
      forEach:
        - zone: ${schema.spec.zones}
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${config.metadata.name + "-" + zone}
        data:
          zone: ${zone}
    - id: backup
      includeWhen:
        - ${schema.spec.backup}
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${schema.metadata.name}-backup
`

// shopRGD nests a Database between two plain resources.
func shopRGD(dbSpec, dbMeta string) string {
	return `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: shop
spec:
  schema:
    apiVersion: v1alpha1
    kind: Shop
    spec:
      dbSize: integer | default=2
  resources:
    - id: first
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${schema.metadata.name}-first
    - id: db
      template:
        apiVersion: kro.run/v1alpha1
        kind: Database
        metadata:
          name: ${first.metadata.name}-db
` + dbMeta + `        spec:
` + dbSpec + `    - id: last
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${db.metadata.name}-last
`
}

const shopInstance = "apiVersion: kro.run/v1alpha1\nkind: Shop\nmetadata:\n  name: shop\n  namespace: team\n"

func renderNested(t *testing.T, files map[string]string, opts ...Option) ([]*unstructured.Unstructured, error) {
	t.Helper()
	root := t.TempDir()
	writeFiles(t, root, files)
	e, err := New(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Render(context.Background(), "app")
	if err != nil {
		return nil, err
	}
	return decodeStream(t, out), nil
}

func TestRender_NestedInstancesExpandWithKroSemanticsPerLevel(t *testing.T) {
	tests := []struct {
		name           string
		dbSpec, dbMeta string
		opts           []Option
		want           string // kind/name in order
		waves          string
		namespaces     string
	}{
		{
			name:       "child defaults, forEach and includeWhen; parent's namespace",
			dbSpec:     "          size: ${schema.spec.dbSize}\n",
			want:       "ConfigMap/shop-first ConfigMap/shop-first-db ConfigMap/shop-first-db-a ConfigMap/shop-first-db-last",
			waves:      "0 1 2 3",
			namespaces: "team team team team",
		},
		{
			name:       "child spec from the parent, namespace from the parent's template",
			dbSpec:     "          zones: [east, west]\n          backup: true\n",
			dbMeta:     "          namespace: data\n",
			want:       "ConfigMap/shop-first ConfigMap/shop-first-db ConfigMap/shop-first-db-east ConfigMap/shop-first-db-west ConfigMap/shop-first-db-backup ConfigMap/shop-first-db-last",
			waves:      "0 1 2 2 1 3",
			namespaces: "team data data data data team",
		},
		{
			name:       "emit keeps the nested instance",
			dbSpec:     "          size: ${schema.spec.dbSize}\n",
			opts:       []Option{WithNestedInstances(NestedEmit)},
			want:       "ConfigMap/shop-first Database/shop-first-db ConfigMap/shop-first-db-last",
			waves:      "0 1 2",
			namespaces: "team team team",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := renderNested(t, map[string]string{
				"rgds/database.yaml": databaseRGD, "rgds/shop.yaml": shopRGD(tt.dbSpec, tt.dbMeta), "app/instance.yaml": shopInstance,
			}, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ids(objs), " "); got != tt.want {
				t.Fatalf("objects = %s\nwant      %s", got, tt.want)
			}
			if got := wavesOf(objs); got != tt.waves {
				t.Errorf("sync waves = %s, want %s", got, tt.waves)
			}
			var ns []string
			for _, o := range objs {
				ns = append(ns, o.GetNamespace())
			}
			if got := strings.Join(ns, " "); got != tt.namespaces {
				t.Errorf("namespaces = %s, want %s", got, tt.namespaces)
			}
			for _, o := range objs {
				if o.GetLabels()[LabelInstance] != "shop" {
					t.Errorf("%s: %s = %q, want the top instance", o.GetName(), LabelInstance, o.GetLabels()[LabelInstance])
				}
			}
			if objs[1].GetKind() == "ConfigMap" {
				l := objs[1].GetLabels()
				if l[LabelRGD] != "database" || l[LabelResource] != "db.config" {
					t.Errorf("child labels = %v, want rgd database, resource db.config", l)
				}
				if got := objs[1].GetAnnotations()[AnnotationChain]; got != "Shop shop > Database shop-first-db" {
					t.Errorf("%s = %q", AnnotationChain, got)
				}
				if tt.dbSpec == "          size: ${schema.spec.dbSize}\n" {
					if size, _, _ := unstructured.NestedString(objs[1].Object, "data", "size"); size != "2" {
						t.Errorf("child size = %q, want the parent's default 2", size)
					}
				}
			}
		})
	}
}

func TestRender_NestedInstanceErrorsNameTheChain(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		is    error
		want  []string
	}{
		{
			name: "nested instance invalid for the child RGD",
			files: map[string]string{"rgds/database.yaml": databaseRGD, "rgds/shop.yaml": shopRGD("          size: 50\n", ""),
				"app/instance.yaml": shopInstance},
			want: []string{"app/instance.yaml", `Shop "shop"`, `resource "db" of rgds/shop.yaml (an instance of ResourceGraphDefinition "database" in rgds/database.yaml): Database "shop-first-db"`,
				"rgds/database.yaml", "spec.size", "less than or equal to 10"},
		},
		{
			name: "RGD nesting cycle",
			files: map[string]string{
				"rgds/a.yaml":       nestingRGD("a", "A", "B"),
				"rgds/b.yaml":       nestingRGD("b", "B", "A"),
				"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: A\nmetadata:\n  name: top\n",
			},
			is:   ErrNestingCycle,
			want: []string{"app/instance.yaml", "A → B → A", "nested-instances: emit"},
		},
		{
			name:  "nesting deeper than the limit",
			files: deepChain(MaxNestingDepth + 1),
			is:    ErrNestingTooDeep,
			want:  []string{"app/instance.yaml", "L0 → L1", "L9 → L10", "more than 10 levels"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := renderNested(t, tt.files)
			if err == nil {
				t.Fatalf("rendered %v, want an error", ids(objs))
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Exactly at the limit renders.
	if objs, err := renderNested(t, deepChain(MaxNestingDepth)); err != nil || len(objs) != 1 {
		t.Fatalf("%d levels: %v, %v; want one ConfigMap", MaxNestingDepth, ids(objs), err)
	}
}

// nestingRGD is an RGD of kind whose one resource is an instance of next ("" for a ConfigMap).
func nestingRGD(name, kind, next string) string {
	tmpl := "        apiVersion: v1\n        kind: ConfigMap\n        metadata:\n          name: ${schema.metadata.name}-leaf\n"
	if next != "" {
		tmpl = "        apiVersion: kro.run/v1alpha1\n        kind: " + next + "\n        metadata:\n          name: ${schema.metadata.name}-" + strings.ToLower(next) + "\n"
	}
	return "apiVersion: kro.run/v1alpha1\nkind: ResourceGraphDefinition\nmetadata:\n  name: " + name +
		"\nspec:\n  schema:\n    apiVersion: v1alpha1\n    kind: " + kind + "\n  resources:\n    - id: next\n      template:\n" + tmpl
}

// deepChain is L0 nests L1 … nests L(levels-1), whose resource is a ConfigMap.
func deepChain(levels int) map[string]string {
	files := map[string]string{"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: L0\nmetadata:\n  name: top\n"}
	for i := 0; i < levels; i++ {
		next := ""
		if i+1 < levels {
			next = fmt.Sprintf("L%d", i+1)
		}
		files[fmt.Sprintf("rgds/l%d.yaml", i)] = nestingRGD(fmt.Sprintf("l%d", i), fmt.Sprintf("L%d", i), next)
	}
	return files
}
