package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ArgoCDNamespace is where Argo CD's components, settings and Applications live.
const ArgoCDNamespace = "argocd"

// ClusterName is the name of the Argo CD cluster Secret for the local API server.
const ClusterName = "e2e"

// ApplicationGVR is Argo CD's Application resource.
var ApplicationGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// ArgoCDV3Namespace is where the Argo CD v3 installation (WithArgoCDV3) keeps its settings and
// Applications: each application controller reconciles only the Applications of its own
// namespace, so the two lines share the cluster without touching each other's.
const ArgoCDV3Namespace = "argocd-v3"

// ArgoCDInstall is one Argo CD installation of the stack.
type ArgoCDInstall struct {
	Version string
	// Namespace holds its argocd-cm, argocd-secret, default AppProject, cluster Secret and
	// Applications.
	Namespace string
	// RepoServerAddr is host:port of its argocd-repo-server's plaintext gRPC API.
	RepoServerAddr string
	// PluginSockDir is where its argocd-cmp-server puts the plugin socket for its repo-server.
	PluginSockDir string
	// CommitServerAddr is host:port of its argocd-commit-server, which pushes the Source
	// Hydrator's rendered manifests; empty unless Hydrator.
	CommitServerAddr string
	// Hydrator says the Source Hydrator is on (hydrator.enabled in argocd-cmd-params-cm): an
	// argocd-commit-server runs and the application controller hydrates Applications that have
	// spec.sourceHydrator, pushing with the stack's repo-write-creds Secret.
	Hydrator bool

	// prefix names its processes and logs: argocd-repo-server, argocd3-repo-server, ...
	prefix         string
	binDir         string
	crdModule      string // module whose manifests/crds hold its CRDs
	crdModDir      string // folder, relative to the e2e module, whose go.mod pins crdModule
	kubeconfig     string
	redis          *miniredis.Miniredis
	applicationSet bool
	// repoServerFlags are added to argocd-repo-server's command line.
	repoServerFlags []string
	// scriptsDir holds the shell scripts of Argo CD's image (argoCDScripts), on every
	// component's PATH.
	scriptsDir string
}

func (a *ArgoCDInstall) process(component string) string {
	return a.prefix + strings.TrimPrefix(component, "argocd")
}

func (s *Stack) newArgoCDInstalls(v3 bool) {
	s.ArgoCDInstalls = []*ArgoCDInstall{{
		Version: ArgoCDVersion, Namespace: ArgoCDNamespace, PluginSockDir: filepath.Join(s.Dir, "plugins"),
		prefix: "argocd", binDir: s.Binaries.ArgoCDDir, crdModule: "github.com/argoproj/argo-cd/v2", crdModDir: ".",
		applicationSet: true,
	}}
	if v3 {
		// The applicationset controller turns the hydrator ApplicationSet the plugin tests
		// apply into Applications, as a user's would; the Source Hydrator (Beta since v3.5)
		// renders them through the kro plugin.
		s.ArgoCDInstalls = append(s.ArgoCDInstalls, &ArgoCDInstall{
			Version: ArgoCDV3Version, Namespace: ArgoCDV3Namespace, PluginSockDir: filepath.Join(s.Dir, "plugins3"),
			Hydrator: true,
			prefix:   "argocd3", binDir: s.Binaries.ArgoCDV3Dir, crdModule: "github.com/argoproj/argo-cd/v3", crdModDir: "tools/argocd3",
			applicationSet: true,
			// v3.6 defaults --client-ca-path to the mTLS Secret's mount and refuses it
			// together with --disable-tls, mounted or not.
			repoServerFlags: []string{"--client-ca-path="},
		})
	}
}

// ArgoCDV2 is the Argo CD v2.14 installation (namespace argocd), which every stack with Argo CD has.
func (s *Stack) ArgoCDV2() *ArgoCDInstall { return s.ArgoCDInstalls[0] }

// ArgoCDV3 is the Argo CD v3 installation (namespace argocd-v3), nil unless Start was given
// WithArgoCDV3.
func (s *Stack) ArgoCDV3() *ArgoCDInstall {
	if len(s.ArgoCDInstalls) < 2 {
		return nil
	}
	return s.ArgoCDInstalls[1]
}

func (s *Stack) startRedis(a *ArgoCDInstall) error {
	// Argo CD's controllers and repo-server insist on a Redis cache. miniredis is the in-process
	// Redis Argo CD itself uses for `argocd --core`; it speaks enough of the protocol for both.
	// One per installation: the two lines' cache entries share key names but not formats.
	r, err := miniredis.Run()
	if err != nil {
		return fmt.Errorf("start redis (miniredis) for Argo CD %s: %w", a.Version, err)
	}
	a.redis = r
	return nil
}

// bootstrapArgoCD creates what Argo CD's components expect to find before they start: the CRDs
// (of the newest installation: v3.2's are a superset of v2.14's, which v2.14 runs against as it
// would in the middle of an upgrade), then for each installation its namespace, argocd-cm
// (application-controller exits without it), argocd-secret, the default AppProject and a cluster
// Secret for the local API server (in-cluster kubernetes.default.svc does not resolve here).
func (s *Stack) bootstrapArgoCD(ctx context.Context) error {
	newest := s.ArgoCDInstalls[len(s.ArgoCDInstalls)-1]
	modDir, err := argoCDModuleDir(ctx, filepath.Join(s.e2eDir, newest.crdModDir), newest.crdModule)
	if err != nil {
		return err
	}
	crdDir := filepath.Join(modDir, "manifests", "crds")
	if !fileOK(filepath.Join(crdDir, "application-crd.yaml")) {
		return fmt.Errorf("Argo CD CRDs missing in %s: run `go mod download` in %s", crdDir, newest.crdModDir)
	}
	for _, f := range []string{"application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml"} {
		if err := s.ApplyFile(ctx, filepath.Join(crdDir, f), ""); err != nil {
			return fmt.Errorf("install Argo CD CRD %s: %w", f, err)
		}
	}
	for _, a := range s.ArgoCDInstalls {
		if err := s.EnsureNamespace(ctx, a.Namespace); err != nil {
			return err
		}
	}
	// A CRD serves only once Established; polling a list is the check that needs nothing else.
	for _, res := range []string{"applications", "appprojects", "applicationsets"} {
		gvr := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: res}
		if err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			_, err := s.Dynamic.Resource(gvr).Namespace(ArgoCDNamespace).List(ctx, metav1.ListOptions{Limit: 1})
			return err
		}); err != nil {
			return fmt.Errorf("Argo CD CRD %s not served: %w", res, err)
		}
	}
	for _, a := range s.ArgoCDInstalls {
		if err := s.installArgoCDScripts(ctx, a); err != nil {
			return err
		}
		if err := s.bootstrapArgoCDNamespace(ctx, a); err != nil {
			return fmt.Errorf("Argo CD %s bootstrap in namespace %s: %w", a.Version, a.Namespace, err)
		}
	}
	return nil
}

func (s *Stack) bootstrapArgoCDNamespace(ctx context.Context, a *ArgoCDInstall) error {
	ns := a.Namespace
	secretKey := make([]byte, 32)
	_, _ = rand.Read(secretKey)
	partOf := map[string]string{"app.kubernetes.io/part-of": "argocd"}
	clusterConfig, _ := json.Marshal(map[string]any{
		"bearerToken":     s.Token,
		"tlsClientConfig": map[string]any{"caData": base64.StdEncoding.EncodeToString(s.pki.caPEM)},
	})
	objs := []any{
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-cm", Namespace: ns, Labels: withName(partOf, "argocd-cm")},
			Data: map[string]string{
				// Only the cluster Secret below exists; in-cluster would point at nothing.
				"cluster.inClusterEnabled": "false",
				"timeout.reconciliation":   "60s",
			},
		},
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-rbac-cm", Namespace: ns, Labels: withName(partOf, "argocd-rbac-cm")},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-secret", Namespace: ns, Labels: withName(partOf, "argocd-secret")},
			StringData: map[string]string{"server.secretkey": hex.EncodeToString(secretKey)},
		},
		&corev1.Secret{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-" + ClusterName, Namespace: ns,
				Labels: map[string]string{"argocd.argoproj.io/secret-type": "cluster"}},
			StringData: map[string]string{"name": ClusterName, "server": s.APIServerURL, "config": string(clusterConfig)},
		},
		map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
			"metadata": map[string]any{"name": "default", "namespace": ns},
			"spec": map[string]any{
				"sourceRepos":              []any{"*"},
				"destinations":             []any{map[string]any{"server": "*", "namespace": "*"}},
				"clusterResourceWhitelist": []any{map[string]any{"group": "*", "kind": "*"}},
			},
		},
	}
	if s.Spoke != nil {
		objs = append(objs, s.spokeClusterSecret(ns))
	}
	if a.Hydrator {
		objs = append(objs, s.repoWriteCreds(ns, "", ""))
	}
	for _, o := range objs {
		if err := s.ApplyObject(ctx, o); err != nil {
			return err
		}
	}
	a.kubeconfig = filepath.Join(s.Dir, a.prefix+".kubeconfig")
	return os.WriteFile(a.kubeconfig, []byte(s.kubeconfigYAML(ns)), 0o600)
}

// RepoWriteCredsName is the repo-write-creds Secret an installation with the Source Hydrator
// finds its write credentials for every repository of the stack's Git server in.
const RepoWriteCredsName = "git-write-creds"

// repoWriteCreds is a credential template (secret-type repo-write-creds) for every repository
// whose URL starts with the Git server's: what argocd-commit-server pushes hydrated branches
// with. Argo CD keeps write credentials apart from read ones (secret-type repository,
// repo-creds) and the hydrator looks only at the write kinds.
func (s *Stack) repoWriteCreds(ns, user, password string) *corev1.Secret {
	data := map[string]string{"type": "git", "url": s.Git.URL}
	if user != "" {
		data["username"], data["password"] = user, password
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: RepoWriteCredsName, Namespace: ns,
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "repo-write-creds"}},
		StringData: data,
	}
}

// SetGitWriteCredentials puts user and password into installation a's repo-write-creds
// Secret, for a test that makes the Git server require them (GitServer.RequireBasicAuth).
// argocd-commit-server hands them to git through its askpass socket, which Argo CD fixes at
// /tmp/commit-server-ask-pass.sock: two stacks on one machine pushing with credentials at the
// same time take it from each other (Argo CD has no setting for its path).
func (s *Stack) SetGitWriteCredentials(ctx context.Context, a *ArgoCDInstall, user, password string) error {
	if !a.Hydrator {
		return fmt.Errorf("Argo CD %s in namespace %s runs no Source Hydrator: it has no write credentials", a.Version, a.Namespace)
	}
	return s.ApplyObject(ctx, s.repoWriteCreds(a.Namespace, user, password))
}

func withName(labels map[string]string, name string) map[string]string {
	out := map[string]string{"app.kubernetes.io/name": name}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// argoCDModuleDir is the source folder of Argo CD module mod as pinned by the go.mod in modDir.
func argoCDModuleDir(ctx context.Context, modDir, mod string) (string, error) {
	// `go mod download` (unlike `go list -m`) also fetches the module into an empty cache.
	cmd := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", mod)
	cmd.Dir = modDir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate Argo CD module %s (go mod download in %s): %w", mod, modDir, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("locate Argo CD module %s: unexpected `go mod download -json` output: %s", mod, out)
	}
	return m.Dir, nil
}

// argoCDScripts are the shell scripts Argo CD's image puts on PATH next to its binaries
// (Dockerfile: COPY hack/... /usr/local/bin/). repo-server v3.6 runs git-verify-wrapper.sh on
// every manifest generation of a Git source, GPG on or off, and fails the generation with
// "permission denied" when it is missing.
var argoCDScripts = []string{"hack/git-verify-wrapper.sh", "hack/gpg-wrapper.sh"}

// installArgoCDScripts copies argoCDScripts from installation a's module, those it has, into
// a's scripts folder, executable (the module cache is read-only), which argoEnv puts on PATH.
func (s *Stack) installArgoCDScripts(ctx context.Context, a *ArgoCDInstall) error {
	modDir, err := argoCDModuleDir(ctx, filepath.Join(s.e2eDir, a.crdModDir), a.crdModule)
	if err != nil {
		return err
	}
	a.scriptsDir = filepath.Join(s.Dir, a.prefix+"-scripts")
	if err := os.MkdirAll(a.scriptsDir, 0o755); err != nil {
		return err
	}
	for _, rel := range argoCDScripts {
		b, err := os.ReadFile(filepath.Join(modDir, rel))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("Argo CD %s script %s: %w", a.Version, rel, err)
		}
		if err := os.WriteFile(filepath.Join(a.scriptsDir, filepath.Base(rel)), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// argoEnv is the environment of Argo CD component (argocd-repo-server, ...) of installation a:
// its own HOME and TMPDIR under the run folder (repo-server clones there), the admin kubeconfig
// with the installation's namespace, and the plugin socket folder that repo-server and
// argocd-cmp-server meet in. repo-server's Git credentials socket is in the run folder too: at
// Argo CD's default, /tmp/reposerver-ask-pass.sock, the last repo-server started on the machine
// takes it over and every other one's fetches of a private repository fail with "unknown nonce".
func (s *Stack) argoEnv(a *ArgoCDInstall, component string, extraPath ...string) ([]string, error) {
	home := filepath.Join(s.Dir, "home", a.process(component))
	tmp := filepath.Join(s.Dir, "tmp", a.process(component))
	if component == "argocd-cmp-server" {
		tmp = filepath.Join(s.memDir, "tmp", a.process(component))
	}
	for _, d := range []string{home, tmp, a.PluginSockDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	path := strings.Join(append(extraPath, a.binDir, a.scriptsDir, os.Getenv("PATH")), string(os.PathListSeparator))
	return []string{
		"HOME=" + home, "TMPDIR=" + tmp, "PATH=" + path,
		"KUBECONFIG=" + a.kubeconfig,
		"ARGOCD_BINARY_NAME=" + component,
		"ARGOCD_PLUGINSOCKFILEPATH=" + a.PluginSockDir,
		"ARGOCD_ASK_PASS_SOCK=" + filepath.Join(s.Dir, a.process("-reposerver-ask-pass.sock")),
		"ARGOCD_GPG_ENABLED=false",
		"ARGOCD_CONTROLLER_REPLICAS=1",
	}, nil
}

// StartPlugin starts one more argocd-cmp-server for installation a, as a second plugin sidecar
// of its repo-server would be: it serves the plugin.yaml in configDir, whose metadata.name is
// name, with env added to its environment. The plugin benchmarks start a plugin that does no
// work, to measure what Argo CD's plugin protocol costs by itself.
func (s *Stack) StartPlugin(ctx context.Context, a *ArgoCDInstall, name, configDir string, env ...string) error {
	base, err := s.argoEnv(a, "argocd-cmp-server")
	if err != nil {
		return err
	}
	base = append(base, "ARGOCD_CMP_WORKDIR="+filepath.Join(s.memDir, a.process("argocd-cmp-work-"+name)))
	p, err := s.start(a.process("argocd-cmp-server-"+name), filepath.Join(a.binDir, "argocd-cmp-server"),
		[]string{"--config-dir-path=" + configDir, "--loglevel=info"}, append(base, env...))
	if err != nil {
		return err
	}
	return p.waitReady(ctx, 60*time.Second, fileExists(filepath.Join(a.PluginSockDir, name+".sock")))
}

// StartRepoServer starts one more argocd-repo-server for installation a, named name, with env
// added to its environment (ARGOCD_REPO_SERVER_* settings), and returns the host:port of its
// plaintext gRPC API. It shares a's plugin sockets and Redis, with its own HOME, TMPDIR and askpass
// socket. The benchmarks compare repo-server settings side by side with it.
func (s *Stack) StartRepoServer(ctx context.Context, a *ArgoCDInstall, name string, env ...string) (string, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return "", err
	}
	proc := a.process("argocd-repo-server-" + name)
	base, err := s.argoEnv(a, "argocd-repo-server")
	if err != nil {
		return "", err
	}
	home, tmp := filepath.Join(s.Dir, "home", proc), filepath.Join(s.Dir, "tmp", proc)
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	// Later entries win (os/exec keeps the last of duplicate keys).
	base = append(base, "HOME="+home, "TMPDIR="+tmp, "ARGOCD_ASK_PASS_SOCK="+filepath.Join(s.Dir, proc+"-ask-pass.sock"),
		"ARGOCD_REPO_SERVER_PLUGIN_TAR_EXCLUSIONS=.git/*")
	p, err := s.start(proc, filepath.Join(a.binDir, "argocd-repo-server"), append([]string{
		"--address=127.0.0.1", "--port=" + strconv.Itoa(ports[0]),
		"--metrics-address=127.0.0.1", "--metrics-port=" + strconv.Itoa(ports[1]),
		"--disable-tls", "--redis=" + a.redis.Addr(), "--loglevel=info",
	}, a.repoServerFlags...), append(base, env...))
	if err != nil {
		return "", err
	}
	if err := p.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/healthz", "")); err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(ports[0]), nil
}

// startArgoCD starts installation a: argocd-cmp-server with the repository's plugin.yaml,
// argocd-repo-server, argocd-application-controller and (v2.14 only) the applicationset
// controller.
func (s *Stack) startArgoCD(ctx context.Context, a *ArgoCDInstall) error {
	if err := s.startRedis(a); err != nil {
		return err
	}
	ports, err := FreePorts(8)
	if err != nil {
		return err
	}
	repoPort, repoMetrics, ctrlMetrics, appsetMetrics, appsetProbe, appsetWebhook := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	commitPort, commitMetrics := ports[6], ports[7]
	run := func(component string, args, env []string) (*Process, error) {
		return s.start(a.process(component), filepath.Join(a.binDir, component), args, env)
	}

	// argocd-cmp-server: the repository's own plugin.yaml (read from --config-dir-path) and the
	// freshly built cmp-sidecar first on PATH, exactly what the plugin's sidecar container holds.
	env, err := s.argoEnv(a, "argocd-cmp-server", filepath.Dir(s.Binaries.CmpSidecar))
	if err != nil {
		return err
	}
	// The sidecar's /tmp, where argocd-cmp-server extracts each call's repository, is a
	// memory-backed emptyDir in manifests/cmp-sidecar: so is it here.
	env = append(env, "ARGOCD_CMP_WORKDIR="+filepath.Join(s.memDir, a.process("argocd-cmp-work")))
	cmp, err := run("argocd-cmp-server", []string{"--config-dir-path=" + s.PluginConfigDir, "--loglevel=info"}, env)
	if err != nil {
		return err
	}
	if err := cmp.waitReady(ctx, 60*time.Second, fileExists(filepath.Join(a.PluginSockDir, s.PluginSocketName))); err != nil {
		return err
	}

	if env, err = s.argoEnv(a, "argocd-repo-server"); err != nil {
		return err
	}
	// As the README's install prescribes (manifests/install/argocd-cmd-params-cm.yaml): the
	// repository's Git history is not streamed to the plugin with every call.
	env = append(env, "ARGOCD_REPO_SERVER_PLUGIN_TAR_EXCLUSIONS=.git/*")
	repo, err := run("argocd-repo-server", append([]string{
		"--address=127.0.0.1", "--port=" + strconv.Itoa(repoPort),
		"--metrics-address=127.0.0.1", "--metrics-port=" + strconv.Itoa(repoMetrics),
		"--disable-tls", "--redis=" + a.redis.Addr(), "--loglevel=info",
	}, a.repoServerFlags...), env)
	if err != nil {
		return err
	}
	a.RepoServerAddr = "127.0.0.1:" + strconv.Itoa(repoPort)
	if err := repo.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(repoMetrics)+"/healthz", "")); err != nil {
		return err
	}

	if env, err = s.argoEnv(a, "argocd-application-controller"); err != nil {
		return err
	}
	if a.Hydrator {
		if err := s.startCommitServer(ctx, a, commitPort, commitMetrics); err != nil {
			return err
		}
		// What argocd-cmd-params-cm's hydrator.enabled and commit.server set in Argo CD's
		// manifests (install-with-hydrator.yaml).
		env = append(env, "ARGOCD_HYDRATOR_ENABLED=true", "ARGOCD_APPLICATION_CONTROLLER_COMMIT_SERVER="+a.CommitServerAddr)
	}
	ctrl, err := run("argocd-application-controller", []string{
		"--repo-server=" + a.RepoServerAddr, "--repo-server-plaintext",
		"--redis=" + a.redis.Addr(),
		// No address flag exists for the controller's metrics: it binds all interfaces.
		"--metrics-port=" + strconv.Itoa(ctrlMetrics),
		"--status-processors=4", "--operation-processors=2",
		"--app-resync=60", "--self-heal-timeout-seconds=2",
		"--loglevel=info",
	}, env)
	if err != nil {
		return err
	}

	var appset *Process
	if a.applicationSet {
		if env, err = s.argoEnv(a, "argocd-applicationset-controller"); err != nil {
			return err
		}
		appset, err = run("argocd-applicationset-controller", []string{
			"--metrics-addr=127.0.0.1:" + strconv.Itoa(appsetMetrics),
			"--probe-addr=127.0.0.1:" + strconv.Itoa(appsetProbe),
			"--webhook-addr=127.0.0.1:" + strconv.Itoa(appsetWebhook),
			"--argocd-repo-server=" + a.RepoServerAddr, "--repo-server-plaintext",
			"--enable-leader-election=false", "--loglevel=info",
		}, env)
		if err != nil {
			return err
		}
	}
	if err := ctrl.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(ctrlMetrics)+"/healthz", "")); err != nil {
		return err
	}
	if appset == nil {
		return nil
	}
	// The applicationset controller registers no health checks; its metrics answer once its
	// manager runs.
	return appset.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(appsetMetrics)+"/metrics", ""))
}

// startCommitServer starts installation a's argocd-commit-server on loopback: the Source
// Hydrator's component that clones the hydrated branch, writes manifest.yaml, hydrator.metadata
// and README.md, commits, pushes and adds the git note with the dry SHA. It runs git and, for
// credentials, the argocd binary as its askpass helper (both on its PATH).
func (s *Stack) startCommitServer(ctx context.Context, a *ArgoCDInstall, port, metricsPort int) error {
	env, err := s.argoEnv(a, "argocd-commit-server")
	if err != nil {
		return err
	}
	p, err := s.start(a.process("argocd-commit-server"), filepath.Join(a.binDir, "argocd-commit-server"), []string{
		"--address=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--metrics-address=127.0.0.1", "--metrics-port=" + strconv.Itoa(metricsPort),
		"--loglevel=info", "--logformat=text",
	}, env)
	if err != nil {
		return err
	}
	a.CommitServerAddr = "127.0.0.1:" + strconv.Itoa(port)
	return p.waitReady(ctx, 60*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(metricsPort)+"/healthz?full=true", ""))
}

// startRegistry runs the CNCF distribution registry (built from its module, see
// e2e/tools/registry) on loopback.
func (s *Stack) startRegistry(ctx context.Context, notify, notifyAuth string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := filepath.Join(s.Dir, "registry.yml")
	conf := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(s.Dir, "registry"), addr)
	if notify != "" {
		conf += fmt.Sprintf(`notifications:
  endpoints:
    - name: kropipe
      url: %s
      headers:
        Authorization: [%q]
      timeout: 2s
      threshold: 10
      backoff: 1s
`, notify, notifyAuth)
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	// distribution v3 exports OpenTelemetry traces to https://localhost:4318 unless told not to.
	p, err := s.start("registry", s.Binaries.Registry, []string{"serve", cfg}, []string{"OTEL_TRACES_EXPORTER=none"})
	if err != nil {
		return err
	}
	s.RegistryAddr = addr
	return p.waitReady(ctx, 30*time.Second, httpOK(http.DefaultClient, "http://"+addr+"/v2/", ""))
}

func poll(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func toUnstructured(o any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return u, nil
}
