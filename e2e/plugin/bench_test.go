package plugin_test

import (
	"context"
	"fmt"
	"path"
	"sync"
	"testing"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v2/reposerver/apiclient"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/e2e/stack"
)

// plainPath holds the plugin's output for develop/frontend committed as plain YAML, so the
// directory app renders the very same objects without the plugin.
const plainPath = "bench/plain/develop-frontend"

var plainOnce sync.Once

// BenchmarkGenerateManifest calls argocd-repo-server's GenerateManifest gRPC API directly, with
// the manifest cache off, for the kro plugin app and for the same objects as a directory app:
// the difference is what the plugin (tarball to argocd-cmp-server, cmp-sidecar run) costs.
func BenchmarkGenerateManifest(b *testing.B) {
	ctx := context.Background()
	closer, client, err := apiclient.NewRepoServerClientset(st.RepoServerAddr, 120, apiclient.TLSConfiguration{DisableTLS: true}).NewRepoServerClient()
	if err != nil {
		b.Fatalf("repo-server client: %v", err)
	}
	defer closer.Close()

	pluginSrc := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: "develop/frontend", TargetRevision: "main",
		Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro"}}
	dirSrc := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: plainPath, TargetRevision: "main"}

	var setupErr error
	plainOnce.Do(func() { setupErr = commitPlainCopy(ctx, client, pluginSrc) })
	if setupErr != nil {
		b.Fatal(setupErr)
	}
	for _, bc := range []struct {
		name string
		src  *v1alpha1.ApplicationSource
	}{{"plugin", pluginSrc}, {"directory", dirSrc}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := client.GenerateManifest(ctx, manifestRequest(bc.src))
				if err != nil {
					b.Fatalf("GenerateManifest (%s): %v", bc.name, err)
				}
				if len(resp.Manifests) == 0 {
					b.Fatalf("GenerateManifest (%s): no manifests", bc.name)
				}
			}
		})
	}
}

func manifestRequest(src *v1alpha1.ApplicationSource) *apiclient.ManifestRequest {
	return &apiclient.ManifestRequest{
		Repo:               &v1alpha1.Repository{Repo: src.RepoURL},
		Revision:           src.TargetRevision,
		NoCache:            true,
		AppLabelKey:        "app.kubernetes.io/instance",
		AppName:            "bench-frontend",
		Namespace:          "bench",
		ApplicationSource:  src,
		KubeVersion:        stack.KubernetesVersion[1:],
		ProjectName:        "default",
		ProjectSourceRepos: []string{"*"},
		TrackingMethod:     "label",
	}
}

// commitPlainCopy renders the plugin app once and commits each object as YAML under plainPath.
func commitPlainCopy(ctx context.Context, client apiclient.RepoServerServiceClient, src *v1alpha1.ApplicationSource) error {
	resp, err := client.GenerateManifest(ctx, manifestRequest(src))
	if err != nil {
		return fmt.Errorf("GenerateManifest for the plugin app: %w", err)
	}
	gitMu.Lock()
	defer gitMu.Unlock()
	for i, m := range resp.Manifests {
		y, err := yaml.JSONToYAML([]byte(m))
		if err != nil {
			return err
		}
		if err := checkout.WriteFile(path.Join(plainPath, fmt.Sprintf("%02d.yaml", i)), y); err != nil {
			return err
		}
	}
	_, err = checkout.CommitAndPush(ctx, "bench: plain copy of develop/frontend")
	return err
}
