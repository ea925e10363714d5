package plugin_test

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sync"
	"testing"
	"time"

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
// run) costs. An iteration is one call. Calls alternate in blocks of the same kind, so load on
// the machine weighs on both alike, and the first call of each block is not counted:
// argocd-cmp-server removes a call's extracted repository after it has answered, which would
// bill the next call, of the other kind, for it. It reports the median call of each
// (plugin-ms, directory-ms) and their ratio; floor-ms and floor-ratio are the same for a plugin
// that does no work (floorPluginName), the least any plugin can cost.
func BenchmarkGenerateManifest(b *testing.B) {
	ctx := context.Background()
	pluginSrc := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: "develop/frontend", TargetRevision: "main",
		Plugin: examplePlugin()}
	dirSrc := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: plainPath, TargetRevision: "main"}

	var setupErr error
	plainOnce.Do(func() { setupErr = commitPlainCopy(ctx, repoServer(b, st.ArgoCDV2()), pluginSrc) })
	if setupErr != nil {
		b.Fatal(setupErr)
	}
	floorSrc := floorSource(pluginSrc)
	const block = 5
	for _, argo := range st.ArgoCDInstalls {
		client := repoServer(b, argo)
		b.Run(argo.Version, func(b *testing.B) {
			kinds := []struct {
				name  string
				src   *v1alpha1.ApplicationSource
				calls []time.Duration
			}{{name: "plugin", src: pluginSrc}, {name: "directory", src: dirSrc}, {name: "floor", src: floorSrc}}
			for i := 0; b.Loop(); i++ {
				k := &kinds[i/block%len(kinds)]
				start := time.Now()
				resp, err := client.GenerateManifest(ctx, manifestRequest(k.src))
				if err != nil {
					b.Fatalf("GenerateManifest (Argo CD %s, %s): %v", argo.Version, k.name, err)
				}
				if len(resp.Manifests) == 0 {
					b.Fatalf("GenerateManifest (Argo CD %s, %s): no manifests", argo.Version, k.name)
				}
				if i%block != 0 {
					k.calls = append(k.calls, time.Since(start))
				}
			}
			if len(kinds[2].calls) == 0 {
				b.Fatalf("-benchtime of at least %dx is needed to time every kind", len(kinds)*block)
			}
			p, d, f := median(kinds[0].calls), median(kinds[1].calls), median(kinds[2].calls)
			b.ReportMetric(float64(p.Microseconds())/1000, "plugin-ms")
			b.ReportMetric(float64(d.Microseconds())/1000, "directory-ms")
			b.ReportMetric(float64(p)/float64(d), "ratio")
			b.ReportMetric(float64(f.Microseconds())/1000, "floor-ms")
			b.ReportMetric(float64(f)/float64(d), "floor-ratio")
		})
	}
}

// examplePlugin is the plugin source of examples/gitops/appsets/services.yaml: the benchmarks
// measure the configuration users are shown. Without rgd-paths the sidecar reads every YAML
// file of the repository looking for RGDs (see BenchmarkRender_WholeRepositoryScan).
func examplePlugin() *v1alpha1.ApplicationSourcePlugin {
	return &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{
		{Name: "rgd-paths", String_: ptr("rgds")},
	}}
}

func ptr[T any](v T) *T { return &v }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
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

// commitPlainCopy renders the plugin app once and commits each object as YAML under plainPath;
// the floor plugin prints the same objects for it.
func commitPlainCopy(ctx context.Context, client apiclient.RepoServerServiceClient, src *v1alpha1.ApplicationSource) error {
	resp, err := client.GenerateManifest(ctx, manifestRequest(src))
	if err != nil {
		return fmt.Errorf("GenerateManifest for the plugin app: %w", err)
	}
	if err := startFloorPlugin(ctx); err != nil {
		return err
	}
	if err := writeFloorOutput(manifestRequest(src).AppName, resp.Manifests); err != nil {
		return err
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
