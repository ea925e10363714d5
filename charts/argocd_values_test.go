package charts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// argoCDValues is the values file for the official argo-cd chart that adds kropipe's sidecar.
const argoCDValues = "argo-cd-values/kropipe-cmp-sidecar.yaml"

// argoCDChartEnv names a folder holding another copy of the official argo-cd chart
// (argoproj/argo-helm's charts/argo-cd) to render through instead of testdata/argo-cd.
const argoCDChartEnv = "KROPIPE_ARGO_CD_CHART"

// kustomizeSidecar is what manifests/cmp-sidecar adds to argocd-repo-server, built through
// manifests/install: the sidecar container, the pod's volumes by name, the plugin ConfigMap's
// plugin.yaml and argocd-cmd-params-cm's data.
type kustomizeSidecar struct {
	container map[string]any
	volumes   map[string]any
	pluginCM  string // the ConfigMap's (hashed) name
	plugin    map[string]any
	params    map[string]any
}

func buildKustomizeSidecar(t *testing.T) kustomizeSidecar {
	t.Helper()
	objs := kustomize(t, "../manifests/install")
	repo := find(t, objs, "Deployment", "argocd-repo-server")
	var k kustomizeSidecar
	k.container = mustAt(t, repo, "spec", "template", "spec", "containers", "name=kropipe-cmp").(map[string]any)
	k.volumes = volumesByName(t, repo)
	k.pluginCM = mustAt(t, k.volumes["kropipe-cmp-plugin"], "configMap", "name").(string)
	cm := find(t, objs, "ConfigMap", k.pluginCM)
	if err := yaml.Unmarshal([]byte(mustAt(t, cm, "data", "plugin.yaml").(string)), &k.plugin); err != nil {
		t.Fatalf("ConfigMap %s plugin.yaml: %v", k.pluginCM, err)
	}
	k.params = mustAt(t, find(t, objs, "ConfigMap", "argocd-cmd-params-cm"), "data").(map[string]any)
	return k
}

func volumesByName(t *testing.T, deployment object) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, v := range mustAt(t, deployment, "spec", "template", "spec", "volumes").([]any) {
		out[v.(map[string]any)["name"].(string)] = v
	}
	return out
}

// asArgoCDChartSidecar is the kustomize sidecar as the argo-cd chart's values say it: the
// chart's ConfigMap argocd-cmp-cm keeps the plugin under kro.yaml, not plugin.yaml. Nothing else
// may differ.
func asArgoCDChartSidecar(t *testing.T, k kustomizeSidecar) (container map[string]any, pluginVolume map[string]any) {
	t.Helper()
	c := deepCopy(t, k.container)
	m, err := at(c, "volumeMounts", "name=kropipe-cmp-plugin")
	if err != nil {
		t.Fatal(err)
	}
	m.(map[string]any)["subPath"] = "kro.yaml"
	return c, map[string]any{"name": "kropipe-cmp-plugin", "configMap": map[string]any{"name": "argocd-cmp-cm"}}
}

func deepCopy(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func readArgoCDValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(argoCDValues)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", argoCDValues, err)
	}
	return v
}

// TestArgoCDValues_SayWhatTheKustomizeComponentDoes: the values file carries exactly the
// sidecar, volumes, plugin.yaml and repo-server setting of manifests/cmp-sidecar and
// manifests/install, so the two install paths cannot drift.
func TestArgoCDValues_SayWhatTheKustomizeComponentDoes(t *testing.T) {
	k := buildKustomizeSidecar(t)
	values := readArgoCDValues(t)
	wantContainer, wantPluginVolume := asArgoCDChartSidecar(t, k)

	containers := mustAt(t, values, "repoServer", "extraContainers").([]any)
	if len(containers) != 1 {
		t.Fatalf("%s: repoServer.extraContainers has %d containers, want the sidecar alone", argoCDValues, len(containers))
	}
	if d := cmp.Diff(wantContainer, containers[0]); d != "" {
		t.Errorf("%s: repoServer.extraContainers[0] differs from manifests/cmp-sidecar's kropipe-cmp (-kustomize +values):\n%s", argoCDValues, d)
	}
	vols := map[string]any{}
	for _, v := range mustAt(t, values, "repoServer", "volumes").([]any) {
		vols[v.(map[string]any)["name"].(string)] = v
	}
	want := map[string]any{"kropipe-cmp-plugin": wantPluginVolume, "kropipe-cmp-tmp": k.volumes["kropipe-cmp-tmp"]}
	if d := cmp.Diff(want, vols); d != "" {
		t.Errorf("%s: repoServer.volumes differ from manifests/cmp-sidecar's (-kustomize +values):\n%s", argoCDValues, d)
	}
	if create := mustAt(t, values, "configs", "cmp", "create"); create != true {
		t.Errorf("%s: configs.cmp.create is %v; without it the chart makes no argocd-cmp-cm", argoCDValues, create)
	}
	if d := cmp.Diff(k.plugin["spec"], mustAt(t, values, "configs", "cmp", "plugins", "kro")); d != "" {
		t.Errorf("%s: configs.cmp.plugins.kro is not plugin.yaml's spec (-plugin.yaml +values):\n%s", argoCDValues, d)
	}
	if d := cmp.Diff(k.params, mustAt(t, values, "configs", "params")); d != "" {
		t.Errorf("%s: configs.params differ from manifests/install's argocd-cmd-params-cm (-kustomize +values):\n%s", argoCDValues, d)
	}
}

// TestArgoCDValues_RenderTheSidecarWithTheArgoCDChart renders the official argo-cd chart with
// the values file and checks the repo-server it makes: the sidecar is manifests/cmp-sidecar's,
// every volume it mounts exists, the chart's copyutil provides argocd-cmp-server, the chart's
// argocd-cmp-cm holds plugin.yaml, and the repo-server restarts when it changes.
//
// The chart is testdata/argo-cd (vendored from the Go module proxy's copy of argo-helm, see
// testdata/argo-cd/ORIGIN.md); $KROPIPE_ARGO_CD_CHART names another copy to try a newer one.
func TestArgoCDValues_RenderTheSidecarWithTheArgoCDChart(t *testing.T) {
	dir := filepath.Join("testdata", "argo-cd")
	if env := os.Getenv(argoCDChartEnv); env != "" {
		dir = env
	}
	c := loadChart(t, dir)
	t.Logf("argo-cd chart %s (Argo CD %s) from %s", c.Metadata.Version, c.Metadata.AppVersion, dir)
	// The release name of Argo CD's install guide: its objects are then argocd-repo-server etc.
	objs := renderRelease(t, c, "argocd", "argocd", readArgoCDValues(t))

	k := buildKustomizeSidecar(t)
	wantContainer, wantPluginVolume := asArgoCDChartSidecar(t, k)
	repo := find(t, objs, "Deployment", "argocd-repo-server")
	pod := mustAt(t, repo, "spec", "template", "spec").(map[string]any)

	sidecar, err := at(pod, "containers", "name=kropipe-cmp")
	if err != nil {
		t.Fatalf("the argo-cd chart's repo-server has no kropipe-cmp container: %v", err)
	}
	if d := cmp.Diff(wantContainer, sidecar); d != "" {
		t.Errorf("the argo-cd chart's kropipe-cmp differs from manifests/cmp-sidecar's (-kustomize +chart):\n%s", d)
	}
	vols := volumesByName(t, repo)
	if d := cmp.Diff(wantPluginVolume, vols["kropipe-cmp-plugin"]); d != "" {
		t.Errorf("volume kropipe-cmp-plugin (-want +chart):\n%s", d)
	}
	if d := cmp.Diff(k.volumes["kropipe-cmp-tmp"], vols["kropipe-cmp-tmp"]); d != "" {
		t.Errorf("volume kropipe-cmp-tmp (-kustomize +chart):\n%s", d)
	}
	for _, m := range wantContainer["volumeMounts"].([]any) {
		if name := m.(map[string]any)["name"].(string); vols[name] == nil {
			t.Errorf("the sidecar mounts volume %s, which the chart's repo-server pod lacks", name)
		}
	}
	// The repo-server talks to the plugin through the socket in the shared plugins volume.
	if p, err := at(pod, "containers", "name=repo-server", "volumeMounts", "name=plugins", "mountPath"); err != nil || p != "/home/argocd/cmp-server/plugins" {
		t.Errorf("the repo-server container mounts plugins at %v (%v), want /home/argocd/cmp-server/plugins", p, err)
	}
	// The sidecar's command is the binary the chart's copyutil init container provides.
	copyutil := mustAt(t, pod, "initContainers", "name=copyutil")
	if s := strings.Join(toStrings(copyutil.(map[string]any)["args"]), " ") + strings.Join(toStrings(copyutil.(map[string]any)["command"]), " "); !strings.Contains(s, "/var/run/argocd/argocd-cmp-server") {
		t.Errorf("the chart's copyutil does not provide /var/run/argocd/argocd-cmp-server: %s", s)
	}
	if _, err := at(repo, "spec", "template", "metadata", "annotations", "checksum/cmp-cm"); err != nil {
		t.Errorf("the repo-server's pod template carries no checksum of argocd-cmp-cm, so a plugin change would not restart it: %v", err)
	}

	var plugin map[string]any
	if err := yaml.Unmarshal([]byte(mustAt(t, find(t, objs, "ConfigMap", "argocd-cmp-cm"), "data", "kro.yaml").(string)), &plugin); err != nil {
		t.Fatalf("argocd-cmp-cm kro.yaml: %v", err)
	}
	if d := cmp.Diff(k.plugin, plugin); d != "" {
		t.Errorf("argocd-cmp-cm's kro.yaml is not plugin.yaml (-plugin.yaml +chart):\n%s", d)
	}
	if v := mustAt(t, find(t, objs, "ConfigMap", "argocd-cmd-params-cm"), "data", "reposerver.plugin.tar.exclusions"); v != k.params["reposerver.plugin.tar.exclusions"] {
		t.Errorf("argocd-cmd-params-cm reposerver.plugin.tar.exclusions = %v, want %v", v, k.params["reposerver.plugin.tar.exclusions"])
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
