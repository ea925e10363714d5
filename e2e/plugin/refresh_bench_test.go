package plugin_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v2/reposerver/apiclient"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/e2e/stack"
)

// refreshApps is the size of the ApplicationSet the refresh benchmark emulates.
const refreshApps = 100

var refreshOnce sync.Once

// BenchmarkRefresh100Apps emulates an ApplicationSet of 100 kro applications sharing one RGD,
// refreshed together after a commit that changes the RGD: every iteration commits a new RGD
// revision, then asks argocd-repo-server for all 100 applications' manifests at once (manifest
// cache off). "directory" does the same for 100 directory apps holding the very same objects,
// in a repository of their own (plainRepoName) that gets a new commit before each iteration
// too: Argo CD streams a plugin app's whole repository to the sidecar on every call, so plain
// copies sharing the kro repository would bill the plugin for files no kro user has.
// It reports the wall time of one refresh and the peak RSS (VmHWM) of argocd-cmp-server and of
// the render server, the processes of the sidecar container that outlive a call. "floor" asks
// a plugin that does no work (floorPluginName) for the same 100 applications of the same
// repository: the least any plugin can cost. "hydrated" refreshes the same 100 kro applications
// as Argo CD's Source Hydrator leaves them: directory apps of the hydrated branch
// (hydratedBranch, one manifest.yaml each, pushed by argocd-commit-server of the v3 line), which
// gets a new commit before each iteration.
func BenchmarkRefresh100Apps(b *testing.B) {
	ctx := context.Background()
	client := repoServer(b, st.ArgoCDV2())
	seedHydrated(ctx, b)
	revision := 0
	for _, kind := range []string{"plugin", "directory", "floor", "hydrated"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				revision++
				if err := commitRevision(ctx, kind, revision); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				g, gctx := errgroup.WithContext(ctx)
				for i := range refreshApps {
					g.Go(func() error {
						req := manifestRequest(refreshSource(kind, i))
						req.AppName = refreshAppName(i)
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
			// VmHWM is a peak since process start: measured right after the kind's run.
			switch kind {
			case "plugin":
				b.ReportMetric(float64(peakRSS(b, "argocd-cmp-server", false))/(1<<20), "cmp-server-MiB")
				b.ReportMetric(float64(peakRSS(b, "cmp-sidecar-renderer", false))/(1<<20), "render-server-MiB")
			case "floor":
				b.ReportMetric(float64(peakRSS(b, "argocd-cmp-server", true))/(1<<20), "cmp-server-MiB")
			}
		})
	}
}

// refreshAppName is the name of the refresh benchmark's application i.
func refreshAppName(i int) string { return fmt.Sprintf("refresh-%d", i) }

// plainRepoName holds the refresh benchmark's directory apps.
const plainRepoName = "gitops-plain"

// plain is the harness's clone of plainRepoName (under gitMu).
var plain *stack.Checkout

func refreshSource(kind string, i int) *v1alpha1.ApplicationSource {
	switch kind {
	case "plugin":
		return &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), TargetRevision: "main",
			Path: fmt.Sprintf("refresh/apps/app-%d", i), Plugin: examplePlugin()}
	case "floor":
		return floorSource(refreshSource("plugin", i))
	case "hydrated":
		return &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), TargetRevision: hydratedBranch,
			Path: fmt.Sprintf("apps/app-%d", i)}
	}
	return &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(plainRepoName), TargetRevision: "main",
		Path: fmt.Sprintf("apps/app-%d", i)}
}

// seedRefreshApps commits 100 instances of the example WebApp (each its own name and tag),
// renders each once through the plugin and commits the objects as the matching directory app
// in plainRepoName.
func seedRefreshApps(ctx context.Context, client apiclient.RepoServerServiceClient) error {
	gitMu.Lock()
	defer gitMu.Unlock()
	if err := st.Git.CreateRepo(ctx, plainRepoName); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(st.Dir, "checkout-")
	if err != nil {
		return err
	}
	if plain, err = st.Git.Clone(ctx, plainRepoName, filepath.Join(dir, plainRepoName)); err != nil {
		return err
	}
	inst, err := os.ReadFile(filepath.Join(examplesDir, "develop", "frontend", "instance.yaml"))
	if err != nil {
		return err
	}
	for i := range refreshApps {
		body := strings.Replace(strings.Replace(string(inst), "name: frontend", fmt.Sprintf("name: app-%d", i), 1), `"1.2.1"`, fmt.Sprintf(`"1.2.%d"`, i), 1)
		if err := checkout.WriteFile(path.Join("refresh", "apps", fmt.Sprintf("app-%d", i), "instance.yaml"), []byte(body)); err != nil {
			return err
		}
	}
	if _, err := checkout.CommitAndPush(ctx, "bench: 100 kro applications"); err != nil {
		return err
	}
	if err := startFloorPlugin(ctx); err != nil {
		return err
	}
	for i := range refreshApps {
		resp, err := client.GenerateManifest(ctx, manifestRequest(refreshSource("plugin", i)))
		if err != nil {
			return fmt.Errorf("GenerateManifest for plugin app %d: %w", i, err)
		}
		if err := writeFloorOutput(refreshAppName(i), resp.Manifests); err != nil {
			return err
		}
		if err := writePlainApp(plain, path.Join("apps", fmt.Sprintf("app-%d", i)), resp.Manifests); err != nil {
			return err
		}
	}
	_, err = plain.CommitAndPush(ctx, "bench: the same objects as directory apps")
	return err
}

// commitRevision gives the repository of kind's apps a new revision, so repo-server fetches
// it. For the plugin it changes the RGD as a platform team's commit would (an annotation, so
// the rendered objects stay the same): the render server has never compiled the new
// revision (the floor plugin's apps live in the same repository and get the same commit). For
// directory apps it changes a file outside the apps.
func commitRevision(ctx context.Context, kind string, revision int) error {
	if kind == "hydrated" {
		return commitHydratedRevision(ctx, revision)
	}
	gitMu.Lock()
	defer gitMu.Unlock()
	if kind == "directory" {
		if err := plain.WriteFile("REVISION", []byte(strconv.Itoa(revision)+"\n")); err != nil {
			return err
		}
		_, err := plain.CommitAndPush(ctx, fmt.Sprintf("bench: revision %d", revision))
		return err
	}
	const rgd = "rgds/webapp.yaml"
	data, err := checkout.ReadFile(rgd)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "  annotations: {bench-revision:") {
			continue
		}
		out.WriteString(line + "\n")
		if line == "metadata:" {
			out.WriteString("  annotations: {bench-revision: \"" + strconv.Itoa(revision) + "\"}\n")
		}
	}
	if err := checkout.WriteFile(rgd, out.Bytes()); err != nil {
		return err
	}
	_, err = checkout.CommitAndPush(ctx, fmt.Sprintf("bench: RGD revision %d", revision))
	return err
}

// peakRSS is the largest VmHWM of this machine's processes started as name (argv[0]) that
// belong to this stack (their environment names its folder) and to the floor plugin or not, in
// bytes.
func peakRSS(b *testing.B, name string, floor bool) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var peak int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if err != nil || filepath.Base(string(argv0)) != name { // argv[0]: Argo CD's are symlinks
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte(st.Dir)) || bytes.Contains(env, []byte(floorEnv+"=")) != floor {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb*1024 > peak {
					peak = kb * 1024
				}
			}
		}
	}
	return peak
}

// writePlainApp writes manifests (JSON, as GenerateManifest answers) into dir of c as
// YAML files 00.yaml, 01.yaml, …: the directory app serving the same objects.
func writePlainApp(c *stack.Checkout, dir string, manifests []string) error {
	for j, m := range manifests {
		y, err := yaml.JSONToYAML([]byte(m))
		if err != nil {
			return err
		}
		if err := c.WriteFile(path.Join(dir, fmt.Sprintf("%02d.yaml", j)), y); err != nil {
			return err
		}
	}
	return nil
}
