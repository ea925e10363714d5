package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	appclient "github.com/argoproj/argo-cd/v2/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// Stack is one running copy of the GitOps stack. Its fields are what tests need to reach it.
type Stack struct {
	// Dir holds every component's data and log (<Dir>/logs/<component>.log).
	Dir string

	APIServerURL string
	Token        string // bearer token of a system:masters user
	Kubeconfig   string // admin kubeconfig file, namespace default
	RestConfig   *rest.Config
	Kube         kubernetes.Interface
	Dynamic      dynamic.Interface
	ArgoCD       appclient.Interface // Argo CD's typed clients (Applications, ApplicationSets)

	// Spoke is the second cluster WithSpokeCluster starts, nil without it.
	Spoke *Spoke

	Git          *GitServer
	RegistryAddr string // host:port of the OCI registry

	// ArgoCDInstalls are the running Argo CD installations: v2.14 first (ArgoCDV2), then v3
	// (ArgoCDV3) when Start was given WithArgoCDV3. Empty WithoutArgoCD.
	ArgoCDInstalls []*ArgoCDInstall

	// PluginConfigDir is the folder every argocd-cmp-server reads plugin.yaml from (the
	// repository root); each puts PluginSocketName in its installation's PluginSockDir.
	PluginConfigDir, PluginSocketName string

	Binaries *Binaries

	// memDir holds the plugin sidecar's scratch space (its TMPDIR and argocd-cmp-server's work
	// folder) on tmpfs when the machine has one, as manifests/cmp-sidecar mounts it (an
	// emptyDir with medium Memory); else it is Dir.
	memDir   string
	e2eDir   string
	cacheDir string
	etcdURL  string
	pki      *pki
	mapper   meta.RESTMapper
	log      io.Writer

	mu    sync.Mutex
	procs []*Process
}

type options struct {
	cacheDir   string
	workDir    string
	log        io.Writer
	pluginName string
	noArgoCD   bool
	argoCDV3   bool
	noRegistry bool
	rollouts   bool
	spoke      bool
	// notify, when set, is where the registry sends its push notifications, with notifyAuth
	// as the Authorization header.
	notify, notifyAuth string
}

// Option changes how Start builds and runs the stack.
type Option func(*options)

// WithCacheDir sets the folder the component binaries are built into and reused from.
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithWorkDir sets the run folder (data and logs); by default a new folder under the temp dir.
func WithWorkDir(dir string) Option { return func(o *options) { o.workDir = dir } }

// WithLog sends build and start progress to w (default os.Stderr).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// WithPluginName sets the ConfigManagementPlugin name whose socket Start waits for (default
// "kro", the name in the repository's plugin.yaml).
func WithPluginName(name string) Option { return func(o *options) { o.pluginName = name } }

// WithoutArgoCD starts only Kubernetes, Git and the registry.
func WithoutArgoCD() Option { return func(o *options) { o.noArgoCD = true } }

// WithArgoCDV3 also starts Argo CD v3 (ArgoCDV3Version) in namespace ArgoCDV3Namespace: its own
// argocd-cmp-server (the same plugin.yaml and cmp-sidecar), argocd-repo-server,
// argocd-application-controller with the Source Hydrator on, argocd-commit-server and
// argocd-applicationset-controller, and installs v3's CRDs.
func WithArgoCDV3() Option { return func(o *options) { o.argoCDV3 = true } }

// WithRegistryNotifications makes the registry send a notification to url for every push and
// pull, carrying authorization as its Authorization header, as a registry configured for
// kropipe's webhook does.
func WithRegistryNotifications(url, authorization string) Option {
	return func(o *options) { o.notify, o.notifyAuth = url, authorization }
}

// WithArgoRollouts installs Argo Rollouts' CRDs (from the pinned module's manifests/crds) and
// runs its analysis controller (RolloutsVersion), which runs AnalysisRuns in every namespace.
func WithArgoRollouts() Option { return func(o *options) { o.rollouts = true } }

// WithoutRegistry skips the OCI registry.
func WithoutRegistry() Option { return func(o *options) { o.noRegistry = true } }

// DefaultCacheDir is $KROPIPE_E2E_CACHE, else ~/.cache/kropipe-e2e.
func DefaultCacheDir() string {
	if d := os.Getenv("KROPIPE_E2E_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "kropipe-e2e")
	}
	return filepath.Join(os.TempDir(), "kropipe-e2e-cache")
}

// Start builds what is missing and starts the whole stack. On error everything it started is
// already stopped, and the error names the component that failed with the tail of its log.
func Start(ctx context.Context, opts ...Option) (s *Stack, err error) {
	o := options{cacheDir: DefaultCacheDir(), log: os.Stderr, pluginName: "kro"}
	for _, opt := range opts {
		opt(&o)
	}
	e2eDir, repoRoot, err := FindE2EDir()
	if err != nil {
		return nil, err
	}
	if o.workDir == "" {
		// Short: the plugin socket path below it must fit in a unix socket address (108 bytes).
		if o.workDir, err = os.MkdirTemp("", "kropipe-e2e-"); err != nil {
			return nil, err
		}
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	s = &Stack{
		Dir:              o.workDir,
		Token:            hex.EncodeToString(token),
		PluginConfigDir:  repoRoot,
		PluginSocketName: o.pluginName + ".sock",
		e2eDir:           e2eDir,
		cacheDir:         o.cacheDir,
		log:              o.log,
	}
	s.memDir = memoryDir(s.Dir, o.log)
	for _, d := range []string{"logs", "home", "bin"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// started, not s: `return nil, err` below sets s to nil before this runs.
	started := s
	defer func() {
		if err != nil {
			started.Stop()
			s = nil
		}
	}()

	step := func(name string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		fmt.Fprintf(o.log, "e2e: %s ready in %s\n", name, time.Since(start).Round(10*time.Millisecond))
		return nil
	}
	if err := step("build", func() error {
		s.Binaries, err = Build(ctx, e2eDir, repoRoot, o.cacheDir, filepath.Join(s.Dir, "bin"), o.log)
		return err
	}); err != nil {
		return nil, err
	}
	begin := time.Now()
	if s.pki, err = writePKI(filepath.Join(s.Dir, "pki")); err != nil {
		return nil, err
	}
	if err := step("etcd", func() error { return s.startEtcd(ctx) }); err != nil {
		return nil, err
	}
	if err := step("kube-apiserver", func() error { return s.startAPIServer(ctx) }); err != nil {
		return nil, err
	}
	if err := s.connect(); err != nil {
		return nil, err
	}
	if err := step("controllers, scheduler and kwok node", func() error { return s.startControllers(ctx) }); err != nil {
		return nil, err
	}
	if o.spoke {
		if err := step("spoke cluster (kube-apiserver, controllers, scheduler and kwok node)", func() error { return s.startSpoke(ctx) }); err != nil {
			return nil, err
		}
	}
	if err := step("git server", func() error {
		s.Git, err = StartGitServer(filepath.Join(s.Dir, "git"))
		return err
	}); err != nil {
		return nil, err
	}
	if !o.noRegistry {
		if err := step("registry", func() error { return s.startRegistry(ctx, o.notify, o.notifyAuth) }); err != nil {
			return nil, err
		}
	}
	if !o.noArgoCD {
		s.newArgoCDInstalls(o.argoCDV3)
		if err := step("Argo CD bootstrap", func() error { return s.bootstrapArgoCD(ctx) }); err != nil {
			return nil, err
		}
		for _, a := range s.ArgoCDInstalls {
			if err := step("Argo CD "+a.Version, func() error { return s.startArgoCD(ctx, a) }); err != nil {
				return nil, err
			}
		}
	}
	if o.rollouts {
		if err := step("Argo Rollouts analysis controller", func() error { return s.startRollouts(ctx) }); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.log, "e2e: stack up in %s (logs in %s)\n", time.Since(begin).Round(10*time.Millisecond), filepath.Join(s.Dir, "logs"))
	return s, nil
}

func (s *Stack) connect() error {
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(s.kubeconfigYAML("default")))
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200
	s.RestConfig = cfg
	if s.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if s.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	if s.ArgoCD, err = appclient.NewForConfig(cfg); err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	s.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return nil
}

func (s *Stack) start(name, bin string, args, env []string) (*Process, error) {
	p, err := startProcess(name, filepath.Join(s.Dir, "logs"), s.Dir, bin, args, env)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// Run starts bin as one more process of the stack (a binary under test): logged to
// <Dir>/logs/<name>.log, run in Dir with env added to this process's environment, and stopped
// by Stop before the stack's own components.
func (s *Stack) Run(name, bin string, args, env []string) (*Process, error) {
	return s.start(name, bin, args, env)
}

// Processes returns the components started so far, in start order.
func (s *Stack) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Process(nil), s.procs...)
}

// Stop stops every component, the last started first (Argo CD before the API server it talks
// to). Logs stay in Dir.
func (s *Stack) Stop() {
	procs := s.Processes()
	// What tests started with Run goes first, then Argo CD and the Kubernetes controllers
	// together, then the API server, then etcd: a client that outlives its server only logs
	// noise.
	groups := [][]string{
		append([]string{"argocd-application-controller", "argocd-applicationset-controller", "argocd-repo-server", "argocd-cmp-server",
			"argocd3-application-controller", "argocd3-applicationset-controller", "argocd3-repo-server", "argocd3-cmp-server",
			"argocd3-commit-server",
			"gitea", "registry", "kwok", "kube-scheduler", "kube-controller-manager"}, spokeProcesses.controllers...),
		append([]string{"kube-apiserver"}, spokeProcesses.apiserver...),
		{"etcd"},
	}
	group := func(p *Process) int {
		for i, g := range groups {
			for _, n := range g {
				if p.Name == n {
					return i + 1
				}
			}
		}
		return 0
	}
	for i := 0; i <= len(groups); i++ {
		var wg sync.WaitGroup
		for _, p := range procs {
			if group(p) == i {
				wg.Add(1)
				go func() { defer wg.Done(); p.Stop() }()
			}
		}
		wg.Wait()
	}
	if s.Git != nil {
		_ = s.Git.Close()
	}
	for _, a := range s.ArgoCDInstalls {
		if a.redis != nil {
			a.redis.Close()
		}
	}
	if s.memDir != s.Dir { // only extracted repositories and sockets: nothing to keep
		_ = os.RemoveAll(s.memDir)
	}
}

// LogTails is the last n lines of every component's log, for a failure report.
func (s *Stack) LogTails(n int) string {
	var b strings.Builder
	for _, p := range s.Processes() {
		fmt.Fprintf(&b, "----- %s (%s) -----\n%s\n", p.Name, p.LogPath, p.Tail(n))
	}
	return b.String()
}

// EnsureNamespace creates namespace name unless it exists.
func (s *Stack) EnsureNamespace(ctx context.Context, name string) error {
	_, err := s.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// ApplyFile applies every object in a (multi-document) YAML or JSON file; namespaced objects
// that name no namespace go to namespace ("": default), as `kubectl apply -n` would.
func (s *Stack) ApplyFile(ctx context.Context, path, namespace string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	objs, err := DecodeObjects(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, u := range objs {
		if u.GetNamespace() == "" {
			u.SetNamespace(namespace)
		}
		if err := s.Apply(ctx, u); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// DecodeObjects reads every object of a multi-document YAML or JSON stream (empty documents
// left out).
func DecodeObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// ApplyObject applies a typed object (with its TypeMeta set) or a map, as Apply does.
func (s *Stack) ApplyObject(ctx context.Context, obj any) error {
	u, err := toUnstructured(obj)
	if err != nil {
		return err
	}
	return s.Apply(ctx, u)
}

// Apply creates obj, or replaces it when it exists.
func (s *Stack) Apply(ctx context.Context, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		// A CRD created a moment ago is not in the cached discovery yet.
		if r, ok := s.mapper.(meta.ResettableRESTMapper); ok {
			r.Reset()
		}
		if m, err = s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
	var ri dynamic.ResourceInterface = s.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		ri = s.Dynamic.Resource(m.Resource).Namespace(ns)
	}
	_, err = ri.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		_, err = ri.Update(ctx, obj, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return nil
}
