package render

import (
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const examplesRepo = "../../examples/gitops"

// TestExamples_DevelopAppsRender renders the example GitOps repository the way Argo CD's
// develop-frontend and develop-backend Applications would.
func TestExamples_DevelopAppsRender(t *testing.T) {
	tests := []struct {
		app, image, port string
	}{
		{"develop/frontend", "registry.example.com/team/frontend:1.2.1", "80"},
		{"develop/backend", "registry.example.com/team/backend:2.0.0", "8080"},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			objs := decodeStream(t, renderRaw(t, examplesRepo, []Option{WithNamespace("develop")}, tt.app))
			if got := strings.Join(kinds(objs), " "); got != "Deployment Service" {
				t.Fatalf("kinds = %s, want Deployment Service (ingress is off by default)", got)
			}
			if got := container(t, objs[0])["image"]; got != tt.image {
				t.Errorf("image = %v, want %s", got, tt.image)
			}
			ports, _, _ := unstructured.NestedSlice(objs[1].Object, "spec", "ports")
			if got := strconv.FormatInt(toInt(ports[0].(map[string]interface{})["port"]), 10); got != tt.port {
				t.Errorf("service port = %v, want %s", ports[0], tt.port)
			}
			for _, o := range objs {
				if o.GetNamespace() != "develop" {
					t.Errorf("%s namespace = %q", o.GetKind(), o.GetNamespace())
				}
			}
		})
	}
}

func TestRender_UnknownKindGetsPermissiveSchemaAndAWarning(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"rgds/monitored.yaml": `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: monitored
spec:
  schema:
    apiVersion: v1alpha1
    kind: Monitored
    spec:
      interval: string | default="30s"
  resources:
    - id: monitor
      template:
        apiVersion: monitoring.coreos.com/v1
        kind: ServiceMonitor
        metadata:
          name: ${schema.metadata.name}
        spec:
          endpoints:
            - interval: ${schema.spec.interval}
`,
		"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Monitored\nmetadata:\n  name: web\n",
	})
	var warnings strings.Builder
	objs := decodeStream(t, renderRaw(t, root, []Option{WithWarnings(&warnings)}, "app"))
	if len(objs) != 1 || objs[0].GetKind() != "ServiceMonitor" {
		t.Fatalf("objects = %v", ids(objs))
	}
	if !strings.Contains(warnings.String(), "ServiceMonitor") {
		t.Errorf("warnings = %q, want one naming ServiceMonitor", warnings.String())
	}
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	return out
}
