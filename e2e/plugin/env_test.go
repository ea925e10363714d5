package plugin_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"

	"github.com/kropipe/kropipe/e2e/stack"
)

// TestPlugin_GenerateManifest_EmptyPluginEnvKeepsDefaults asks each Argo CD line's repo-server
// (its GenerateManifest gRPC API, manifest cache off) to render develop/frontend through the kro
// plugin with plugin.env SYNC_WAVES set to "" and to "false". Argo CD v3 passes the empty value
// to the plugin as ARGOCD_ENV_SYNC_WAVES="", v2.14 leaves it out: either way the default (a
// sync-wave annotation on every object) must hold. "false" must turn the annotations off, which
// shows the variable does reach cmp-sidecar through that line.
func TestPlugin_GenerateManifest_EmptyPluginEnvKeepsDefaults(t *testing.T) {
	t.Parallel()
	image, tag := instanceImage(t, filepath.Join(examplesDir, "develop/frontend/instance.yaml"))
	eachArgoCD(t, true, func(t *testing.T, argo *stack.ArgoCDInstall) {
		client := repoServer(t, argo)
		for _, tc := range []struct {
			value     string
			wantWaves bool
		}{{"", true}, {"false", false}} {
			src := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: "develop/frontend", TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Env: v1alpha1.Env{{Name: "SYNC_WAVES", Value: tc.value}}}}
			resp, err := client.GenerateManifest(context.Background(), manifestRequest(src))
			if err != nil {
				t.Fatalf("GenerateManifest with plugin env SYNC_WAVES=%q: %v", tc.value, err)
			}
			var deployImage string
			for _, m := range resp.Manifests {
				var obj struct {
					Kind     string `json:"kind"`
					Metadata struct {
						Name        string            `json:"name"`
						Annotations map[string]string `json:"annotations"`
					} `json:"metadata"`
					Spec struct {
						Template struct {
							Spec struct {
								Containers []struct {
									Image string `json:"image"`
								} `json:"containers"`
							} `json:"spec"`
						} `json:"template"`
					} `json:"spec"`
				}
				if err := json.Unmarshal([]byte(m), &obj); err != nil {
					t.Fatalf("GenerateManifest with SYNC_WAVES=%q: manifest is not JSON: %v\n%s", tc.value, err, m)
				}
				_, hasWave := obj.Metadata.Annotations["argocd.argoproj.io/sync-wave"]
				if hasWave != tc.wantWaves {
					t.Errorf("SYNC_WAVES=%q: %s %s has a sync-wave annotation: %v, want %v", tc.value, obj.Kind, obj.Metadata.Name, hasWave, tc.wantWaves)
				}
				if obj.Kind == "Deployment" && len(obj.Spec.Template.Spec.Containers) > 0 {
					deployImage = obj.Spec.Template.Spec.Containers[0].Image
				}
			}
			if want := image + ":" + tag; deployImage != want {
				t.Errorf("SYNC_WAVES=%q: Deployment image = %q, want %q; manifests:\n%s", tc.value, deployImage, want, strings.Join(resp.Manifests, "\n"))
			}
		}
	})
}
