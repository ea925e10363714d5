package charts_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// update rewrites the files the tests keep in step with the chart (its README's values table,
// the rendered install e2e applies): go test ./... -update.
var update = flag.Bool("update", false, "rewrite kropipe/README.md's values table and testdata/ from the chart")

// object is one rendered Kubernetes object, as JSON would hold it.
type object = map[string]any

// loadChart loads a chart folder the way `helm template DIR` does.
func loadChart(t testing.TB, dir string) *chart.Chart {
	t.Helper()
	c, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("load chart %s: %v", dir, err)
	}
	return c
}

// helmTemplate is `helm template RELEASE CHART --namespace NS --values ...` through the Helm
// library: a client-only install (no cluster), values checked against values.schema.json.
func helmTemplate(c *chart.Chart, name, namespace string, values map[string]any) (string, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(io.Discard, nil)))
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true // as helm template: no release-name check
	install.ReleaseName = name
	install.Namespace = namespace
	install.KubeVersion = &common.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}
	rel, err := install.Run(c, values)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("helm install returned a %T, not a v1 release", rel)
	}
	return r.Manifest, nil
}

// render renders chart c as the release kropipe into namespace with values and returns its
// objects.
func render(t testing.TB, c *chart.Chart, namespace string, values map[string]any) []object {
	t.Helper()
	return renderRelease(t, c, "kropipe", namespace, values)
}

func renderRelease(t testing.TB, c *chart.Chart, name, namespace string, values map[string]any) []object {
	t.Helper()
	manifest, err := helmTemplate(c, name, namespace, values)
	if err != nil {
		t.Fatalf("helm template %s with %v: %v", c.Name(), values, err)
	}
	return splitObjects(t, "helm template "+c.Name(), []byte(manifest))
}

// splitObjects parses a multi-document YAML stream into its objects (empty documents skipped).
func splitObjects(t testing.TB, what string, stream []byte) []object {
	t.Helper()
	var out []object
	for i, doc := range strings.Split("\n"+string(stream), "\n---") {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: document %d: %v\n%s", what, i, err, doc)
		}
		if len(o) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// kustomize builds dir with kustomize's library (what `kubectl kustomize` runs).
func kustomize(t testing.TB, dir string) []object {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return splitObjects(t, "kustomize build "+dir, out)
}

// key names an object as `kubectl get` does: Kind/namespace/name.
func key(o object) string {
	meta, _ := o["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	return fmt.Sprintf("%s/%s/%s", o["kind"], ns, name)
}

// find returns the object of kind and name, failing the test when there is none.
func find(t testing.TB, objs []object, kind, name string) object {
	t.Helper()
	if o := lookup(objs, kind, name); o != nil {
		return o
	}
	var have []string
	for _, o := range objs {
		have = append(have, key(o))
	}
	t.Fatalf("no %s %s among %s", kind, name, strings.Join(have, ", "))
	return nil
}

func lookup(objs []object, kind, name string) object {
	for _, o := range objs {
		if meta, _ := o["metadata"].(map[string]any); o["kind"] == kind && meta["name"] == name {
			return o
		}
	}
	return nil
}

// at walks o along path (map keys, or "name=X" to pick the list element named X).
func at(o any, path ...string) (any, error) {
	cur := o
	for i, p := range path {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[p]
			if !ok {
				return nil, fmt.Errorf("no %s", strings.Join(path[:i+1], "."))
			}
			cur = next
		case []any:
			name, ok := strings.CutPrefix(p, "name=")
			if !ok {
				return nil, fmt.Errorf("%s is a list: pick an element with name=", strings.Join(path[:i], "."))
			}
			cur = nil
			for _, e := range v {
				if m, _ := e.(map[string]any); m["name"] == name {
					cur = m
				}
			}
			if cur == nil {
				return nil, fmt.Errorf("no element named %s in %s", name, strings.Join(path[:i], "."))
			}
		default:
			return nil, errors.New(strings.Join(path[:i], ".") + " is neither a map nor a list")
		}
	}
	return cur, nil
}

// mustAt is at for paths the test requires.
func mustAt(t testing.TB, o any, path ...string) any {
	t.Helper()
	v, err := at(o, path...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
