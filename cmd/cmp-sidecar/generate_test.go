package main

import (
	"path/filepath"
	"strings"
	"testing"
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

func TestVersion_NamesKro(t *testing.T) {
	res := run(t, t.TempDir(), nil, "version")
	if res.code != 0 || !strings.Contains(res.stdout, "kro v0.9.4") {
		t.Fatalf("version: exit %d, %q", res.code, res.stdout)
	}
}
