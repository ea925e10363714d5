package plugin_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v2/reposerver/apiclient"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/yaml"
)

// largeRepoName is a repository with the refresh benchmark's 100 kro applications and
// largeFillerFiles files of largeFillerBytes random bytes each beside them (documentation,
// other teams' folders: what makes a monorepo large).
const (
	largeRepoName    = "gitops-large"
	largeFillerFiles = 100
	largeFillerBytes = 50 << 10
)

var (
	largeOnce sync.Once
	largeErr  error
	// largePathsAddr is the repo-server started with
	// ARGOCD_REPO_SERVER_PLUGIN_USE_MANIFEST_GENERATE_PATHS=true.
	largePathsAddr string
)

// BenchmarkLargeRepoRefresh100Apps measures what argocd-repo-server's
// reposerver.plugin.use.manifest.generate.paths gives on the plugin path in a repository of
// ~5 MB beside the 100 applications (Argo CD v2.14, manifest cache off, all 100 at once, no new
// commit: only generation is timed). "plugin" and "floor" run on the stack's repo-server, which
// streams the whole repository (without .git) to the plugin on every call; the
// "-generate-paths" kinds run on a second repo-server with the setting on, which streams only
// the common folder of the application's path and its manifest-generate-paths: for the kro
// plugin the example's ".;/rgds" (the folder and the RGDs at the repository root), for the floor
// plugin "." (the folder alone). "directory" is the same objects as directory apps.
func BenchmarkLargeRepoRefresh100Apps(b *testing.B) {
	ctx := context.Background()
	largeOnce.Do(func() { largeErr = seedLargeRepo(ctx, repoServer(b, st.ArgoCDV2())) })
	if largeErr != nil {
		b.Fatal(largeErr)
	}
	whole := repoServer(b, st.ArgoCDV2())
	closer, paths, err := apiclient.NewRepoServerClientset(largePathsAddr, 300, apiclient.TLSConfiguration{DisableTLS: true}).NewRepoServerClient()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closer.Close() })
	for _, kind := range []string{"directory", "plugin", "plugin-generate-paths", "floor", "floor-generate-paths"} {
		client := whole
		if strings.HasSuffix(kind, "-generate-paths") {
			client = paths
		}
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				g, gctx := errgroup.WithContext(ctx)
				for i := range refreshApps {
					g.Go(func() error {
						req := largeRequest(kind, i)
						resp, err := client.GenerateManifest(gctx, req)
						if err != nil {
							return fmt.Errorf("GenerateManifest (%s app %d): %w", kind, i, err)
						}
						if len(resp.Manifests) != 2 {
							return fmt.Errorf("GenerateManifest (%s app %d): %d manifests, want a Deployment and a Service", kind, i, len(resp.Manifests))
						}
						return nil
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// largeAppName is the name of the large repository's application i (the floor plugin's key).
func largeAppName(i int) string { return fmt.Sprintf("large-%d", i) }

func largeRequest(kind string, i int) *apiclient.ManifestRequest {
	src := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(largeRepoName), TargetRevision: "main",
		Path: fmt.Sprintf("apps/app-%d", i), Plugin: examplePlugin()}
	generatePaths := ".;/rgds"
	switch strings.TrimSuffix(kind, "-generate-paths") {
	case "floor":
		src = floorSource(src)
		generatePaths = "."
	case "directory":
		src = &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(largeRepoName), TargetRevision: "main",
			Path: fmt.Sprintf("plain/app-%d", i)}
	}
	req := manifestRequest(src)
	req.AppName = largeAppName(i)
	req.AnnotationManifestGeneratePaths = generatePaths
	return req
}

// seedLargeRepo creates largeRepoName (examples/gitops, 100 instances under apps/, their
// rendered objects under plain/, the filler under docs/), gives the floor plugin the rendered
// objects, and starts the second repo-server.
func seedLargeRepo(ctx context.Context, client apiclient.RepoServerServiceClient) error {
	if err := st.Git.CreateRepo(ctx, largeRepoName); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(st.Dir, "checkout-")
	if err != nil {
		return err
	}
	large, err := st.Git.Clone(ctx, largeRepoName, filepath.Join(dir, largeRepoName))
	if err != nil {
		return err
	}
	// A push larger than http.postBuffer (1 MiB) goes out chunked, which the Git server's CGI
	// handler refuses (HTTP 400): send it with a length.
	if _, err := large.Git(ctx, "config", "http.postBuffer", "104857600"); err != nil {
		return err
	}
	if err := large.CopyTree(examplesDir, "."); err != nil {
		return err
	}
	inst, err := os.ReadFile(filepath.Join(examplesDir, "develop", "frontend", "instance.yaml"))
	if err != nil {
		return err
	}
	for i := range refreshApps {
		body := strings.Replace(strings.Replace(string(inst), "name: frontend", fmt.Sprintf("name: app-%d", i), 1), `"1.2.1"`, fmt.Sprintf(`"1.2.%d"`, i), 1)
		if err := large.WriteFile(path.Join("apps", fmt.Sprintf("app-%d", i), "instance.yaml"), []byte(body)); err != nil {
			return err
		}
	}
	filler := make([]byte, largeFillerBytes/2)
	for i := range largeFillerFiles {
		_, _ = rand.Read(filler)
		if err := large.WriteFile(path.Join("docs", fmt.Sprintf("page-%03d.txt", i)), []byte(hex.EncodeToString(filler))); err != nil {
			return err
		}
	}
	if _, err := large.CommitAndPush(ctx, "bench: a large repository"); err != nil {
		return err
	}
	if err := startFloorPlugin(ctx); err != nil {
		return err
	}
	for i := range refreshApps {
		resp, err := client.GenerateManifest(ctx, largeRequest("plugin", i))
		if err != nil {
			return fmt.Errorf("GenerateManifest for large-repository app %d: %w", i, err)
		}
		if err := writeFloorOutput(largeAppName(i), resp.Manifests); err != nil {
			return err
		}
		for j, m := range resp.Manifests {
			y, err := yaml.JSONToYAML([]byte(m))
			if err != nil {
				return err
			}
			if err := large.WriteFile(path.Join("plain", fmt.Sprintf("app-%d", i), fmt.Sprintf("%02d.yaml", j)), y); err != nil {
				return err
			}
		}
	}
	if _, err := large.CommitAndPush(ctx, "bench: the same objects as directory apps"); err != nil {
		return err
	}
	largePathsAddr, err = st.StartRepoServer(ctx, st.ArgoCDV2(), "generate-paths", "ARGOCD_REPO_SERVER_PLUGIN_USE_MANIFEST_GENERATE_PATHS=true")
	return err
}
