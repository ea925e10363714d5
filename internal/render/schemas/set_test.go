package schemas

import (
	"os"
	"strings"
	"sync"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// lookup walks a resolved schema along a dotted path; "[]" steps into array items and "{}" into
// map values, so "spec.template.spec.containers[].image" reaches a container's image.
func lookup(t *testing.T, s *spec.Schema, path string) *spec.Schema {
	t.Helper()
	cur := s
	for _, part := range strings.Split(path, ".") {
		name, suffix, _ := strings.Cut(part, "[")
		if name != "" {
			p, ok := cur.Properties[name]
			if !ok {
				t.Fatalf("path %s: no property %q (have %v)", path, name, keys(cur.Properties))
			}
			cur = &p
		}
		for ; suffix != ""; suffix = strings.TrimPrefix(suffix, "][") {
			if cur.Items == nil || cur.Items.Schema == nil {
				t.Fatalf("path %s: %q is not an array", path, name)
			}
			cur = cur.Items.Schema
			suffix = strings.TrimPrefix(suffix, "]")
		}
	}
	return cur
}

func keys(m map[string]spec.Schema) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func newSet(t *testing.T, opts ...Option) *Set {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestResolveSchema_BuiltinKindsHaveNestedFields(t *testing.T) {
	s := newSet(t, WithKubeVersion("1.34"), WithWarnings(func(msg string) { t.Errorf("unexpected warning: %s", msg) }))
	tests := []struct {
		name     string
		gvk      schema.GroupVersionKind
		path     string
		wantType string // "" checks only that the field exists
		wantExt  string // an x-kubernetes-* extension or format the field must carry
	}{
		{"deployment container image", gvk("apps", "v1", "Deployment"), "spec.template.spec.containers[].image", "string", ""},
		{"deployment replicas", gvk("apps", "v1", "Deployment"), "spec.replicas", "integer", ""},
		{"deployment metadata labels", gvk("apps", "v1", "Deployment"), "metadata.labels", "object", ""},
		{"deployment containers list-map", gvk("apps", "v1", "Deployment"), "spec.template.spec.containers", "array", "x-kubernetes-list-type"},
		{"deployment status", gvk("apps", "v1", "Deployment"), "status.availableReplicas", "integer", ""},
		{"service target port is int-or-string", gvk("", "v1", "Service"), "spec.ports[].targetPort", "", "format:int-or-string"},
		{"service cluster IP", gvk("", "v1", "Service"), "spec.clusterIP", "string", ""},
		{"configmap data", gvk("", "v1", "ConfigMap"), "data", "object", ""},
		{"job pod restart policy", gvk("batch", "v1", "Job"), "spec.template.spec.restartPolicy", "string", ""},
		{"job backoff limit", gvk("batch", "v1", "Job"), "spec.backoffLimit", "integer", ""},
		{"ingress backend port", gvk("networking.k8s.io", "v1", "Ingress"), "spec.rules[].http.paths[].backend.service.port.number", "integer", ""},
		{"hpa v2 utilization", gvk("autoscaling", "v2", "HorizontalPodAutoscaler"), "spec.metrics[].resource.target.averageUtilization", "integer", ""},
		{"clusterrole rules", gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"), "rules[].verbs[]", "string", ""},
		{"pdb min available", gvk("policy", "v1", "PodDisruptionBudget"), "spec.minAvailable", "", "format:int-or-string"},
		{"crd schema keeps preserve-unknown-fields", gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "spec.versions[].schema.openAPIV3Schema", "object", ""},
		{"storage class provisioner", gvk("storage.k8s.io", "v1", "StorageClass"), "provisioner", "string", ""},
		{"lease holder", gvk("coordination.k8s.io", "v1", "Lease"), "spec.holderIdentity", "string", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sch, err := s.ResolveSchema(tt.gvk)
			if err != nil {
				t.Fatalf("ResolveSchema(%s): %v", tt.gvk, err)
			}
			f := lookup(t, sch, tt.path)
			if tt.wantType != "" && !f.Type.Contains(tt.wantType) {
				t.Errorf("%s: type %v, want %s", tt.path, f.Type, tt.wantType)
			}
			if ext, ok := strings.CutPrefix(tt.wantExt, "format:"); ok {
				if f.Format != ext {
					t.Errorf("%s: format %q, want %q", tt.path, f.Format, ext)
				}
			} else if tt.wantExt != "" {
				if _, ok := f.Extensions[tt.wantExt]; !ok {
					t.Errorf("%s: extensions %v lack %s", tt.path, f.Extensions, tt.wantExt)
				}
			}
			if !s.Known(tt.gvk) {
				t.Errorf("Known(%s) = false", tt.gvk)
			}
		})
	}
}

func gvk(group, version, kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: group, Version: version, Kind: kind}
}

func TestResolveSchema_InlinesEveryRef(t *testing.T) {
	s := newSet(t)
	sch, err := s.ResolveSchema(gvk("apps", "v1", "Deployment"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(path string, s *spec.Schema, depth int)
	walk = func(path string, s *spec.Schema, depth int) {
		if depth > 40 {
			t.Fatalf("%s: schema nests deeper than 40 levels", path)
		}
		if s.Ref.String() != "" || len(s.AllOf) > 0 {
			t.Errorf("%s: unresolved reference %q allOf=%d", path, s.Ref.String(), len(s.AllOf))
		}
		for name, p := range s.Properties {
			walk(path+"."+name, &p, depth+1)
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(path+"[]", s.Items.Schema, depth+1)
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
			walk(path+"{}", s.AdditionalProperties.Schema, depth+1)
		}
	}
	walk("Deployment", sch, 0)
}

func TestNew_SelectsClosestSnapshot(t *testing.T) {
	all, err := embeddedSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	oldest, newest := all[0].name, all[len(all)-1].name
	tests := []struct {
		want    string
		wantVer string // prefix of the chosen snapshot
		wantErr string
	}{
		{want: "1.35.1", wantVer: "v1.35."},
		{want: "v1.34.2", wantVer: "v1.34."},
		{want: "1.36", wantVer: "v1.36."},
		{want: "v1.34.0+k3s1", wantVer: "v1.34."},
		{want: "v1.37.0-rc.1", wantVer: "v1.37."},
		{want: "1.20", wantVer: oldest},
		{want: "1.99", wantVer: newest},
		{want: "", wantVer: newest},
		{want: "garbage", wantErr: `"garbage" is not a Kubernetes version`},
		{want: "2.1", wantErr: `"2.1" is not a Kubernetes version`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			s, err := New(WithKubeVersion(tt.want))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New(%q) error = %v, want it to contain %q", tt.want, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), newest) {
					t.Errorf("error %q should list the embedded versions", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.want, err)
			}
			if !strings.HasPrefix(s.KubeVersion(), tt.wantVer) {
				t.Errorf("New(%q).KubeVersion() = %s, want %s*", tt.want, s.KubeVersion(), tt.wantVer)
			}
		})
	}
}

// Every built-in kind a resource serves must resolve in every snapshot: this is what catches a
// generator change that drops a component some kind refers to.
func TestResolveSchema_EveryServedKindInEverySnapshot(t *testing.T) {
	all, err := embeddedSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	for _, snap := range all {
		t.Run(snap.name, func(t *testing.T) {
			s := newSet(t, WithKubeVersion(snap.name))
			if s.KubeVersion() != snap.name {
				t.Fatalf("KubeVersion() = %s, want %s", s.KubeVersion(), snap.name)
			}
			n := 0
			for gvk, b := range s.builtins {
				if b.resource == "" {
					continue
				}
				n++
				sch, err := s.ResolveSchema(gvk)
				if err != nil {
					t.Errorf("ResolveSchema(%s): %v", gvk, err)
					continue
				}
				if _, ok := sch.Properties["metadata"].Properties["name"]; !ok {
					t.Errorf("%s: metadata.name missing", gvk)
				}
			}
			if n < 50 {
				t.Errorf("only %d served kinds in %s", n, snap.name)
			}
		})
	}
}

// testCRDs are the CRDs of testdata/crds.yaml: Widget (example.com/v1) and GadgetClass.
func testCRDs(t *testing.T) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	raw, err := os.ReadFile("testdata/crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crds, err := ParseCRDs(raw)
	if err != nil {
		t.Fatalf("ParseCRDs: %v", err)
	}
	return crds
}

func TestCRD_ResolvesAndMaps(t *testing.T) {
	crds := testCRDs(t)
	if len(crds) != 2 {
		t.Fatalf("ParseCRDs found %d CRDs, want 2 (the ConfigMap is skipped)", len(crds))
	}
	s := newSet(t, WithCRDs(crds...), WithWarnings(func(msg string) { t.Errorf("unexpected warning: %s", msg) }))

	widget := gvk("example.com", "v1", "Widget")
	tests := []struct {
		gvk      schema.GroupVersionKind
		path     string
		wantType string
		wantExt  string
	}{
		{widget, "spec.size", "integer", ""},
		{widget, "spec.port", "", "x-kubernetes-int-or-string"},
		{widget, "spec.extra", "object", "x-kubernetes-preserve-unknown-fields"},
		{widget, "status.ready", "boolean", ""},
		{widget, "apiVersion", "string", ""},
		{widget, "metadata.name", "string", ""},
		{widget, "metadata.labels", "object", ""},
		{widget, "spec.template.metadata.namespace", "string", ""}, // embedded resource gets ObjectMeta
		{widget, "spec.template.kind", "string", ""},
		{gvk("example.com", "v1alpha1", "GadgetClass"), "spec.driver", "string", ""},
	}
	for _, tt := range tests {
		t.Run(tt.gvk.Kind+"."+tt.path, func(t *testing.T) {
			sch, err := s.ResolveSchema(tt.gvk)
			if err != nil {
				t.Fatalf("ResolveSchema: %v", err)
			}
			f := lookup(t, sch, tt.path)
			if tt.wantType != "" && !f.Type.Contains(tt.wantType) {
				t.Errorf("type %v, want %s", f.Type, tt.wantType)
			}
			if tt.wantExt != "" {
				if v, ok := f.Extensions.GetBool(tt.wantExt); !ok || !v {
					t.Errorf("extensions %v lack %s: true", f.Extensions, tt.wantExt)
				}
			}
		})
	}

	mapper := s.RESTMapper()
	for _, tt := range []struct {
		gvk          schema.GroupVersionKind
		wantResource string
		wantScope    meta.RESTScopeName
	}{
		{widget, "widgets", meta.RESTScopeNameNamespace},
		{gvk("example.com", "v1alpha1", "GadgetClass"), "gadgetclasses", meta.RESTScopeNameRoot},
	} {
		m, err := mapper.RESTMapping(tt.gvk.GroupKind(), tt.gvk.Version)
		if err != nil {
			t.Fatalf("RESTMapping(%s): %v", tt.gvk, err)
		}
		if m.Resource.Resource != tt.wantResource || m.Scope.Name() != tt.wantScope {
			t.Errorf("RESTMapping(%s) = %s %s, want %s %s", tt.gvk, m.Resource.Resource, m.Scope.Name(), tt.wantResource, tt.wantScope)
		}
	}
	if got, err := mapper.KindFor(schema.GroupVersionResource{Group: "example.com", Resource: "widget"}); err != nil || got != widget {
		t.Errorf("KindFor(widget) = %v, %v; want %v", got, err, widget)
	}
	if s.Known(gvk("example.com", "v1beta1", "Widget")) {
		t.Error("the unserved v1beta1 of Widget is Known")
	}
}

// A Set without CRDs shares its snapshot's built-ins mapper: CRDs added to one Set must never
// reach another, before or after it, nor the shared mapper.
func TestRESTMapper_CRDsStayInTheirSet(t *testing.T) {
	crds := testCRDs(t)
	widgets := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	before := newSet(t)
	with := newSet(t)
	if err := with.AddCRD(crds[0]); err != nil {
		t.Fatal(err)
	}
	after := newSet(t)
	if got, err := with.RESTMapper().KindFor(widgets); err != nil || got.Kind != "Widget" {
		t.Fatalf("the Set with the Widget CRD: KindFor(widgets) = %v, %v", got, err)
	}
	for name, s := range map[string]*Set{"made before": before, "made after": after} {
		if got, err := s.RESTMapper().KindFor(widgets); err == nil {
			t.Errorf("a Set %s the CRD was added elsewhere maps widgets to %v", name, got)
		}
		if _, err := s.RESTMapper().KindFor(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}); err != nil {
			t.Errorf("a Set %s: KindFor(deployments): %v", name, err)
		}
	}
}

func TestCRD_Errors(t *testing.T) {
	tests := []struct {
		file    string
		wantErr []string
	}{
		{"testdata/crd-not-structural.yaml", []string{`"brokens.example.com"`, "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type", "Required"}},
		{"testdata/crd-v1beta1.yaml", []string{"document 1", `"olds.example.com"`, "apiextensions.k8s.io/v1beta1"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			crds, err := ParseCRDs(raw)
			if err == nil {
				var s *Set
				s, err = New()
				if err != nil {
					t.Fatal(err)
				}
				for _, crd := range crds {
					if err = s.AddCRD(crd); err != nil {
						break
					}
				}
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestParseCRDs_EmptyAndForeignDocuments(t *testing.T) {
	crds, err := ParseCRDs([]byte("---\n# nothing\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"))
	if err != nil || len(crds) != 0 {
		t.Fatalf("ParseCRDs = %d CRDs, %v; want none, no error", len(crds), err)
	}
	if _, err := ParseCRDs([]byte("kind: [unclosed")); err == nil || !strings.Contains(err.Error(), "document 1") {
		t.Fatalf("ParseCRDs(bad YAML) error = %v, want it to name document 1", err)
	}
}

func TestUnknownKind_PermissiveSchemaAndOneWarning(t *testing.T) {
	var warnings []string
	s := newSet(t, WithWarnings(func(msg string) { warnings = append(warnings, msg) }))
	monitor := gvk("monitoring.coreos.com", "v1", "ServiceMonitor")
	for range 2 {
		sch, err := s.ResolveSchema(monitor)
		if err != nil {
			t.Fatalf("ResolveSchema: %v", err)
		}
		if !sch.Type.Contains("object") {
			t.Errorf("type %v, want object", sch.Type)
		}
		if v, ok := sch.Extensions.GetBool("x-kubernetes-preserve-unknown-fields"); !ok || !v {
			t.Errorf("extensions %v, want x-kubernetes-preserve-unknown-fields: true", sch.Extensions)
		}
	}
	m, err := s.RESTMapper().RESTMapping(monitor.GroupKind(), monitor.Version)
	if err != nil {
		t.Fatalf("RESTMapping: %v", err)
	}
	if m.Resource.Resource != "servicemonitors" || m.Scope.Name() != meta.RESTScopeNameNamespace || m.GroupVersionKind != monitor {
		t.Errorf("RESTMapping = %+v, want servicemonitors, namespaced", m)
	}
	if len(warnings) != 1 {
		t.Fatalf("got %d warnings %q, want 1", len(warnings), warnings)
	}
	for _, want := range []string{"ServiceMonitor", "monitoring.coreos.com/v1", "not type-checked", "servicemonitors", "CRD"} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("warning %q does not mention %q", warnings[0], want)
		}
	}
	if s.Known(monitor) {
		t.Error("Known(ServiceMonitor) = true")
	}

	// A second unknown kind warns on its own, once, even when the mapping is asked first.
	other := gvk("example.org", "v2", "Thing")
	if _, err := s.RESTMapper().RESTMapping(other.GroupKind(), other.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveSchema(other); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[1], "kind Thing (example.org/v2)") {
		t.Errorf("warnings %q, want a second one naming kind Thing (example.org/v2)", warnings)
	}
}

func TestAddCRD_ReplacesPermissiveSchema(t *testing.T) {
	s := newSet(t)
	widget := gvk("example.com", "v1", "Widget")
	if sch, _ := s.ResolveSchema(widget); len(sch.Properties) != 0 {
		t.Fatalf("before AddCRD: properties %v, want the permissive schema", keys(sch.Properties))
	}
	crds := testCRDs(t)
	if err := s.AddCRD(crds[0]); err != nil {
		t.Fatal(err)
	}
	sch, err := s.ResolveSchema(widget)
	if err != nil {
		t.Fatal(err)
	}
	lookup(t, sch, "spec.size")
}

func TestRESTMapper_BuiltinResourcesAndScopes(t *testing.T) {
	s := newSet(t, WithWarnings(func(msg string) { t.Errorf("unexpected warning: %s", msg) }))
	mapper := s.RESTMapper()
	tests := []struct {
		gvk          schema.GroupVersionKind
		wantResource string
		wantScope    meta.RESTScopeName
	}{
		{gvk("apps", "v1", "Deployment"), "deployments", meta.RESTScopeNameNamespace},
		{gvk("", "v1", "Namespace"), "namespaces", meta.RESTScopeNameRoot},
		{gvk("", "v1", "Service"), "services", meta.RESTScopeNameNamespace},
		{gvk("", "v1", "Endpoints"), "endpoints", meta.RESTScopeNameNamespace},
		{gvk("", "v1", "PersistentVolume"), "persistentvolumes", meta.RESTScopeNameRoot},
		{gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"), "clusterroles", meta.RESTScopeNameRoot},
		{gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"), "rolebindings", meta.RESTScopeNameNamespace},
		{gvk("networking.k8s.io", "v1", "Ingress"), "ingresses", meta.RESTScopeNameNamespace},
		{gvk("networking.k8s.io", "v1", "IngressClass"), "ingressclasses", meta.RESTScopeNameRoot},
		{gvk("autoscaling", "v2", "HorizontalPodAutoscaler"), "horizontalpodautoscalers", meta.RESTScopeNameNamespace},
		{gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "customresourcedefinitions", meta.RESTScopeNameRoot},
		{gvk("storage.k8s.io", "v1", "StorageClass"), "storageclasses", meta.RESTScopeNameRoot},
		{gvk("policy", "v1", "PodDisruptionBudget"), "poddisruptionbudgets", meta.RESTScopeNameNamespace},
	}
	for _, tt := range tests {
		t.Run(tt.gvk.Kind, func(t *testing.T) {
			m, err := mapper.RESTMapping(tt.gvk.GroupKind(), tt.gvk.Version)
			if err != nil {
				t.Fatalf("RESTMapping: %v", err)
			}
			want := tt.gvk.GroupVersion().WithResource(tt.wantResource)
			if m.Resource != want || m.Scope.Name() != tt.wantScope {
				t.Errorf("RESTMapping = %s %s, want %s %s", m.Resource, m.Scope.Name(), want, tt.wantScope)
			}
		})
	}
	// Without a version the mapper prefers the newest: autoscaling/v2 over v1.
	m, err := mapper.RESTMapping(schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"})
	if err != nil || m.GroupVersionKind.Version != "v2" {
		t.Errorf("RESTMapping(hpa, no version) = %v, %v; want v2", m, err)
	}
}

// The lead's renderer may resolve resources of several RGDs at once.
func TestSet_ConcurrentUse(t *testing.T) {
	s := newSet(t, WithWarnings(func(string) {}))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kinds := []schema.GroupVersionKind{gvk("apps", "v1", "Deployment"), gvk("", "v1", "Service"), gvk("x.io", "v1", "Unknown")}
			k := kinds[i%len(kinds)]
			if _, err := s.ResolveSchema(k); err != nil {
				t.Error(err)
			}
			if _, err := s.RESTMapper().RESTMapping(k.GroupKind(), k.Version); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
