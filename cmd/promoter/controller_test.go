package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/leader"
)

// syncBuffer is a bytes.Buffer safe for the controller's goroutines to log into.
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
	return s.b.String()
}

// clusterEnv is a Git server and a registry on 127.0.0.1, and fake Kubernetes clients holding
// an Argo CD Application annotated for kropipe.
type clusterEnv struct {
	bare    string
	regHost string
	kube    *kubefake.Clientset
	dyn     *dynamicfake.FakeDynamicClient
}

func newClusterEnv(t *testing.T) clusterEnv {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	for _, tag := range []string{"1.2.1", "1.2.2", "2.0.0"} {
		img, _ := random.Image(64, 1)
		ref, _ := name.NewTag(host+"/team/frontend:"+tag, name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": map[string]any{
			"name":      "develop-frontend",
			"namespace": "argocd",
			"annotations": map[string]any{
				"kropipe.io/image":                           host + "/team/frontend",
				"kropipe.io/constraint":                      "^1.2",
				"argocd.argoproj.io/manifest-generate-paths": ".",
			},
		},
		"spec": map[string]any{
			"source": map[string]any{"repoURL": srv.URL("gitops.git"), "targetRevision": "main", "path": "develop/frontend"},
		},
	}}
	return clusterEnv{
		bare:    bare,
		regHost: host,
		kube:    kubefake.NewClientset(),
		dyn:     dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), argocd.ListKinds, app),
	}
}

func (e clusterEnv) start(t *testing.T, f *controllerFlags) (addr string, logs *syncBuffer, stop func() error) {
	t.Helper()
	logs = &syncBuffer{}
	g := &globals{addr: freeAddr(t), dataDir: t.TempDir(), logLevel: "info", stdout: io.Discard, stderr: logs, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runController(ctx, g, f, e.kube, e.dyn, g.jsonLogger()) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("controller did not stop on cancel")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return g.addr, logs, stop
}

func controllerFlagsFor(healthAddr string) *controllerFlags {
	return &controllerFlags{
		namespace: "argocd", watchNamespaces: []string{"argocd"}, interval: time.Hour,
		leaderElect: true, stateConfigMap: kubestate.DefaultName, healthAddr: healthAddr,
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tryGet is get for a server that may not listen yet: code 0 until it does.
func tryGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestController_PromotesFromAnnotationsUnderTheLeaseAndKeepsStateInTheCluster(t *testing.T) {
	e := newClusterEnv(t)
	health := freeAddr(t)
	addr, logs, stop := e.start(t, controllerFlagsFor(health))

	ctx := context.Background()
	c := api.NewClient(addr, "", nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		sts, err := c.Stages(ctx)
		if err == nil && len(sts) == 1 && sts[0].CurrentTag == "1.2.2" && sts[0].VerifiedFreight != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller never promoted develop-frontend: %v %+v\n%s", err, sts, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	subjects, err := gitserver.GitOutput(ctx, e.bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Promote image from 1.2.1 to 1.2.2\nSeed repository\n"; subjects != want {
		t.Errorf("git log:\n%s\nwant:\n%s", subjects, want)
	}

	t.Run("lease held", func(t *testing.T) {
		l, err := e.kube.CoordinationV1().Leases("argocd").Get(ctx, leader.DefaultName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			t.Fatalf("Lease argocd/%s: %v %+v", leader.DefaultName, err, l)
		}
	})
	t.Run("verification in the state ConfigMap", func(t *testing.T) {
		st, err := kubestate.New(e.kube, "argocd").Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v := st.Verifications["develop-frontend"]
		if len(v) != 1 || v[0].Value != "1.2.2" {
			t.Errorf("verifications = %+v, want 1.2.2 for develop-frontend", st.Verifications)
		}
	})
	t.Run("metrics on the API and the health port", func(t *testing.T) {
		for _, base := range []string{"http://" + addr, "http://" + health} {
			code, body := get(t, base+"/metrics")
			for _, want := range []string{
				`kropipe_promotions_total{result="promoted",stage="develop-frontend"} 1`,
				`kropipe_registry_requests_total{code="200",registry="` + e.regHost + `"}`,
				`kropipe_promotion_duration_seconds_count{stage="develop-frontend"} 1`,
			} {
				if code != http.StatusOK || !strings.Contains(body, want) {
					t.Errorf("%s/metrics (%d) lacks %s", base, code, want)
				}
			}
		}
	})
	t.Run("probes", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, "http://"+health+path); code != http.StatusOK {
				t.Errorf("%s = %d %s", path, code, body)
			}
		}
		// The health port serves no stage actions.
		if code, _ := get(t, "http://"+health+"/api/v1/stages"); code != http.StatusNotFound {
			t.Errorf("health port answers /api/v1/stages with %d, want 404", code)
		}
	})
	t.Run("problems route", func(t *testing.T) {
		code, body := get(t, "http://"+addr+"/api/v1/problems")
		if code != http.StatusOK || !strings.Contains(body, `"problems":[]`) {
			t.Errorf("/api/v1/problems = %d %s", code, body)
		}
	})

	if err := stop(); err != nil {
		t.Fatalf("controller returned %v", err)
	}
	t.Run("lease released on shutdown", func(t *testing.T) {
		l, err := e.kube.CoordinationV1().Leases("argocd").Get(ctx, leader.DefaultName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			t.Errorf("Lease still held by %s after shutdown; the standby would wait 15s", *l.Spec.HolderIdentity)
		}
	})
	t.Run("logs are JSON", func(t *testing.T) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		lines := 0
		for sc.Scan() {
			lines++
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("log line %d is not JSON: %s", lines, sc.Text())
			}
		}
		if lines == 0 || !strings.Contains(logs.String(), `"msg":"leading: this replica promotes"`) {
			t.Errorf("logs lack the leadership record:\n%s", logs.String())
		}
	})
}

func TestController_SecondReplicaStandsByAndRefusesToWrite(t *testing.T) {
	e := newClusterEnv(t)
	firstAddr, _, stopFirst := e.start(t, controllerFlagsFor(""))
	c := api.NewClient(firstAddr, "", nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		sts, err := c.Stages(context.Background())
		if err == nil && len(sts) == 1 && sts[0].CurrentTag == "1.2.2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first replica never promoted: %v %+v", err, sts)
		}
		time.Sleep(50 * time.Millisecond)
	}

	health := freeAddr(t)
	secondAddr, logs, _ := e.start(t, controllerFlagsFor(health))
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := tryGet("http://" + health + "/readyz")
		if code == http.StatusOK && strings.Contains(body, "standing by") && !strings.Contains(body, "unknown") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby /readyz = %d %s\n%s", code, body, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := api.NewClient(secondAddr, "", nil).Rollback(context.Background(), "develop-frontend", "")
	if err == nil || !strings.Contains(err.Error(), "standing by") || !strings.Contains(err.Error(), "kubectl port-forward pod/") {
		t.Fatalf("rollback on the standby: %v, want a refusal naming the leader's pod", err)
	}

	// The leader stops (rolling update, node drain): the standby takes over without a second
	// commit, since Git already holds 1.2.2.
	if err := stopFirst(); err != nil {
		t.Fatal(err)
	}
	c2 := api.NewClient(secondAddr, "", nil)
	deadline = time.Now().Add(30 * time.Second)
	for {
		sts, err := c2.Stages(context.Background())
		if err == nil && len(sts) == 1 && sts[0].CurrentTag == "1.2.2" && sts[0].Decision == "up-to-date" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby never took over: %v %+v\n%s", err, sts, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	subjects, err := gitserver.GitOutput(context.Background(), e.bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(subjects, "Promote image") != 1 {
		t.Errorf("git log after the takeover:\n%s\nwant exactly one promotion", subjects)
	}
}

func TestController_RefusesUnsafeOrIncompleteSettings(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		change  func(f *controllerFlags)
		wantErr string
	}{
		{name: "no namespace", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.namespace = "" }, wantErr: "--namespace"},
		{name: "reachable API without a token", addr: "0.0.0.0:0", change: func(*controllerFlags) {}, wantErr: "--token-file"},
		{name: "zero interval", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.interval = 0 }, wantErr: "--interval"},
		{name: "no watch namespaces", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.watchNamespaces = nil }, wantErr: "--watch-namespaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := controllerFlagsFor("")
			tt.change(f)
			g := &globals{addr: tt.addr, dataDir: t.TempDir(), logLevel: "error", stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
			err := runController(context.Background(), g, f, kubefake.NewClientset(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to name %s", err, tt.wantErr)
			}
		})
	}
}

func TestController_IsARootSubcommandWithItsFlags(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCommand(&out, &out, func(string) string { return "" })
	cmd.SetArgs([]string{"controller", "--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--kubeconfig", "--namespace", "--watch-namespaces", "--data-dir", "--addr", "--pull-secrets", "--interval", "--leader-elect", "--state-configmap", "--health-addr", "--insecure-registry"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("controller --help lacks %s", flag)
		}
	}
}
