package render

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestConformance_KroExamples renders kro's own examples from the pinned module and checks the
// objects against what each RGD says they must be.
func TestConformance_KroExamples(t *testing.T) {
	dir := kroExamples(t)
	tests := []struct {
		example string
		want    []string // kind/name in order
		check   func(t *testing.T, objs []*unstructured.Unstructured)
		wantErr []string
	}{
		{
			example: "webapp",
			// ingress.enabled: true in the instance; service.enabled defaults to true.
			want: []string{"Deployment/test-app", "Service/test-app", "Ingress/test-app"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				c := container(t, objs[0])
				if c["image"] != "nginx" || toInt(c["ports"].([]interface{})[0].(map[string]interface{})["containerPort"]) != 80 {
					t.Errorf("container = %v, want image nginx (default) on port 80 (instance)", c)
				}
				if sa, _, _ := unstructured.NestedString(objs[0].Object, "spec", "template", "spec", "serviceAccountName"); sa != "default" {
					t.Errorf("serviceAccountName = %q, want the default", sa)
				}
				if tp, _, _ := unstructured.NestedSlice(objs[1].Object, "spec", "ports"); toInt(tp[0].(map[string]interface{})["targetPort"]) != 80 {
					t.Errorf("service targetPort = %v, want the instance port 80", tp)
				}
				for _, o := range objs {
					if o.GetNamespace() != "default" {
						t.Errorf("%s namespace = %q, want spec.namespace's default", o.GetKind(), o.GetNamespace())
					}
				}
				if waves := wavesOf(objs); waves != "0 1 2" {
					t.Errorf("sync waves = %s, want deployment → service → ingress", waves)
				}
			},
		},
		{
			example: "job-example",
			want:    []string{"Job/example-job-deployment-job", "Deployment/example-job-deployment"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				cmd := container(t, objs[0])["command"].([]interface{})
				if cmd[1] != "20" {
					t.Errorf("job command = %v, want sleep 20 (string(schema.spec.delayInSeconds))", cmd)
				}
				if r, _, _ := unstructured.NestedFieldNoCopy(objs[1].Object, "spec", "replicas"); toInt(r) != 2 {
					t.Errorf("replicas = %v, want 2", r)
				}
			},
		},
		{
			example: "additionalPrinterColumns",
			want:    []string{"Deployment/test-app", "Service/test-app-service"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				sel, _, _ := unstructured.NestedStringMap(objs[1].Object, "spec", "selector")
				if sel["app"] != "test-app" {
					t.Errorf("service selector = %v, want the deployment's matchLabels", sel)
				}
				if r, _, _ := unstructured.NestedFieldNoCopy(objs[0].Object, "spec", "replicas"); toInt(r) != 3 {
					t.Errorf("replicas = %v, want 3", r)
				}
			},
		},
		{
			example: "defaults",
			want:    nil, // no resources: the instance renders to nothing (defaults are checked in TestAdmission_AppliesKroDefaults)
		},
		{
			example: "cel-functions",
			wantErr: []string{"instance.yaml", `resource "deployment"`, "schema.metadata.uid", "random.seededString(10, schema.metadata.uid)", "spec.template.spec.containers[0].env", "which the API server sets"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.example, func(t *testing.T) {
			root := filepath.Join(dir, tt.example)
			e, err := New(root, WithAllowEmpty(tt.want == nil))
			if err != nil {
				t.Fatal(err)
			}
			out, err := e.Render(context.Background(), "instance.yaml")
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("rendered, want an error:\n%s", out)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeStream(t, out)
			if got := strings.Join(ids(objs), " "); got != strings.Join(tt.want, " ") {
				t.Fatalf("objects = %q, want %q", got, strings.Join(tt.want, " "))
			}
			if tt.check != nil {
				tt.check(t, objs)
			}
		})
	}
}

// TestConformance_CostLimitedProgramsMatchKro renders the examples with kro's own compiled
// programs and with the cost-limited ones this package installs: the objects must be equal.
func TestConformance_CostLimitedProgramsMatchKro(t *testing.T) {
	dir := kroExamples(t)
	for _, example := range []string{"webapp", "job-example", "additionalPrinterColumns"} {
		t.Run(example, func(t *testing.T) {
			e, err := New(filepath.Join(dir, example))
			if err != nil {
				t.Fatal(err)
			}
			inst := readInstance(t, filepath.Join(dir, example, "instance.yaml"))
			def, err := e.Definition(inst.GroupVersionKind())
			if err != nil {
				t.Fatal(err)
			}
			limited, err := def.Render(context.Background(), "instance.yaml", inst, "default")
			if err != nil {
				t.Fatal(err)
			}
			unlimited := compileUnlimited(t, e, def)
			plain, err := unlimited.Render(context.Background(), "instance.yaml", inst, "default")
			if err != nil {
				t.Fatal(err)
			}
			if len(limited) != len(plain) {
				t.Fatalf("%d objects with limits, %d without", len(limited), len(plain))
			}
			for i := range limited {
				a, b := limited[i].Object.Object, plain[i].Object.Object
				if !equalJSON(t, a, b) {
					t.Errorf("object %d differs:\nlimited: %v\nkro:     %v", i, a, b)
				}
			}
		})
	}
}

func container(t *testing.T, o *unstructured.Unstructured) map[string]interface{} {
	t.Helper()
	cs, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if err != nil || len(cs) == 0 {
		t.Fatalf("%s has no containers", o.GetName())
	}
	return cs[0].(map[string]interface{})
}

func wavesOf(objs []*unstructured.Unstructured) string {
	var w []string
	for _, o := range objs {
		w = append(w, o.GetAnnotations()[SyncWaveAnnotation])
	}
	return strings.Join(w, " ")
}
