// Command scale is the promoter's scale harness (issue 16): it generates N stages on a real
// OCI registry (the CNCF distribution registry from the e2e cache, else go-containerregistry's)
// and a real Git server (git http-backend), then measures, in local mode (`promoter run` on a
// generated promoter.yaml, as a child process) or through the controller's engine (stages
// derived from fake Argo CD Applications, in this process):
//
//   - a pass with a new tag for every stage: wall time, peak RSS, registry requests, commits;
//   - an idle pass: wall time and registry requests;
//   - a registry notification to the pushed commit: p50 and p99 (local mode).
//
// Every registry request goes through a counting proxy, so the counts are the promoter's own.
// bench/scale.sh runs it; bench/README.md keeps the last figures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

type flags struct {
	stages, perTeam, notifications, pushers int
	mode, promoter, registryBin, rate       string
	layout                                  string
	cpuProfile, memProfile                  string
	keep                                    bool
	notifyGap                               time.Duration
}

func main() {
	var f flags
	flag.IntVar(&f.stages, "stages", 1000, "stages to generate, each reading its own image repository")
	flag.IntVar(&f.perTeam, "per-folder", 100, "nested layout: stage folders per team folder in the GitOps repository")
	flag.StringVar(&f.layout, "layout", "nested", "nested (teamNNN/svcNNNNN/, -per-folder stages a folder) or flat (develop/svcNNNNN/, every stage side by side)")
	flag.IntVar(&f.notifications, "notifications", 100, "registry notifications to time (local mode; 0: none)")
	flag.IntVar(&f.pushers, "pushers", 8, "parallel image pushes while setting up")
	flag.StringVar(&f.mode, "mode", "local", "local (promoter run as a child process) or controller (the engine on stages from fake Applications)")
	flag.StringVar(&f.promoter, "promoter", "", "promoter binary for local mode (default: go build ./cmd/promoter)")
	flag.StringVar(&f.registryBin, "registry", "auto", "distribution registry binary; auto: the e2e cache's, else go-containerregistry's in this process")
	flag.StringVar(&f.rate, "rate-limit", "", "registries[].rateLimit in promoter.yaml (default: none, the promoter's default)")
	flag.BoolVar(&f.keep, "keep", false, "keep the work directory")
	flag.DurationVar(&f.notifyGap, "notify-gap", 0, "pause between timed notifications (the promoter housekeeps after 1s idle)")
	flag.StringVar(&f.cpuProfile, "cpuprofile", "", "controller mode: CPU profile of the pass with new tags")
	flag.StringVar(&f.memProfile, "memprofile", "", "controller mode: allocation profile after the pass with new tags")
	flag.Parse()
	if err := run(f); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// bench is one harness run's servers and files.
type bench struct {
	f       flags
	dir     string
	regHost string // the registry itself, for setting up
	host    string // the counting proxy the promoter talks to
	count   *counter
	git     *gitserver.Server
	gitURL  string
	bareDir string
	pushed  atomic.Int64 // bytes of receive-pack request bodies: the packs on the wire
	stop    []func()
}

func run(f flags) error {
	// Interrupted, it still stops its servers and removes its files.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	dir, err := os.MkdirTemp("", "kropipe-scale-")
	if err != nil {
		return err
	}
	if !f.keep {
		defer os.RemoveAll(dir)
	}
	b := &bench{f: f, dir: dir, count: &counter{}}
	defer func() {
		for _, s := range slices.Backward(b.stop) {
			s()
		}
	}()
	if f.layout != "nested" && f.layout != "flat" {
		return fmt.Errorf("-layout %q: want nested or flat", f.layout)
	}
	fmt.Printf("# scale harness: %d stages, layout %s, mode %s, %d CPUs, %s\n", f.stages, f.layout, f.mode, runtime.NumCPU(), loadavg())
	start := time.Now()
	if err := b.startRegistry(ctx); err != nil {
		return err
	}
	if err := b.pushAll(ctx, "1.0.0"); err != nil {
		return err
	}
	if err := b.startGit(ctx); err != nil {
		return err
	}
	fmt.Printf("setup: %d images pushed, repository seeded in %s\n", f.stages, time.Since(start).Round(time.Millisecond))
	switch f.mode {
	case "local":
		return b.local(ctx)
	case "controller":
		return b.controller(ctx)
	}
	return fmt.Errorf("-mode %q: want local or controller", f.mode)
}

func (b *bench) image(i int) string { return fmt.Sprintf("team%03d/svc%05d", i/b.f.perTeam, i) }

// folder is stage i's folder in the GitOps repository: nested in team folders, or side by
// side in one folder (the apps/<name>/ layout most GitOps repositories have), where every
// commit rewrites that folder's N-entry tree.
func (b *bench) folder(i int) string {
	if b.f.layout == "flat" {
		return fmt.Sprintf("develop/svc%05d", i)
	}
	return b.image(i)
}
func (b *bench) file(i int) string    { return b.folder(i) + "/instance.yaml" }
func (b *bench) stage(i int) string   { return fmt.Sprintf("s%05d", i) }
func (b *bench) pullRef(i int) string { return b.host + "/" + b.image(i) }

// startRegistry runs the registry and the counting proxy in front of it.
func (b *bench) startRegistry(ctx context.Context) error {
	bin := b.f.registryBin
	if bin == "auto" {
		m, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache/kropipe-e2e/registry-*/registry"))
		bin = ""
		if len(m) > 0 {
			bin = m[len(m)-1]
		}
	}
	if bin == "" {
		srv := httptest.NewServer(registry.New(registry.Logger(nil)))
		b.stop = append(b.stop, srv.Close)
		b.regHost = strings.TrimPrefix(srv.URL, "http://")
		fmt.Println("registry: go-containerregistry's, in this process")
	} else {
		port, err := freePort()
		if err != nil {
			return err
		}
		b.regHost = "127.0.0.1:" + strconv.Itoa(port)
		cfg := filepath.Join(b.dir, "registry.yml")
		conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(b.dir, "registry"), b.regHost)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, bin, "serve", cfg)
		cmd.SysProcAttr = dieWithUs
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
		// It logs every 404 (the pushes' existence checks) as an error: keep that out of the figures.
		logf, err := os.Create(filepath.Join(b.dir, "registry.log"))
		if err != nil {
			return err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", bin, err)
		}
		b.stop = append(b.stop, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if err := waitHTTP(ctx, "http://"+b.regHost+"/v2/"); err != nil {
			return err
		}
		fmt.Println("registry:", bin)
	}
	target, _ := url.Parse("http://" + b.regHost)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.count.add(r)
		proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.stop = append(b.stop, func() { _ = srv.Close() })
	b.host = ln.Addr().String()
	return nil
}

// pushAll pushes tag to every stage's repository, each tag its own manifest (so its own digest).
func (b *bench) pushAll(ctx context.Context, tag string) error {
	work := make(chan int)
	errs := make(chan error, b.f.pushers)
	var wg sync.WaitGroup
	for range b.f.pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := b.push(ctx, i, tag); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range b.f.stages {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func (b *bench) push(ctx context.Context, i int, tag string) error {
	ref, err := name.NewTag(b.regHost+"/"+b.image(i)+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	img, ok := mutate.Annotations(empty.Image, map[string]string{"kropipe.bench/tag": tag}).(v1.Image)
	if !ok {
		return errors.New("annotating an image gave no image")
	}
	return remote.Write(ref, img, remote.WithContext(ctx))
}

// startGit seeds the GitOps repository, a file per stage, and serves it.
func (b *bench) startGit(ctx context.Context) error {
	seed := filepath.Join(b.dir, "seed")
	for i := range b.f.stages {
		p := filepath.Join(seed, filepath.FromSlash(b.file(i)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		doc := fmt.Sprintf("apiVersion: kro.run/v1alpha1\nkind: WebService\nmetadata:\n  name: svc%05d\nspec:\n  values:\n    deployment:\n      image: %s\n      tag: 1.0.0\n      replicas: 2\n", i, b.pullRef(i))
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			return err
		}
	}
	s, err := gitserver.Start(ctx, filepath.Join(b.dir, "git"))
	if err != nil {
		return err
	}
	b.stop = append(b.stop, func() { _ = s.Close() })
	b.git = s
	if b.bareDir, err = s.NewBareRepo(ctx, "gitops.git", seed); err != nil {
		return err
	}
	// The promoter talks to the Git server through a proxy that counts the bytes it pushes.
	target, err := url.Parse(s.URL("gitops.git"))
	if err != nil {
		return err
	}
	repoPath := target.Path
	target.Path = ""
	proxy := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			r.Body = &countingBody{ReadCloser: r.Body, n: &b.pushed}
		}
		proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.stop = append(b.stop, func() { _ = srv.Close() })
	b.gitURL = "http://" + ln.Addr().String() + repoPath
	return os.RemoveAll(seed)
}

// commits is how many commits the repository's main branch has.
func (b *bench) commits(ctx context.Context) int {
	out, err := gitserver.GitOutput(ctx, b.bareDir, "rev-list", "--count", "main")
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

// local runs `promoter run --once` for the full and the idle pass, then `promoter run` with
// notifications for the notification → commit latency.
func (b *bench) local(ctx context.Context) error {
	bin := b.f.promoter
	if bin == "" {
		bin = filepath.Join(b.dir, "promoter")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/promoter")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the promoter: %w", err)
		}
	}
	cfg := filepath.Join(b.dir, "promoter.yaml")
	var y strings.Builder
	fmt.Fprintf(&y, "git:\n  url: %s\n  branch: main\nregistries:\n  - host: %s\n    insecure: true\n", b.gitURL, b.host)
	if b.f.rate != "" {
		fmt.Fprintf(&y, "    rateLimit: %s\n", b.f.rate)
	}
	y.WriteString("stages:\n")
	for i := range b.f.stages {
		fmt.Fprintf(&y, "  - {name: %s, image: %s, file: %s}\n", b.stage(i), b.pullRef(i), b.file(i))
	}
	if err := os.WriteFile(cfg, []byte(y.String()), 0o644); err != nil {
		return err
	}
	data := filepath.Join(b.dir, "data")
	once := func(what string) error {
		before := b.commits(ctx)
		b.count.reset()
		b.pushed.Store(0)
		start := time.Now()
		cmd := exec.CommandContext(ctx, bin, "run", "--once", "--config", cfg, "--data-dir", data, "--log-level", "warn")
		cmd.SysProcAttr = dieWithUs
		cmd.Env = append(os.Environ(), "KROPIPE_BENCH=1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		wall := time.Since(start)
		if err != nil {
			tail := out.String()
			if len(tail) > 2000 {
				tail = tail[len(tail)-2000:]
			}
			return fmt.Errorf("%s: promoter run --once: %w\n%s", what, err, tail)
		}
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
		fmt.Printf("%-28s wall %8s  peak RSS %6.1f MiB  registry %s  commits %d  pushed %s  (%s)\n", what, wall.Round(time.Millisecond), float64(rss)/1024, b.count, b.commits(ctx)-before, b.pushedMB(), loadavg())
		return nil
	}
	if err := once("local first pass (clone)"); err != nil {
		return err
	}
	if err := b.pushAll(ctx, "1.0.1"); err != nil {
		return err
	}
	if err := once("local all new tags"); err != nil {
		return err
	}
	if err := once("local idle pass"); err != nil {
		return err
	}
	if b.f.notifications > 0 {
		return b.notifications(ctx, bin, cfg, data)
	}
	return nil
}

// notifications runs `promoter run` receiving notifications (and no polling) and times each
// notification until the branch moved on the Git server.
func (b *bench) notifications(ctx context.Context, bin, cfg, data string) error {
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	hookPort, err := freePort()
	if err != nil {
		return err
	}
	secret := "bench-secret"
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--data-dir", data, "--log-level", "warn",
		"--addr", "127.0.0.1:"+strconv.Itoa(apiPort), "--webhook-addr", "127.0.0.1:"+strconv.Itoa(hookPort), "--interval", "0")
	cmd.Env = append(os.Environ(), "KROPIPE_WEBHOOK_SECRET="+secret)
	cmd.SysProcAttr = dieWithUs
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	// Ready once the first pass finished.
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", apiPort)); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	b.count.reset()
	b.pushed.Store(0)
	hook := fmt.Sprintf("http://127.0.0.1:%d/webhook/registry", hookPort)
	took := make([]time.Duration, 0, b.f.notifications)
	for n := range b.f.notifications {
		if n > 0 {
			time.Sleep(b.f.notifyGap)
		}
		i := n % b.f.stages
		tag := fmt.Sprintf("1.1.%d", n)
		if err := b.push(ctx, i, tag); err != nil {
			return err
		}
		before := b.head()
		start := time.Now()
		body := fmt.Sprintf(`{"image":%q}`, b.pullRef(i)+":"+tag)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hook, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("notification answered %s", resp.Status)
		}
		deadline := time.Now().Add(30 * time.Second)
		for b.head() == before {
			if time.Now().After(deadline) {
				return fmt.Errorf("notification %d (%s): no commit within 30s\n%s", n, tag, out.String())
			}
			time.Sleep(200 * time.Microsecond)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	rss := vmHWM(cmd.Process.Pid)
	fmt.Printf("%-28s p50 %s  p90 %s  p99 %s  max %s  (%d notifications, %d other stages; registry %s; pushed %s; peak RSS %.1f MiB; %s)\n",
		"local notification→commit", ms(took[len(took)/2]), ms(took[len(took)*9/10]), ms(took[len(took)*99/100]), ms(took[len(took)-1]), len(took), b.f.stages-1, b.count, b.pushedMB(), float64(rss)/1024, loadavg())
	return nil
}

// head is the Git server's main branch, read from the bare repository's files (git
// http-backend's receive-pack writes the loose ref).
func (b *bench) head() string {
	if ref, err := os.ReadFile(filepath.Join(b.bareDir, "refs", "heads", "main")); err == nil {
		return string(ref)
	}
	packed, _ := os.ReadFile(filepath.Join(b.bareDir, "packed-refs"))
	return string(packed)
}

// controller derives the stages from fake Argo CD Applications (client-go's dynamic fake,
// listed as the watcher lists them) and runs the controller's engine on them in this process.
func (b *bench) controller(ctx context.Context) error {
	gvr := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	var objs []*unstructured.Unstructured
	for i := range b.f.stages {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
			"metadata": map[string]any{"name": b.stage(i), "namespace": "argocd"},
			"spec": map[string]any{
				"project":     "default",
				"source":      map[string]any{"repoURL": b.gitURL, "targetRevision": "main", "path": b.folder(i), "plugin": map[string]any{"name": "kro"}},
				"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": b.stage(i)},
			},
		}}
		u.SetAnnotations(map[string]string{argocd.AnnImage: b.pullRef(i)})
		objs = append(objs, u)
	}
	scheme := k8sruntime.NewScheme()
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{gvr: "ApplicationList"})
	for _, o := range objs {
		if _, err := dyn.Resource(gvr).Namespace("argocd").Create(ctx, o, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	objs = nil
	list, err := dyn.Resource(gvr).Namespace("argocd").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	apps := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		apps[i] = &list.Items[i]
	}
	cfg := argocd.Derive(apps, nil)
	if len(cfg.Problems) > 0 {
		return fmt.Errorf("%d problems deriving stages, first: %v", len(cfg.Problems), cfg.Problems[0])
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	regCfg := warehouse.RegistryConfig{Insecure: true}
	if b.f.rate != "" {
		r, err := strconv.ParseFloat(b.f.rate, 64)
		if err != nil {
			return err
		}
		regCfg.RateLimit = r
	}
	wh, err := warehouse.New(warehouse.WithLogger(log), warehouse.WithRegistry(b.host, regCfg))
	if err != nil {
		return err
	}
	e, err := stage.New(nil, stage.WithWarehouse(wh), stage.WithGit(filepath.Join(b.dir, "data"), gitwrite.WithLogger(log)), stage.WithLogger(log))
	if err != nil {
		return err
	}
	if err := e.SetSpecs(cfg.Specs, cfg.Groups...); err != nil {
		return err
	}
	pass := func(what string) error {
		runtime.GC()
		debug.FreeOSMemory()
		resetHWM()
		before := b.commits(ctx)
		b.count.reset()
		b.pushed.Store(0)
		start := time.Now()
		err := e.Reconcile(ctx)
		wall := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Printf("%-28s wall %8s  peak RSS %6.1f MiB  registry %s  commits %d  pushed %s  (%s)\n", what, wall.Round(time.Millisecond), float64(vmHWM(os.Getpid()))/1024, b.count, b.commits(ctx)-before, b.pushedMB(), loadavg())
		return nil
	}
	if err := pass("controller first pass"); err != nil {
		return err
	}
	if err := b.pushAll(ctx, "1.0.1"); err != nil {
		return err
	}
	if b.f.cpuProfile != "" {
		out, err := os.Create(b.f.cpuProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
	}
	runtime.MemProfileRate = 64 << 10
	if err := pass("controller all new tags"); err != nil {
		return err
	}
	pprof.StopCPUProfile()
	if b.f.memProfile != "" {
		out, err := os.Create(b.f.memProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.Lookup("allocs").WriteTo(out, 0); err != nil {
			return err
		}
	}
	return pass("controller idle pass")
}

// countingBody adds the bytes read from a request body to n.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// pushedMB is what the promoter pushed since the last reset, in MB.
func (b *bench) pushedMB() string { return fmt.Sprintf("%.2f MB", float64(b.pushed.Load())/1e6) }

// dieWithUs ends a child process (the registry, the promoter) when the harness ends, however.
var dieWithUs = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

// counter counts the registry requests by kind.
type counter struct {
	ping, list, head, get, other atomic.Int64
}

func (c *counter) add(r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		c.ping.Add(1)
	case strings.HasSuffix(p, "/tags/list"):
		c.list.Add(1)
	case strings.Contains(p, "/manifests/") && r.Method == http.MethodHead:
		c.head.Add(1)
	case strings.Contains(p, "/manifests/") && r.Method == http.MethodGet:
		c.get.Add(1)
	default:
		c.other.Add(1)
	}
}

func (c *counter) reset() {
	for _, v := range []*atomic.Int64{&c.ping, &c.list, &c.head, &c.get, &c.other} {
		v.Store(0)
	}
}

func (c *counter) String() string {
	total := c.ping.Load() + c.list.Load() + c.head.Load() + c.get.Load() + c.other.Load()
	return fmt.Sprintf("%d requests (ping %d, tags/list %d, manifest HEAD %d, GET %d, other %d)", total, c.ping.Load(), c.list.Load(), c.head.Load(), c.get.Load(), c.other.Load())
}

// vmHWM is a process's peak resident set in KiB.
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

// resetHWM starts this process's peak RSS anew (Linux: clear_refs 5).
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load ?"
	}
	f := strings.Fields(string(b))
	return "load " + strings.Join(f[:3], " ")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitHTTP(ctx context.Context, u string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New(u + " did not answer within 10 minutes")
}

// syncBuffer is a bytes.Buffer a child process and this one may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.b.String()
	if len(t) > 4000 {
		t = t[len(t)-4000:]
	}
	return t
}
