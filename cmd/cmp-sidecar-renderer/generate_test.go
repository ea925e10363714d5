package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/render"
)

const nslessInstance = `apiVersion: kro.run/v1alpha1
kind: WebApp
metadata:
  name: frontend
spec:
  values:
    deployment:
      image: registry.example.com/team/frontend
      tag: "1.2.1"
`

// TestGenerate_ReadsArgoCDPluginContract runs `cmp-sidecar generate` as argocd-cmp-server
// does: in the application folder of the extracted repository, with Argo CD's environment.
func TestGenerate_ReadsArgoCDPluginContract(t *testing.T) {
	tests := []struct {
		name       string
		env        []string
		want       []string
		notWant    []string
		wantStderr []string
	}{
		{
			name: "namespace from ARGOCD_APP_NAMESPACE, waves on",
			env:  []string{"ARGOCD_APP_NAMESPACE=develop"},
			want: []string{"namespace: develop", "argocd.argoproj.io/sync-wave", "image: registry.example.com/team/frontend:1.2.1"},
		},
		{
			name:    "parameters from ARGOCD_APP_PARAMETERS",
			env:     []string{`ARGOCD_APP_PARAMETERS=[{"name":"rgd-paths","string":"rgds"},{"name":"sync-waves","string":"false"}]`},
			want:    []string{"kind: Deployment", "namespace: default"},
			notWant: []string{`sync-wave: "0"`, `sync-wave: "1"`},
		},
		{
			name:    "parameters from PARAM_ variables",
			env:     []string{"PARAM_SYNC_WAVES=false", "PARAM_RGD_PATHS=rgds"},
			want:    []string{"kind: Service"},
			notWant: []string{`sync-wave: "0"`, `sync-wave: "1"`},
		},
		{
			name:    "parameters from the app's plugin env (ARGOCD_ENV_)",
			env:     []string{"ARGOCD_ENV_SYNC_WAVES=false"},
			notWant: []string{`sync-wave: "0"`, `sync-wave: "1"`},
		},
		{
			name:       "KUBE_API_VERSIONS warns about unserved API versions",
			env:        []string{"KUBE_API_VERSIONS=v1,v1/Service"},
			want:       []string{"kind: Deployment"},
			wantStderr: []string{`warning: Deployment "frontend": the target cluster does not serve apps/v1 (KUBE_API_VERSIONS)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeRepo(t, map[string]string{"rgds/webapp.yaml": "@webapp", "develop/frontend/instance.yaml": nslessInstance})
			env := append([]string{"ARGOCD_APP_NAME=develop-frontend", "ARGOCD_APP_SOURCE_PATH=develop/frontend", "ARGOCD_APP_REVISION=abc123"}, tt.env...)
			res := run(t, filepath.Join(root, "develop", "frontend"), env, "generate")
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			wantAll(t, res.stdout, tt.want...)
			for _, nw := range tt.notWant {
				if strings.Contains(res.stdout, nw) {
					t.Errorf("output mentions %q:\n%s", nw, res.stdout)
				}
			}
			wantAll(t, res.stderr, tt.wantStderr...)
		})
	}
}

func TestGenerate_ErrorNamesTheApplicationAndWritesNothing(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		file string
		want []string
	}{
		{
			name: "broken instance",
			file: strings.Replace(nslessInstance, "image: registry.example.com/team/frontend", "replicas: 2", 1),
			want: []string{"application develop-frontend at revision abc123", "develop/frontend/instance.yaml", "spec.values.deployment.image", "Required value"},
		},
		{
			name: "bad sync-waves parameter",
			file: nslessInstance,
			env:  []string{"PARAM_SYNC_WAVES=sometimes"},
			want: []string{"sync-waves", `"sometimes" is not a boolean`},
		},
		{
			name: "rgd-paths escaping the repository",
			file: nslessInstance,
			env:  []string{"PARAM_RGD_PATHS=../../.."},
			want: []string{"outside the repository root"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeRepo(t, map[string]string{"rgds/webapp.yaml": "@webapp", "develop/frontend/instance.yaml": tt.file})
			env := append([]string{"ARGOCD_APP_NAME=develop-frontend", "ARGOCD_APP_SOURCE_PATH=develop/frontend", "ARGOCD_APP_REVISION=abc123"}, tt.env...)
			res := run(t, filepath.Join(root, "develop", "frontend"), env, "generate")
			if res.code == 0 || res.stdout != "" {
				t.Fatalf("exit %d, stdout %q: want a failure with nothing on stdout", res.code, res.stdout)
			}
			wantAll(t, res.stderr, tt.want...)
		})
	}
}

// TestVersion_NamesTheKroOfGoMod: the version printed is the kro release go.mod pins, read
// from go.mod itself, so a kro upgrade cannot leave `version` naming the old one.
func TestVersion_NamesTheKroOfGoMod(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	// The require line of go.mod (a replace of kro would show up as "=>" and fail here).
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(kroModule) + `\s+(v\S+)`).FindSubmatch(data)
	if m == nil || regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(kroModule)+`\s.*=>`).Match(data) {
		t.Fatalf("go.mod does not require %s plainly", kroModule)
	}
	pinned := string(m[1])
	res := run(t, t.TempDir(), nil, "version")
	if res.code != 0 || !strings.Contains(res.stdout, "(kro "+pinned+")") {
		t.Fatalf("version: exit %d, %q; want kro %s as go.mod pins it", res.code, res.stdout, pinned)
	}
}

// envOf is a getenv over a fixed environment, as argocd-cmp-server hands it to the plugin.
func envOf(vars ...string) func(string) string {
	m := map[string]string{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// TestReadPluginEnv_ArgoCDv2AndV3Shapes reads the environment of the same Application as
// Argo CD v2.14 and v3 send it: v3 adds ARGOCD_APP_PROJECT_NAME and passes plugin.env entries
// whose value is empty, which must mean what their absence means on v2.14.
func TestReadPluginEnv_ArgoCDv2AndV3Shapes(t *testing.T) {
	common := []string{"ARGOCD_APP_NAME=develop-frontend", "ARGOCD_APP_NAMESPACE=develop",
		"ARGOCD_APP_SOURCE_PATH=develop/frontend", "ARGOCD_APP_REVISION=abc123", "KUBE_VERSION=1.34"}
	tests := []struct {
		name     string
		env      []string
		want     pluginEnv
		describe string
	}{
		{
			name:     "v2.14: empty plugin.env entries are not passed",
			env:      common,
			want:     pluginEnv{syncWaves: true, nested: render.NestedExpand},
			describe: "application develop-frontend at revision abc123",
		},
		{
			name: "v3: empty plugin.env entries are passed and mean unset",
			env: append([]string{"ARGOCD_APP_PROJECT_NAME=shop", "ARGOCD_ENV_SYNC_WAVES=", "ARGOCD_ENV_RGD_PATHS=",
				"ARGOCD_ENV_ALLOW_EMPTY=", "ARGOCD_ENV_NESTED_INSTANCES=", "PARAM_SYNC_WAVES="}, common...),
			want:     pluginEnv{project: "shop", syncWaves: true, nested: render.NestedExpand},
			describe: "application develop-frontend (project shop) at revision abc123",
		},
		{
			name: "v3: set plugin.env entries still count",
			env: append([]string{"ARGOCD_APP_PROJECT_NAME=shop", "ARGOCD_ENV_SYNC_WAVES=false", "ARGOCD_ENV_RGD_PATHS=rgds, platform/rgds",
				"ARGOCD_ENV_ALLOW_EMPTY=true", "ARGOCD_ENV_NESTED_INSTANCES=emit"}, common...),
			want:     pluginEnv{project: "shop", rgdPaths: []string{"rgds", "platform/rgds"}, allowEmpty: true, nested: render.NestedEmit},
			describe: "application develop-frontend (project shop) at revision abc123",
		},
		{
			name: "v3: an empty parameter falls back like an absent one, a set one wins over plugin.env",
			env: append([]string{"ARGOCD_APP_PROJECT_NAME=shop", "ARGOCD_ENV_SYNC_WAVES=false",
				`ARGOCD_APP_PARAMETERS=[{"name":"sync-waves","string":"true"},{"name":"rgd-paths","string":""}]`}, common...),
			want:     pluginEnv{project: "shop", syncWaves: true, nested: render.NestedExpand},
			describe: "application develop-frontend (project shop) at revision abc123",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readPluginEnv(envOf(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			if got.appName != "develop-frontend" || got.namespace != "develop" || got.sourcePath != "develop/frontend" || got.kubeVersion != "1.34" {
				t.Errorf("app = %+v", got)
			}
			if got.project != tt.want.project || got.syncWaves != tt.want.syncWaves || got.allowEmpty != tt.want.allowEmpty ||
				got.nested != tt.want.nested || strings.Join(got.rgdPaths, ",") != strings.Join(tt.want.rgdPaths, ",") {
				t.Errorf("env = %+v\nwant  %+v", got, tt.want)
			}
			if d := got.describe(); d != tt.describe {
				t.Errorf("describe() = %q, want %q", d, tt.describe)
			}
		})
	}
}

// TestGenerate_ArgoCDv3EnvironmentRenders runs generate with the environment Argo CD v3 sends,
// empty plugin.env entries included, and names the project in errors.
func TestGenerate_ArgoCDv3EnvironmentRenders(t *testing.T) {
	root := writeRepo(t, map[string]string{"rgds/webapp.yaml": "@webapp", "develop/frontend/instance.yaml": nslessInstance,
		"broken/frontend/instance.yaml": strings.Replace(nslessInstance, "image: registry.example.com/team/frontend", "replicas: 2", 1)})
	v3 := []string{"ARGOCD_APP_NAME=develop-frontend", "ARGOCD_APP_PROJECT_NAME=shop", "ARGOCD_APP_NAMESPACE=develop",
		"ARGOCD_APP_REVISION=abc123", "ARGOCD_ENV_SYNC_WAVES=", "ARGOCD_ENV_RGD_PATHS=", "ARGOCD_ENV_ALLOW_EMPTY="}
	res := run(t, filepath.Join(root, "develop", "frontend"), append(v3, "ARGOCD_APP_SOURCE_PATH=develop/frontend"), "generate")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	wantAll(t, res.stdout, "namespace: develop", `argocd.argoproj.io/sync-wave: "1"`, "image: registry.example.com/team/frontend:1.2.1")

	res = run(t, filepath.Join(root, "broken", "frontend"), append(v3, "ARGOCD_APP_SOURCE_PATH=broken/frontend"), "generate")
	if res.code == 0 || res.stdout != "" {
		t.Fatalf("exit %d, stdout %q: want a failure", res.code, res.stdout)
	}
	wantAll(t, res.stderr, "application develop-frontend (project shop) at revision abc123", "broken/frontend/instance.yaml", "spec.values.deployment.image")
}
