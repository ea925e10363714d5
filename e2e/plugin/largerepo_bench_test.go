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

// largeKind is one way of serving the large repository's 100 applications.
type largeKind struct {
	name string
	// source is "kro", "floor" or "directory".
	source string
	// generatePaths is the Applications' argocd.argoproj.io/manifest-generate-paths; a kind
	// with one runs on the repo-server with reposerver.plugin.use.manifest.generate.paths on.
	generatePaths string
	// rgdPaths is the kro plugin's rgd-paths parameter (repository paths).
	rgdPaths string
}

var largeKinds = []largeKind{
	{name: "directory", source: "directory"},
	{name: "plugin", source: "kro", rgdPaths: "rgds"},
	// RGDs at the repository root: the common folder of "apps/app-N" and "/rgds" is the root.
	{name: "plugin-generate-paths-root-rgds", source: "kro", generatePaths: ".;/rgds", rgdPaths: "rgds"},
	// RGDs beside the applications: Argo CD streams apps/ alone (100 instances and the RGD).
	{name: "plugin-generate-paths", source: "kro", generatePaths: ".;../rgds", rgdPaths: "apps/rgds"},
	{name: "floor", source: "floor"},
	{name: "floor-generate-paths", source: "floor", generatePaths: "."},
	// The floor plugin sent what the kro plugin gets in "plugin-generate-paths": apps/ streamed,
	// apart from the render, the same work.
	{name: "floor-generate-paths-apps", source: "floor", generatePaths: ".;../rgds"},
}

// BenchmarkLargeRepoRefresh100Apps measures what argocd-repo-server's
// reposerver.plugin.use.manifest.generate.paths gives on the plugin path in a repository of
// ~5 MB beside the 100 applications (Argo CD v2.14, manifest cache off, all 100 at once, no new
// commit: only generation is timed). Kinds without manifest-generate-paths run on the stack's
// repo-server, which streams the whole repository (without .git) to the plugin on every call;
// the others on a second repo-server with the setting on, which streams only the common folder
// of the application's path and its manifest-generate-paths (largeKinds). "directory" is the
// same objects as directory apps.
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
	for _, kind := range largeKinds {
		client := whole
		if kind.generatePaths != "" {
			client = paths
		}
		b.Run(kind.name, func(b *testing.B) {
			for b.Loop() {
				g, gctx := errgroup.WithContext(ctx)
				for i := range refreshApps {
					g.Go(func() error {
						resp, err := client.GenerateManifest(gctx, largeRequest(kind, i))
						if err != nil {
							return fmt.Errorf("GenerateManifest (%s app %d): %w", kind.name, i, err)
						}
						if len(resp.Manifests) != 2 {
							return fmt.Errorf("GenerateManifest (%s app %d): %d manifests, want a Deployment and a Service", kind.name, i, len(resp.Manifests))
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

func largeRequest(kind largeKind, i int) *apiclient.ManifestRequest {
	src := &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(largeRepoName), TargetRevision: "main",
		Path: fmt.Sprintf("apps/app-%d", i)}
	switch kind.source {
	case "kro":
		src.Plugin = &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{
			{Name: "rgd-paths", String_: ptr(kind.rgdPaths)},
		}}
	case "floor":
		src = floorSource(src)
	case "directory":
		src.Path = fmt.Sprintf("plain/app-%d", i)
	}
	req := manifestRequest(src)
	req.AppName = largeAppName(i)
	req.AnnotationManifestGeneratePaths = kind.generatePaths
	return req
}

// seedLargeRepo creates largeRepoName (examples/gitops, 100 instances under apps/ with a copy
// of the RGD in apps/rgds/, their rendered objects under plain/, the filler under docs/), gives
// the floor plugin the rendered objects, and starts the second repo-server.
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
	if err := large.CopyTree(filepath.Join(examplesDir, "rgds"), "apps/rgds"); err != nil {
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
		resp, err := client.GenerateManifest(ctx, largeRequest(largeKind{name: "seed", source: "kro", rgdPaths: "rgds"}, i))
		if err != nil {
			return fmt.Errorf("GenerateManifest for large-repository app %d: %w", i, err)
		}
		if err := writeFloorOutput(largeAppName(i), resp.Manifests); err != nil {
			return err
		}
		if err := writePlainApp(large, path.Join("plain", fmt.Sprintf("app-%d", i)), resp.Manifests); err != nil {
			return err
		}
	}
	if _, err := large.CommitAndPush(ctx, "bench: the same objects as directory apps"); err != nil {
		return err
	}
	largePathsAddr, err = st.StartRepoServer(ctx, st.ArgoCDV2(), "generate-paths", "ARGOCD_REPO_SERVER_PLUGIN_USE_MANIFEST_GENERATE_PATHS=true")
	return err
}
