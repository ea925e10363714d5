package schemas_test

import (
	"os"
	"strings"
	"testing"

	"github.com/kubernetes-sigs/kro/api/v1alpha1"
	"github.com/kubernetes-sigs/kro/pkg/graph"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/internal/render/schemas"
)

var kroConfig = graph.Config{MaxCollectionSize: 1000, MaxCollectionDimensionSize: 10}

// buildRGD runs kro's own builder, exactly as the renderer will, over an RGD read from testdata
// with one line replaced.
func buildRGD(t *testing.T, set *schemas.Set, file, oldLine, newLine string) (*graph.Graph, error) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if oldLine != "" {
		if !strings.Contains(string(raw), oldLine) {
			t.Fatalf("%s has no line %q", file, oldLine)
		}
		raw = []byte(strings.Replace(string(raw), oldLine, newLine, 1))
	}
	var rgd v1alpha1.ResourceGraphDefinition
	if err := yaml.UnmarshalStrict(raw, &rgd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	b, err := graph.NewBuilder(nil, nil, graph.WithSchemaResolver(set), graph.WithRESTMapper(set.RESTMapper()))
	if err != nil {
		t.Fatalf("graph.NewBuilder: %v", err)
	}
	return b.NewResourceGraphDefinition(&rgd, kroConfig)
}

func TestKroBuilder_TypeChecksBuiltinsAgainstSnapshot(t *testing.T) {
	tests := []struct {
		name             string
		oldLine, newLine string
		wantErr          string // "" means the RGD must build
	}{
		{name: "valid webapp builds"},
		{
			name:    "string plus int is a CEL type error",
			oldLine: "replicas: ${schema.spec.replicas}",
			newLine: "replicas: ${schema.spec.name + 1}",
			wantErr: "no matching overload",
		},
		{
			name:    "string into the integer replicas field",
			oldLine: "replicas: ${schema.spec.replicas}",
			newLine: "replicas: ${schema.spec.name}",
			wantErr: "spec.replicas",
		},
		{
			name:    "misspelled Deployment field",
			oldLine: "replicas: ${schema.spec.replicas}",
			newLine: "replicaz: ${schema.spec.replicas}",
			wantErr: "replicaz",
		},
		{
			name:    "reference to a field Service does not have",
			oldLine: "clusterIP: ${service.spec.clusterIP}",
			newLine: "clusterIP: ${service.spec.clusterIPz}",
			wantErr: "clusterIPz",
		},
		{
			name:    "nested container field typed from PodSpec",
			oldLine: "image: ${schema.spec.image}",
			newLine: "image: ${schema.spec.replicas}",
			wantErr: "image",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := schemas.New(schemas.WithWarnings(func(msg string) { t.Errorf("unexpected warning: %s", msg) }))
			if err != nil {
				t.Fatal(err)
			}
			g, err := buildRGD(t, set, "testdata/rgd-webapp.yaml", tt.oldLine, tt.newLine)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("kro rejected the RGD: %v", err)
				}
				if got := strings.Join(g.TopologicalOrder, ","); got != "deployment,service" {
					t.Errorf("topological order %s, want deployment,service", got)
				}
				if _, ok := g.CRD.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties["availableReplicas"]; !ok {
					t.Errorf("instance CRD status lacks availableReplicas inferred from the Deployment schema")
				}
				return
			}
			if err == nil {
				t.Fatalf("kro accepted the RGD, want an error mentioning %q", tt.wantErr)
			}
			t.Logf("kro: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestKroBuilder_CRDKindsAndUnknownKind(t *testing.T) {
	raw, err := os.ReadFile("testdata/crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crds, err := schemas.ParseCRDs(raw)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		oldLine, newLine string
		wantErr          string
	}{
		{name: "CRD kinds type-check and the unknown kind passes as dyn"},
		{
			name:    "string into the CRD's integer field",
			oldLine: "size: ${schema.spec.size}",
			newLine: "size: ${schema.spec.name}",
			wantErr: "spec.size",
		},
		{
			name:    "reference to a field the CRD status does not have",
			oldLine: "ready: ${widget.status.ready}",
			newLine: "ready: ${widget.status.readyz}",
			wantErr: "readyz",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warnings []string
			set, err := schemas.New(schemas.WithKubeVersion("v1.34.0+k3s1"), schemas.WithCRDs(crds...),
				schemas.WithWarnings(func(msg string) { warnings = append(warnings, msg) }))
			if err != nil {
				t.Fatal(err)
			}
			g, err := buildRGD(t, set, "testdata/rgd-operator.yaml", tt.oldLine, tt.newLine)
			if tt.wantErr != "" {
				t.Logf("kro: %v", err)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("kro rejected the RGD: %v", err)
			}
			if len(g.Nodes) != 3 {
				t.Errorf("%d nodes, want 3", len(g.Nodes))
			}
			if len(warnings) != 1 || !strings.Contains(warnings[0], "ServiceMonitor") {
				t.Errorf("warnings %q, want exactly one, about ServiceMonitor", warnings)
			}
		})
	}
}

func TestKroBuilder_WebAppBuildsOnEverySnapshot(t *testing.T) {
	versions := schemas.KubeVersions()
	if len(versions) < 3 {
		t.Fatalf("embedded versions %v, want at least 3 minors", versions)
	}
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			set, err := schemas.New(schemas.WithKubeVersion(v))
			if err != nil {
				t.Fatal(err)
			}
			if set.KubeVersion() != v {
				t.Fatalf("KubeVersion() = %s, want %s", set.KubeVersion(), v)
			}
			if _, err := buildRGD(t, set, "testdata/rgd-webapp.yaml", "", ""); err != nil {
				t.Fatalf("kro rejected the RGD against %s: %v", v, err)
			}
		})
	}
}

// An RGD can use another RGD's instance kind; the renderer feeds the CRD kro synthesizes for the
// first back into the Set, so it must be accepted like an operator's CRD.
func TestAddCRD_AcceptsKroSynthesizedInstanceCRD(t *testing.T) {
	set, err := schemas.New()
	if err != nil {
		t.Fatal(err)
	}
	// schema.group is defaulted to kro.run by the apiserver from kro's CRD; nothing defaults it
	// offline, and a CRD without a group is invalid.
	g, err := buildRGD(t, set, "testdata/rgd-webapp.yaml", "    kind: WebApp\n", "    kind: WebApp\n    group: kro.run\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.AddCRD(g.CRD); err != nil {
		t.Fatalf("AddCRD(kro's WebApp CRD): %v", err)
	}
	webapp := schema.GroupVersionKind{Group: "kro.run", Version: "v1alpha1", Kind: "WebApp"}
	sch, err := set.ResolveSchema(webapp)
	if err != nil {
		t.Fatal(err)
	}
	if !sch.Properties["spec"].Properties["replicas"].Type.Contains("integer") {
		t.Errorf("WebApp spec.replicas = %+v, want integer", sch.Properties["spec"].Properties["replicas"])
	}
	m, err := set.RESTMapper().RESTMapping(webapp.GroupKind(), webapp.Version)
	if err != nil || m.Resource.Resource != "webapps" {
		t.Errorf("RESTMapping(WebApp) = %v, %v; want webapps", m, err)
	}
}
