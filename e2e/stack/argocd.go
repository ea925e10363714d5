package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

func (s *Stack) startRedis() error {
	// Argo CD's controllers and repo-server insist on a Redis cache. miniredis is the in-process
	// Redis Argo CD itself uses for `argocd --core`; it speaks enough of the protocol for both.
	r, err := miniredis.Run()
	if err != nil {
		return fmt.Errorf("start redis (miniredis): %w", err)
	}
	s.redis = r
	s.RedisAddr = r.Addr()
	return nil
}

// bootstrapArgoCD creates what Argo CD's components expect to find before they start: the CRDs,
// the namespace, argocd-cm (application-controller exits without it), argocd-secret, the default
// AppProject and a cluster Secret for the local API server (in-cluster kubernetes.default.svc does
// not resolve here).
func (s *Stack) bootstrapArgoCD(ctx context.Context) error {
	crdDir, err := argoCDCRDDir(ctx, s.e2eDir)
	if err != nil {
		return err
	}
	for _, f := range []string{"application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml"} {
		if err := s.ApplyFile(ctx, filepath.Join(crdDir, f), ""); err != nil {
			return fmt.Errorf("install Argo CD CRD %s: %w", f, err)
		}
	}
	if err := s.EnsureNamespace(ctx, ArgoCDNamespace); err != nil {
		return err
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
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-cm", Namespace: ArgoCDNamespace, Labels: withName(partOf, "argocd-cm")},
			Data: map[string]string{
				// Only the cluster Secret below exists; in-cluster would point at nothing.
				"cluster.inClusterEnabled": "false",
				"timeout.reconciliation":   "60s",
			},
		},
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-rbac-cm", Namespace: ArgoCDNamespace, Labels: withName(partOf, "argocd-rbac-cm")},
		},
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "argocd-secret", Namespace: ArgoCDNamespace, Labels: withName(partOf, "argocd-secret")},
			StringData: map[string]string{"server.secretkey": hex.EncodeToString(secretKey)},
		},
		&corev1.Secret{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-" + ClusterName, Namespace: ArgoCDNamespace,
				Labels: map[string]string{"argocd.argoproj.io/secret-type": "cluster"}},
			StringData: map[string]string{"name": ClusterName, "server": s.APIServerURL, "config": string(clusterConfig)},
		},
		map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
			"metadata": map[string]any{"name": "default", "namespace": ArgoCDNamespace},
			"spec": map[string]any{
				"sourceRepos":              []any{"*"},
				"destinations":             []any{map[string]any{"server": "*", "namespace": "*"}},
				"clusterResourceWhitelist": []any{map[string]any{"group": "*", "kind": "*"}},
			},
		},
	}
	for _, o := range objs {
		if err := s.ApplyObject(ctx, o); err != nil {
			return fmt.Errorf("Argo CD bootstrap: %w", err)
		}
	}
	s.argoKubeconfig = filepath.Join(s.Dir, "argocd.kubeconfig")
	return os.WriteFile(s.argoKubeconfig, []byte(s.kubeconfigYAML(ArgoCDNamespace)), 0o600)
}

func withName(labels map[string]string, name string) map[string]string {
	out := map[string]string{"app.kubernetes.io/name": name}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// argoCDCRDDir is manifests/crds of the Argo CD module the e2e module pins.
func argoCDCRDDir(ctx context.Context, e2eDir string) (string, error) {
	// `go mod download` (unlike `go list -m`) also fetches the module into an empty cache.
	cmd := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", "github.com/argoproj/argo-cd/v2")
	cmd.Dir = e2eDir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate Argo CD module (go mod download in %s): %w", e2eDir, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("locate Argo CD module: unexpected `go mod download -json` output: %s", out)
	}
	dir := filepath.Join(mod.Dir, "manifests", "crds")
	if !fileOK(filepath.Join(dir, "application-crd.yaml")) {
		return "", fmt.Errorf("Argo CD CRDs missing in %s: run `go mod download` in e2e/", dir)
	}
	return dir, nil
}

// argoEnv is the environment every Argo CD component shares: its own HOME and TMPDIR under the
// run folder (repo-server clones there), the admin kubeconfig with argocd as namespace, and the
// plugin socket folder that repo-server and argocd-cmp-server meet in. repo-server's Git
// credentials socket is in the run folder too: at Argo CD's default, /tmp/reposerver-ask-pass.sock,
// the last stack started on the machine takes it over and every other stack's fetches of a
// private repository fail with "unknown nonce".
func (s *Stack) argoEnv(name string, extraPath ...string) ([]string, error) {
	home := filepath.Join(s.Dir, "home", name)
	tmp := filepath.Join(s.Dir, "tmp", name)
	for _, d := range []string{home, tmp, s.PluginSockDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	path := strings.Join(append(extraPath, s.Binaries.ArgoCDDir, os.Getenv("PATH")), string(os.PathListSeparator))
	return []string{
		"HOME=" + home, "TMPDIR=" + tmp, "PATH=" + path,
		"KUBECONFIG=" + s.argoKubeconfig,
		"ARGOCD_BINARY_NAME=" + name,
		"ARGOCD_PLUGINSOCKFILEPATH=" + s.PluginSockDir,
		"ARGOCD_ASK_PASS_SOCK=" + filepath.Join(s.Dir, "reposerver-ask-pass.sock"),
		"ARGOCD_GPG_ENABLED=false",
		"ARGOCD_CONTROLLER_REPLICAS=1",
	}, nil
}

func (s *Stack) startArgoCD(ctx context.Context) error {
	ports, err := FreePorts(6)
	if err != nil {
		return err
	}
	repoPort, repoMetrics, ctrlMetrics, appsetMetrics, appsetProbe, appsetWebhook := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	// argocd-cmp-server: the repository's own plugin.yaml (read from --config-dir-path) and the
	// freshly built cmp-sidecar first on PATH, exactly what the plugin's sidecar container holds.
	env, err := s.argoEnv("argocd-cmp-server", filepath.Dir(s.Binaries.CmpSidecar))
	if err != nil {
		return err
	}
	env = append(env, "ARGOCD_CMP_WORKDIR="+filepath.Join(s.Dir, "cmp-work"))
	cmp, err := s.start("argocd-cmp-server", filepath.Join(s.Binaries.ArgoCDDir, "argocd-cmp-server"),
		[]string{"--config-dir-path=" + s.PluginConfigDir, "--loglevel=info"}, env)
	if err != nil {
		return err
	}
	if err := cmp.waitReady(ctx, 60*time.Second, fileExists(filepath.Join(s.PluginSockDir, s.PluginSocketName))); err != nil {
		return err
	}

	env, err = s.argoEnv("argocd-repo-server")
	if err != nil {
		return err
	}
	repo, err := s.start("argocd-repo-server", filepath.Join(s.Binaries.ArgoCDDir, "argocd-repo-server"), []string{
		"--address=127.0.0.1", "--port=" + strconv.Itoa(repoPort),
		"--metrics-address=127.0.0.1", "--metrics-port=" + strconv.Itoa(repoMetrics),
		"--disable-tls", "--redis=" + s.RedisAddr, "--loglevel=info",
	}, env)
	if err != nil {
		return err
	}
	s.RepoServerAddr = "127.0.0.1:" + strconv.Itoa(repoPort)
	if err := repo.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(repoMetrics)+"/healthz", "")); err != nil {
		return err
	}

	env, err = s.argoEnv("argocd-application-controller")
	if err != nil {
		return err
	}
	ctrl, err := s.start("argocd-application-controller", filepath.Join(s.Binaries.ArgoCDDir, "argocd-application-controller"), []string{
		"--repo-server=" + s.RepoServerAddr, "--repo-server-plaintext",
		"--redis=" + s.RedisAddr,
		// No address flag exists for the controller's metrics: it binds all interfaces.
		"--metrics-port=" + strconv.Itoa(ctrlMetrics),
		"--status-processors=4", "--operation-processors=2",
		"--app-resync=60", "--self-heal-timeout-seconds=2",
		"--loglevel=info",
	}, env)
	if err != nil {
		return err
	}

	env, err = s.argoEnv("argocd-applicationset-controller")
	if err != nil {
		return err
	}
	appset, err := s.start("argocd-applicationset-controller", filepath.Join(s.Binaries.ArgoCDDir, "argocd-applicationset-controller"), []string{
		"--metrics-addr=127.0.0.1:" + strconv.Itoa(appsetMetrics),
		"--probe-addr=127.0.0.1:" + strconv.Itoa(appsetProbe),
		"--webhook-addr=127.0.0.1:" + strconv.Itoa(appsetWebhook),
		"--argocd-repo-server=" + s.RepoServerAddr, "--repo-server-plaintext",
		"--enable-leader-election=false", "--loglevel=info",
	}, env)
	if err != nil {
		return err
	}
	if err := ctrl.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(ctrlMetrics)+"/healthz", "")); err != nil {
		return err
	}
	// The applicationset controller registers no health checks; its metrics answer once its
	// manager runs.
	return appset.waitReady(ctx, 90*time.Second, httpOK(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(appsetMetrics)+"/metrics", ""))
}

// startRegistry runs Debian's docker-registry (the CNCF distribution registry) on loopback.
func (s *Stack) startRegistry(ctx context.Context, notify, notifyAuth string) error {
	bin := os.Getenv("KROPIPE_E2E_REGISTRY_BIN")
	if bin == "" {
		bin = "/usr/bin/docker-registry"
	}
	if !fileOK(bin) {
		return fmt.Errorf("registry: %s missing: `apt-get install docker-registry` (.ci/run does)", bin)
	}
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
	p, err := s.start("docker-registry", bin, []string{"serve", cfg}, nil)
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
