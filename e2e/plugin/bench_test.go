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

// BenchmarkGenerateManifest calls each Argo CD line's argocd-repo-server GenerateManifest gRPC
// API directly, with the manifest cache off, for the kro plugin app and for the same objects as
// a directory app: the difference is what the plugin (tarball to argocd-cmp-server, cmp-sidecar
// run) costs.
func BenchmarkGenerateManifest(b *testing.B) {
	ctx := context.Background()
	pluginSrc := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: "develop/frontend", TargetRevision: "main",
		Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro"}}
	dirSrc := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: plainPath, TargetRevision: "main"}

	var setupErr error
	plainOnce.Do(func() { setupErr = commitPlainCopy(ctx, repoServer(b, st.ArgoCDV2()), pluginSrc) })
	if setupErr != nil {
		b.Fatal(setupErr)
	}
	for _, argo := range st.ArgoCDInstalls {
		client := repoServer(b, argo)
		for _, bc := range []struct {
			name string
			src  *v1alpha1.ApplicationSource
		}{{"plugin", pluginSrc}, {"directory", dirSrc}} {
			b.Run(argo.Version+"/"+bc.name, func(b *testing.B) {
				for b.Loop() {
					resp, err := client.GenerateManifest(ctx, manifestRequest(bc.src))
					if err != nil {
						b.Fatalf("GenerateManifest (Argo CD %s, %s): %v", argo.Version, bc.name, err)
					}
					if len(resp.Manifests) == 0 {
						b.Fatalf("GenerateManifest (Argo CD %s, %s): no manifests", argo.Version, bc.name)
					}
				}
			})
		}
	}
}

// repoServer is a gRPC client of argo's argocd-repo-server, closed when tb ends. Argo CD v2.14's
// client serves for v3 too: repository.proto keeps the service, methods and field numbers, only
// the Go and proto package names of the messages moved to v3, which the wire does not carry.
// Calls time out after 300 s: BenchmarkRefresh100Apps asks for 100 apps at once.
func repoServer(tb testing.TB, argo *stack.ArgoCDInstall) apiclient.RepoServerServiceClient {
	tb.Helper()
	closer, client, err := apiclient.NewRepoServerClientset(argo.RepoServerAddr, 300, apiclient.TLSConfiguration{DisableTLS: true}).NewRepoServerClient()
	if err != nil {
		tb.Fatalf("Argo CD %s repo-server client: %v", argo.Version, err)
	}
	tb.Cleanup(func() { closer.Close() })
	return client
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
