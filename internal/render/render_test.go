package render

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const testRepo = "testdata/repo"

// renderObjects renders paths of testdata/repo and decodes the stream.
func renderObjects(t *testing.T, opts []Option, paths ...string) ([]*unstructured.Unstructured, []byte) {
	t.Helper()
	out := renderRaw(t, testRepo, opts, paths...)
	return decodeStream(t, out), out
}

func renderRaw(t *testing.T, root string, opts []Option, paths ...string) []byte {
	t.Helper()
	e, err := New(root, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	out, err := e.Render(context.Background(), paths...)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out
}

func decodeStream(t *testing.T, out []byte) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufioReader(out))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		var m map[string]interface{}
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, doc)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

func ids(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

func TestRender_FrontendBecomesDeploymentServiceInDAGOrder(t *testing.T) {
	objs, _ := renderObjects(t, nil, "apps/frontend/instance.yaml")
	if got, want := strings.Join(ids(objs), " "), "Deployment/frontend Service/frontend ConfigMap/frontend-monitor"; got != want {
		t.Fatalf("objects = %s, want %s", got, want)
	}
	dep := objs[0]
	img, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if got := img[0].(map[string]interface{})["image"]; got != "registry.example.com/team/frontend:1.2.1" {
		t.Errorf("image = %v", got)
	}
	if r, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas"); toInt(r) != 2 {
		t.Errorf("replicas = %d, want 2", r)
	}
	// Defaults from SimpleSchema reach the template.
	if tier, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "metadata", "labels", "tier"); tier != "web" {
		t.Errorf("defaulted tier = %q, want web", tier)
	}
	// A reference to another resource's spec resolves from its desired state.
	sel, _, _ := unstructured.NestedStringMap(objs[1].Object, "spec", "selector")
	if sel["app"] != "frontend" {
		t.Errorf("service selector = %v", sel)
	}
	for _, o := range objs {
		if o.GetNamespace() != "shop" {
			t.Errorf("%s namespace = %q, want the instance's shop", o.GetName(), o.GetNamespace())
		}
		l := o.GetLabels()
		if l[LabelInstance] != "frontend" || l[LabelRGD] != "webapp" || l[LabelResource] == "" {
			t.Errorf("%s labels = %v", o.GetName(), l)
		}
	}
}

func TestRender_SyncWavesFollowDAGDepthAndExplicitWins(t *testing.T) {
	tests := []struct {
		name  string
		opts  []Option
		waves map[string]string
	}{
		{"on by default", nil, map[string]string{"Deployment": "0", "Service": "1", "ConfigMap": "-5"}},
		{"turned off", []Option{WithSyncWaves(false)}, map[string]string{"Deployment": "", "Service": "", "ConfigMap": "-5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _ := renderObjects(t, tt.opts, "apps/frontend/instance.yaml")
			for _, o := range objs {
				if got := o.GetAnnotations()[SyncWaveAnnotation]; got != tt.waves[o.GetKind()] {
					t.Errorf("%s sync-wave = %q, want %q", o.GetKind(), got, tt.waves[o.GetKind()])
				}
			}
		})
	}
}

func TestRender_PlainManifestsPassThroughByteForByte(t *testing.T) {
	_, out := renderObjects(t, nil, "apps/frontend")
	extra, err := os.ReadFile(filepath.Join(testRepo, "apps/frontend/extra.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, bytes.TrimSpace(extra)) {
		t.Fatalf("extra.yaml did not pass through unchanged:\n%s", out)
	}
	if bytes.Contains(out, []byte("ResourceGraphDefinition")) || bytes.Contains(out, []byte("kind: WebApp")) {
		t.Fatalf("RGDs and instances must not be emitted:\n%s", out)
	}
}

func TestRender_NamespaceFallsBackToArgoAppNamespace(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want string
	}{
		{"app namespace", []Option{WithNamespace("develop")}, "develop"},
		{"none given", nil, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _ := renderObjects(t, tt.opts, "apps/nsless")
			for _, o := range objs {
				if o.GetNamespace() != tt.want {
					t.Errorf("%s namespace = %q, want %q", o.GetName(), o.GetNamespace(), tt.want)
				}
			}
		})
	}
}

func TestRender_ForEachIncludeWhenAndCRDKinds(t *testing.T) {
	objs, _ := renderObjects(t, nil, "apps/stack")
	want := "ConfigMap/team-a-dev ConfigMap/team-a-prod Widget/team-a ConfigMap/team-b-dev"
	if got := strings.Join(ids(objs), " "); got != want {
		t.Fatalf("objects = %s, want %s (team-b excludes its widget)", got, want)
	}
	if size, _, _ := unstructured.NestedFieldNoCopy(objs[2].Object, "spec", "size"); toInt(size) != 3 {
		t.Errorf("widget size = %d, want the default 3", size)
	}
	if objs[3].GetNamespace() != "other" {
		t.Errorf("team-b objects belong in its own namespace, got %q", objs[3].GetNamespace())
	}
}

func TestRender_IsDeterministic(t *testing.T) {
	first := renderRaw(t, testRepo, nil, "apps/stack", "apps/frontend")
	for i := 0; i < 5; i++ {
		if again := renderRaw(t, testRepo, nil, "apps/stack", "apps/frontend"); !bytes.Equal(first, again) {
			t.Fatalf("render %d differs from the first", i+2)
		}
	}
}

func TestRender_ExplicitRGDPathsLimitTheSearch(t *testing.T) {
	e, err := New(testRepo, WithRGDPaths("rgds/webapp.yaml"), WithCRDPaths("crds"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Render(context.Background(), "apps/frontend"); err != nil {
		t.Fatalf("webapp is in the named path: %v", err)
	}
	_, err = e.Render(context.Background(), "apps/stack")
	if err == nil || !strings.Contains(err.Error(), "no ResourceGraphDefinition defines kind Stack") ||
		!strings.Contains(err.Error(), "rgd-paths rgds/webapp.yaml") {
		t.Fatalf("error = %v, want the missing kind and where it looked", err)
	}
}

func TestAdmission_AppliesKroDefaults(t *testing.T) {
	dir := kroExamples(t)
	e, err := New(filepath.Join(dir, "defaults"))
	if err != nil {
		t.Fatal(err)
	}
	inst := readInstance(t, filepath.Join(dir, "defaults", "instance.yaml"))
	def, err := e.Definition(inst.GroupVersionKind())
	if err != nil {
		t.Fatal(err)
	}
	inst.SetNamespace("default")
	if err := def.admission.admit(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	spec := inst.Object["spec"].(map[string]interface{})
	checks := map[string]interface{}{
		"element": "e", "enabled": true, "number": int64(100), "required": int64(15),
	}
	for k, want := range checks {
		if got := spec[k]; got != want && !(isNumber(got) && isNumber(want) && toInt(got) == toInt(want)) {
			t.Errorf("spec.%s = %v (%T), want %v", k, got, got, want)
		}
	}
	if got, _, _ := unstructured.NestedStringSlice(inst.Object, "spec", "elements"); strings.Join(got, ",") != "a,b,c,d" {
		t.Errorf("spec.elements = %v", got)
	}
	if got, _, _ := unstructured.NestedFieldNoCopy(inst.Object, "spec", "config", "field3"); toInt(got) != 2002 {
		t.Errorf("spec.config.field3 = %v", got)
	}
}

func isNumber(v interface{}) bool {
	switch v.(type) {
	case int64, float64, int:
		return true
	}
	return false
}

func toInt(v interface{}) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

func readInstance(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(filepath.Base(path), data)
	if err != nil || len(docs) == 0 {
		t.Fatalf("%s: %v", path, err)
	}
	return docs[0].obj
}

func TestRender_NestedRGDIsTypeCheckedAgainstItsCRD(t *testing.T) {
	database := `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: database
spec:
  schema:
    apiVersion: v1alpha1
    kind: Database
    spec:
      size: integer | default=1
  resources:
    - id: cm
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ${schema.metadata.name}
        data:
          size: ${string(schema.spec.size)}
`
	app := func(size string) string {
		return `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: app
spec:
  schema:
    apiVersion: v1alpha1
    kind: App
    spec:
      dbSize: integer | default=5
      label: string | default="x"
  resources:
    - id: db
      template:
        apiVersion: kro.run/v1alpha1
        kind: Database
        metadata:
          name: ${schema.metadata.name}-db
        spec:
          size: ` + size + "\n"
	}
	tests := []struct {
		name, size, wantErr string
	}{
		{"typed field accepts an integer", "${schema.spec.dbSize}", ""},
		{"typed field refuses a string", "${schema.spec.label}", `expected "int"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, map[string]string{
				"rgds/database.yaml": database, "rgds/app.yaml": app(tt.size),
				"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: App\nmetadata:\n  name: shop\n",
			})
			var warnings strings.Builder
			e, err := New(root, WithWarnings(&warnings))
			if err != nil {
				t.Fatal(err)
			}
			out, err := e.Render(context.Background(), "app")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeStream(t, out)
			if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" || objs[0].GetName() != "shop-db" {
				t.Fatalf("objects = %v, want the nested Database instance expanded into its ConfigMap", ids(objs))
			}
			if warnings.Len() > 0 {
				t.Errorf("a nested RGD kind must not fall back to a permissive schema: %s", warnings.String())
			}
		})
	}
}

func TestRender_EmptyResultIsErrEmptyRenderUnlessAllowed(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"app/instance.yaml": "# soon\n---\n", "app/notes.yml": ""})
	e, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Render(context.Background(), "app")
	if !errors.Is(err, ErrEmptyRender) {
		t.Fatalf("error = %v, want ErrEmptyRender", err)
	}
	for _, w := range []string{"app:", "app/instance.yaml, app/notes.yml", "allow-empty"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if out := renderRaw(t, root, []Option{WithAllowEmpty(true)}, "app"); len(out) != 0 {
		t.Errorf("allow-empty: output %q, want none", out)
	}
}
