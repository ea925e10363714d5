package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Pinned versions of the components the stack builds. The wrapper modules under e2e/tools (and
// e2e/go.mod for Argo CD) pin the same versions; these strings name the cache folders and set
// the version the binaries report.
const (
	EtcdVersion       = "v3.6.16"
	KubernetesVersion = "v1.34.4"
	KwokVersion       = "v0.7.0"
	ArgoCDVersion     = "v2.14.21"
	// ArgoCDV3Version is the second Argo CD line the plugin is proven on, with the Source
	// Hydrator (Beta since v3.5, drySource.plugin since v3.3). v3.6.2 and not v3.5.x: v3.3.x to
	// v3.5.8 require github.com/argoproj/argo-cd/gitops-engine at a pseudo-version the module
	// proxy refuses (403) and replace it with the in-tree ./gitops-engine, which is not in the
	// module zip; v3.6.2 requires github.com/argoproj/argo-cd/gitops-engine/v3 v3.6.2, which the
	// proxy serves (the same code as its in-tree replace, so the wrapper drops that line).
	ArgoCDV3Version = "v3.6.2"
	// RegistryVersion is the CNCF distribution registry (Debian's docker-registry is v2.8).
	RegistryVersion = "v3.1.2"
	// RolloutsVersion is Argo Rollouts, whose analysis controller runs the AnalysisRuns of
	// kropipe.io/verify-analysis (v1.8.5: built against Kubernetes v0.29 libraries).
	RolloutsVersion = "v1.8.5"
	// GiteaVersion is the forge the pull-request tests open, merge and close PRs on. Built only
	// when a test starts Gitea (StartGitea, WithGitea), not by every stack.
	GiteaVersion = "v1.27.3"
)

// Binaries are the paths of everything the stack runs.
type Binaries struct {
	Etcd, KubeAPIServer, KubeControllerManager, KubeScheduler, Kwok string
	// ArgoCD is the multi-call argocd binary; ArgoCDDir also holds symlinks named
	// argocd-repo-server, argocd-cmp-server, ... so each component runs under its own name.
	ArgoCD, ArgoCDDir string
	// ArgoCDV3 and ArgoCDV3Dir are the same for Argo CD v3.
	ArgoCDV3, ArgoCDV3Dir string
	// Registry is the CNCF distribution registry (`registry serve <config>`).
	Registry string
	// RolloutsAnalysis is Argo Rollouts' analysis controller alone (e2e/tools/rollouts).
	RolloutsAnalysis string
	// CmpSidecar and Promoter are built fresh from the repository on every run: they are the
	// code under test. CmpSidecarRenderer (the warm render server cmp-sidecar generate starts)
	// is built next to CmpSidecar, where generate looks for it first, as in the sidecar image.
	CmpSidecar, CmpSidecarRenderer, Promoter string
	// BuildTimes says how long each component took to build in this run (zero when it came
	// from the cache).
	BuildTimes map[string]time.Duration
}

type component struct {
	name    string // cache folder prefix and report key
	version string
	modDir  string            // relative to the e2e module
	pkgs    map[string]string // output binary name -> package
	ldflags string
	// links are names the binary is also linked as in its folder (multi-call binaries).
	links []string
	// module and assets: folders of that module's source copied into the component's folder
	// before its binary is built, for a binary that reads files at run time (Gitea built
	// without bindata reads its templates and options from disk).
	module string
	assets []string
}

func components() []component {
	kubeLD := strings.Join([]string{
		"-s -w",
		"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=34",
		"-X k8s.io/component-base/version.gitTreeState=clean",
		"-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + KubernetesVersion,
	}, " ")
	return []component{
		{name: "etcd", version: EtcdVersion, modDir: "tools/etcd", pkgs: map[string]string{"etcd": "."}, ldflags: "-s -w"},
		{name: "kubernetes", version: KubernetesVersion, modDir: "tools/kube", pkgs: map[string]string{
			"kube-apiserver":          "k8s.io/kubernetes/cmd/kube-apiserver",
			"kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
			"kube-scheduler":          "k8s.io/kubernetes/cmd/kube-scheduler",
		}, ldflags: kubeLD},
		{name: "kwok", version: KwokVersion, modDir: "tools/kwok", pkgs: map[string]string{"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
			ldflags: "-s -w"},
		{name: "argocd", version: ArgoCDVersion, modDir: "tools/argocd", pkgs: map[string]string{"argocd": "github.com/argoproj/argo-cd/v2/cmd"},
			ldflags: "-s -w -X github.com/argoproj/argo-cd/v2/common.version=" + strings.TrimPrefix(ArgoCDVersion, "v"), links: argoCDNames},
		{name: "argocd3", version: ArgoCDV3Version, modDir: "tools/argocd3", pkgs: map[string]string{"argocd": "github.com/argoproj/argo-cd/v3/cmd"},
			ldflags: "-s -w -X github.com/argoproj/argo-cd/v3/common.version=" + strings.TrimPrefix(ArgoCDV3Version, "v"), links: argoCDNames},
		{name: "registry", version: RegistryVersion, modDir: "tools/registry", pkgs: map[string]string{"registry": "."},
			ldflags: "-s -w -X github.com/distribution/distribution/v3/version.version=" + RegistryVersion},
		{name: "rollouts", version: RolloutsVersion, modDir: "tools/rollouts", pkgs: map[string]string{"rollouts-analysis": "."},
			ldflags: "-s -w"},
	}
}

// giteaComponent is Gitea built without the bindata tag: no npm, no web assets, which an API
// and Git-over-HTTP forge does not need. It then reads options/ (locales, labels, licences) and
// templates/ from its static root, copied here from the module. Pure Go: Gitea v1.27's default
// SQLite driver is modernc.org/sqlite (mattn's cgo driver needs the sqlite_mattn tag), so the
// stack's CGO_ENABLED=0 builds it and no C compiler is needed.
func giteaComponent() component {
	return component{name: "gitea", version: GiteaVersion, modDir: "tools/gitea", pkgs: map[string]string{"gitea": "gitea.dev"},
		ldflags: "-s -w -X main.Version=" + strings.TrimPrefix(GiteaVersion, "v"),
		module:  "gitea.dev", assets: []string{"options", "templates"}}
}

// argoCDNames are the names the argocd binary dispatches on.
var argoCDNames = []string{
	"argocd-application-controller", "argocd-repo-server", "argocd-cmp-server",
	"argocd-applicationset-controller", "argocd-git-ask-pass", "argocd-commit-server",
}

// Build makes sure every stack binary exists in cacheDir, building the missing ones, and builds
// cmp-sidecar and promoter from repoRoot into binDir. Concurrent callers (several e2e packages) serialise on
// a lock file in cacheDir, so a cold cache is built once.
func Build(ctx context.Context, e2eDir, repoRoot, cacheDir, binDir string, log io.Writer) (*Binaries, error) {
	unlock, err := lockCache(cacheDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	b := &Binaries{BuildTimes: map[string]time.Duration{}}
	// paths is keyed by component and binary name: both Argo CD lines build a binary "argocd".
	paths := map[string]string{}
	for _, c := range components() {
		if err := c.ensure(ctx, e2eDir, cacheDir, log, paths, b.BuildTimes); err != nil {
			return nil, err
		}
	}
	b.Etcd = paths["etcd/etcd"]
	b.KubeAPIServer = paths["kubernetes/kube-apiserver"]
	b.KubeControllerManager = paths["kubernetes/kube-controller-manager"]
	b.KubeScheduler = paths["kubernetes/kube-scheduler"]
	b.Kwok = paths["kwok/kwok"]
	b.ArgoCD = paths["argocd/argocd"]
	b.ArgoCDDir = filepath.Dir(b.ArgoCD)
	b.ArgoCDV3 = paths["argocd3/argocd"]
	b.ArgoCDV3Dir = filepath.Dir(b.ArgoCDV3)
	b.Registry = paths["registry/registry"]
	b.RolloutsAnalysis = paths["rollouts/rollouts-analysis"]

	start := time.Now()
	b.CmpSidecar = filepath.Join(binDir, "cmp-sidecar")
	if err := goBuild(ctx, repoRoot, "./cmd/cmp-sidecar", b.CmpSidecar, ""); err != nil {
		return nil, fmt.Errorf("build cmp-sidecar from %s: %w", repoRoot, err)
	}
	b.BuildTimes["cmp-sidecar"] = time.Since(start)

	start = time.Now()
	b.CmpSidecarRenderer = filepath.Join(binDir, "cmp-sidecar-renderer")
	if err := goBuild(ctx, repoRoot, "./cmd/cmp-sidecar-renderer", b.CmpSidecarRenderer, ""); err != nil {
		return nil, fmt.Errorf("build cmp-sidecar-renderer from %s: %w", repoRoot, err)
	}
	b.BuildTimes["cmp-sidecar-renderer"] = time.Since(start)

	start = time.Now()
	b.Promoter = filepath.Join(binDir, "promoter")
	if err := goBuild(ctx, repoRoot, "./cmd/promoter", b.Promoter, ""); err != nil {
		return nil, fmt.Errorf("build promoter from %s: %w", repoRoot, err)
	}
	b.BuildTimes["promoter"] = time.Since(start)
	return b, nil
}

// ensure builds c's binaries into its cache folder unless they are there, recording each
// binary's path in paths (key <component>/<binary>) and the time a build took in times. The
// caller holds the cache lock.
func (c component) ensure(ctx context.Context, e2eDir, cacheDir string, log io.Writer, paths map[string]string, times map[string]time.Duration) error {
	dir, err := c.cacheDir(e2eDir, cacheDir)
	if err != nil {
		return err
	}
	for out, pkg := range c.pkgs {
		dst := filepath.Join(dir, out)
		paths[c.name+"/"+out] = dst
		if _, err := os.Stat(dst); err != nil {
			start := time.Now()
			fmt.Fprintf(log, "e2e: building %s %s (%s) into %s\n", out, c.version, pkg, dir)
			// Assets first: the binary, renamed into place last, is what marks the folder complete.
			if err := c.copyAssets(ctx, e2eDir, dir); err != nil {
				return fmt.Errorf("build %s %s: %w", out, c.version, err)
			}
			if err := goBuild(ctx, filepath.Join(e2eDir, c.modDir), pkg, dst, c.ldflags); err != nil {
				return fmt.Errorf("build %s %s: %w", out, c.version, err)
			}
			key := c.name + "/" + out
			times[key] = time.Since(start)
			fmt.Fprintf(log, "e2e: built %s in %s\n", key, times[key].Round(time.Second))
		}
		for _, n := range c.links {
			link := filepath.Join(dir, n)
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(out, link); err != nil {
				return fmt.Errorf("link %s: %w", link, err)
			}
		}
	}
	return nil
}

// copyAssets copies c.assets from c.module's source (in the module cache, downloaded by the
// wrapper module) into dir, replacing what an interrupted copy left.
func (c component) copyAssets(ctx context.Context, e2eDir, dir string) error {
	if len(c.assets) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", c.module)
	cmd.Dir = filepath.Join(e2eDir, c.modDir)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("locate module %s (go mod download in %s): %w", c.module, cmd.Dir, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return fmt.Errorf("locate module %s: unexpected `go mod download -json` output: %s", c.module, out)
	}
	for _, a := range c.assets {
		dst := filepath.Join(dir, a)
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := os.CopyFS(dst, os.DirFS(filepath.Join(m.Dir, a))); err != nil {
			return fmt.Errorf("copy %s of module %s: %w", a, c.module, err)
		}
	}
	return nil
}

// BuildGitea makes sure the Gitea binary (GiteaVersion, e2e/tools/gitea) is in cacheDir and
// returns its path; Gitea's static root (its options/ and templates/) is the binary's folder.
// It takes the cache lock as Build does.
func BuildGitea(ctx context.Context, e2eDir, cacheDir string, log io.Writer) (bin string, buildTime time.Duration, err error) {
	unlock, err := lockCache(cacheDir)
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	paths, times := map[string]string{}, map[string]time.Duration{}
	if err := giteaComponent().ensure(ctx, e2eDir, cacheDir, log, paths, times); err != nil {
		return "", 0, err
	}
	return paths["gitea/gitea"], times["gitea/gitea"], nil
}

// lockCache takes the cache folder's lock file, so concurrent test processes build each
// component once; the returned function releases it.
func lockCache(cacheDir string) (unlock func(), err error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("e2e cache %s: %w", cacheDir, err)
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("e2e cache lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("e2e cache lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		lock.Close()
	}, nil
}

// cacheDir names a component's folder by version and by a hash of what decides its bytes: the
// wrapper module's go.mod/go.sum, the Go version and the link flags. Changing any of them builds
// into a new folder instead of reusing a stale binary.
func (c component) cacheDir(e2eDir, cacheDir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(e2eDir, c.modDir, f))
		if err != nil {
			return "", fmt.Errorf("wrapper module for %s: %w", c.name, err)
		}
		h.Write(b)
	}
	fmt.Fprintf(h, "%s\n%s\n%s/%s\n", runtime.Version(), c.ldflags, runtime.GOOS, runtime.GOARCH)
	return filepath.Join(cacheDir, c.name+"-"+c.version+"-"+hex.EncodeToString(h.Sum(nil))[:12]), nil
}

func goBuild(ctx context.Context, dir, pkg, dst, ldflags string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	args := []string{"build", "-trimpath", "-o", tmp}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = dir
	// Static binaries: no C toolchain needed, and they survive a libc change on the machine.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, lastLines(out.String(), 30))
	}
	// Rename last, so an interrupted build never leaves a binary the cache would trust.
	return os.Rename(tmp, dst)
}

// GoTool is the go command that runs the tests, for a test that runs go itself.
func GoTool() string { return goTool() }

// goTool is the go command that runs the tests, so builds use the same toolchain.
func goTool() string {
	// The test binary is built and run on this machine, so the GOROOT it was built with is
	// here; the check below falls back to PATH when it is not.
	//lint:ignore SA1019 the deprecation is about binaries copied to another machine
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileOK(p) {
		return p
	}
	return "go"
}

func fileOK(p string) bool { _, err := os.Stat(p); return err == nil }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FindE2EDir walks up from the working directory to the e2e module (the folder whose go.mod
// declares github.com/kropipe/kropipe/e2e) and returns it with the repository root above it.
func FindE2EDir() (e2eDir, repoRoot string, err error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/kropipe/kropipe/e2e\n")) {
			return dir, filepath.Dir(dir), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", errors.New("e2e module not found above the working directory: run the tests from inside e2e/")
		}
		dir = parent
	}
}
