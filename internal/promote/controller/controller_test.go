package controller

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kropipe/kropipe/internal/promote/addrtest"
	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/leader"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
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
// an Argo CD Application annotated for kropipe (develop-frontend), a sibling that is not
// (develop-backend) and one with a misspelt annotation (develop-typo).
type clusterEnv struct {
	git     *gitserver.Server
	bare    string
	regHost string
	kube    *kubefake.Clientset
	dyn     *dynamicfake.FakeDynamicClient
	// blockPatches makes every patch of an Application fail, as if the API server were
	// unreachable for the promoter.
	blockPatches *atomic.Bool
}

func newClusterEnv(t *testing.T) clusterEnv {
	t.Helper()
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2", "2.0.0")
	return newClusterEnvFor(t, host, nil)
}

// newClusterEnvFor is newClusterEnv with the registry at host, more annotations on
// develop-frontend, and more objects in the fake cluster.
func newClusterEnvFor(t *testing.T, host string, annotations map[string]any, objects ...runtime.Object) clusterEnv {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
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
			"source":      map[string]any{"repoURL": srv.URL("gitops.git"), "targetRevision": "main", "path": "develop/frontend"},
			"destination": map[string]any{"namespace": "frontend-develop"},
		},
	}}
	for k, v := range annotations {
		_ = unstructured.SetNestedField(app.Object, v, "metadata", "annotations", k)
	}
	sibling := app.DeepCopy()
	sibling.SetName("develop-backend")
	sibling.SetAnnotations(map[string]string{"argocd.argoproj.io/manifest-generate-paths": "."})
	_ = unstructured.SetNestedField(sibling.Object, "develop/backend", "spec", "source", "path")
	// A typo blocks only its own stage.
	typo := app.DeepCopy()
	typo.SetName("develop-typo")
	typo.SetAnnotations(map[string]string{"kropipe.io/image": host + "/team/frontend", "kropipe.io/constrant": "^1.2", "argocd.argoproj.io/manifest-generate-paths": "."})
	_ = unstructured.SetNestedField(typo.Object, "develop/typo", "spec", "source", "path")
	// Without manifest-generate-paths every commit regenerates every app: a warning, not a block.
	noPaths := app.DeepCopy()
	noPaths.SetName("develop-nopaths")
	noPaths.SetAnnotations(map[string]string{"kropipe.io/image": host + "/team/nopaths"})
	_ = unstructured.SetNestedField(noPaths.Object, "develop/nopaths", "spec", "source", "path")
	e := clusterEnv{
		git:          srv,
		bare:         bare,
		regHost:      host,
		kube:         kubefake.NewClientset(objects...),
		dyn:          dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), argocd.ListKinds, app, sibling, typo, noPaths),
		blockPatches: &atomic.Bool{},
	}
	e.dyn.PrependReactor("patch", "applications", func(k8stesting.Action) (bool, runtime.Object, error) {
		if e.blockPatches.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	return e
}

func (e clusterEnv) app(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// waitSyncRequested waits until the Application has an operation syncing it to revision.
func (e clusterEnv) waitSyncRequested(t *testing.T, name, revision string, logs *syncBuffer) *unstructured.Unstructured {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		u := e.app(t, name)
		if rev, _, _ := unstructured.NestedString(u.Object, "operation", "sync", "revision"); rev == revision {
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("Application %s never got a sync to %s: %v\n%s", name, revision, u.Object["operation"], logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finishSync plays Argo CD: the operation on the Application succeeded at revision, and the
// app is Synced and Healthy there, compared after the operation finished.
func (e clusterEnv) finishSync(t *testing.T, name, revision string) {
	t.Helper()
	e.finishSyncAt(t, name, revision, revision)
}

// finishSyncAt is finishSync where Argo CD reports the Application at syncRevision after an
// operation to revision: with manifest-generate-paths it moves an app to a later commit that
// does not touch its folder, without syncing.
func (e clusterEnv) finishSyncAt(t *testing.T, name, revision, syncRevision string) {
	t.Helper()
	u := e.app(t, name)
	delete(u.Object, "operation")
	finished := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	u.Object["status"] = map[string]any{
		"sync":   map[string]any{"status": "Synced", "revision": syncRevision},
		"health": map[string]any{"status": "Healthy"},
		"operationState": map[string]any{
			"phase": "Succeeded", "startedAt": finished, "finishedAt": finished,
			"operation":  map[string]any{"sync": map[string]any{"revision": revision}},
			"syncResult": map[string]any{"revision": revision},
		},
		"reconciledAt": time.Now().UTC().Add(time.Second).Format(time.RFC3339),
	}
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startPromoted starts a controller with f and waits until develop-frontend is promoted to
// 1.2.2 and the sync of that commit is requested; it returns the API client, the controller's
// logs and the promotion commit.
func (e clusterEnv) startPromoted(t *testing.T, f *Config) (*api.Client, *syncBuffer, string) {
	t.Helper()
	addr, logs, _ := e.start(t, f)
	c := api.NewClient(addr, "", nil)
	waitStage(t, c, logs, "promoted", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
	commit := head(t, e.bare)
	e.waitSyncRequested(t, "develop-frontend", commit, logs)
	return c, logs, commit
}

func head(t *testing.T, bare string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "rev-parse", "main")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (e clusterEnv) start(t *testing.T, f *Config) (addr string, logs *syncBuffer, stop func() error) {
	t.Helper()
	logs = &syncBuffer{}
	cfg := *f
	cfg.Kube, cfg.Dynamic = e.kube, e.dyn
	cfg.Addr, cfg.DataDir = addrtest.Free(t), t.TempDir()
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	// Fail at once, with the reason, when the controller does not even start.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("controller stopped at start: %v\n%s", err, logs.String())
		default:
		}
		code, body := tryGet("http://" + cfg.Addr + "/healthz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("controller not serving /healthz on %s after 10s: %d %s\n%s", cfg.Addr, code, body, logs.String())
		}
	}
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
	return cfg.Addr, logs, stop
}

// configFor is a replica's configuration as `promoter controller` makes it from its default
// flags; start fills in the clients, addresses and logger.
func configFor(healthAddr string) *Config {
	return &Config{
		Namespace: "argocd", ArgoCDNamespace: "argocd", WatchNamespaces: []string{"argocd"},
		// Short, so the health gate sees the simulated Argo CD quickly.
		Interval: 200 * time.Millisecond, HealthTimeout: argocd.DefaultGateTimeout,
		LeaderElect: true, StateConfigMap: kubestate.DefaultName, HealthAddr: healthAddr,
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

func tryPost(url, body string) (int, string) { return tryPostWith(url, body, "") }

func TestController_PromotesFromAnnotationsUnderTheLeaseAndKeepsStateInTheCluster(t *testing.T) {
	e := newClusterEnv(t)
	health := addrtest.Free(t)
	addr, logs, stop := e.start(t, configFor(health))

	ctx := context.Background()
	c := api.NewClient(addr, "", nil)
	started := time.Now()
	waitStage(t, c, logs, "promoted", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
	promotedAfter := time.Since(started)

	// Only the promoted Application is asked to sync, to the promotion commit.
	commit := head(t, e.bare)
	u := e.waitSyncRequested(t, "develop-frontend", commit, logs)
	t.Logf("start → commit pushed %s, → sync requested %s", promotedAfter.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	if info, _, _ := unstructured.NestedSlice(u.Object, "operation", "info"); len(info) != 1 || info[0].(map[string]any)["value"] != "Promote image from 1.2.1 to 1.2.2" {
		t.Errorf("operation info = %v, want the commit subject as the reason", info)
	}
	if _, ok := e.app(t, "develop-backend").Object["operation"]; ok {
		t.Error("the sibling Application develop-backend got an operation")
	}
	st, _ := c.Stage(ctx, "develop-frontend")
	if st.VerifiedFreight != nil {
		t.Fatalf("verified before Argo CD synced: %+v", st.VerifiedFreight)
	}
	if !strings.Contains(st.Reason, "verification pending: waiting:") {
		t.Errorf("reason = %q, want what the health gate waits for", st.Reason)
	}

	e.finishSync(t, "develop-frontend", commit)
	waitStage(t, c, logs, "verified", func(st stage.Status) bool { return st.VerifiedFreight != nil && st.VerifiedFreight.Commit == commit })

	subjects, err := gitserver.GitOutput(ctx, e.bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Promote image from 1.2.1 to 1.2.2\nSeed repository\n"; subjects != want {
		t.Errorf("git log:\n%s\nwant:\n%s", subjects, want)
	}
	st, _ = c.Stage(ctx, "develop-frontend")
	if st.Decision != stage.DecisionUpToDate {
		t.Errorf("after verification: %s %q, want up-to-date", st.Decision, st.Reason)
	}

	t.Run("lease held", func(t *testing.T) {
		l, err := e.kube.CoordinationV1().Leases("argocd").Get(ctx, leader.DefaultName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			t.Fatalf("Lease argocd/%s: %v %+v", leader.DefaultName, err, l)
		}
	})
	t.Run("verification in the state ConfigMaps", func(t *testing.T) {
		st, err := kubestate.NewStages(e.kube, "argocd", kubestate.DefaultName, func(string) bool { return true }, nil).Load(ctx)
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
		if code != http.StatusOK || !strings.Contains(body, `"stage":"develop-typo"`) || !strings.Contains(body, "kropipe.io/constrant") {
			t.Errorf("/api/v1/problems = %d %s, want develop-typo's misspelt annotation", code, body)
		}
		// The route is in the served OpenAPI document, and answers as it says.
		_, docBody := get(t, "http://"+addr+api.OpenAPIPath)
		doc, err := openapi3.NewLoader().LoadFromData([]byte(docBody))
		if err != nil {
			t.Fatalf("the served OpenAPI document: %v", err)
		}
		item := doc.Paths.Value("/api/v1/problems")
		if item == nil || item.Get == nil {
			t.Fatalf("%s does not describe /api/v1/problems", api.OpenAPIPath)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/problems", nil)
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: &routers.Route{Spec: doc, Path: "/api/v1/problems", PathItem: item, Method: http.MethodGet, Operation: item.Get}},
			Status:                 code, Header: http.Header{"Content-Type": {"application/json"}},
		}
		in.SetBodyBytes([]byte(body))
		if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
			t.Errorf("/api/v1/problems answers not as %s says: %v", api.OpenAPIPath, err)
		}
	})
	t.Run("pipeline page: sync, health and revision on the card, a bad annotation on its stage", func(t *testing.T) {
		code, body := tryGet("http://" + addr + "/")
		if code != http.StatusOK {
			t.Fatalf("GET / = %d", code)
		}
		card := func(name string) string {
			_, rest, _ := strings.Cut(body, `id="stage-`+name+`"`)
			card, _, _ := strings.Cut(rest, "</article>")
			return card
		}
		if want := `<span class="sync s-synced">Synced</span> <span class="health h-healthy">Healthy</span> at <code>` + commit[:7] + `</code>`; !strings.Contains(card("develop-frontend"), want) {
			t.Errorf("develop-frontend's card lacks %s:\n%s", want, card("develop-frontend"))
		}
		if typo := card("develop-typo"); !strings.Contains(typo, `<p class="problem">`) || !strings.Contains(typo, "kropipe.io/constrant") {
			t.Errorf("develop-typo's card does not show the misspelt annotation:\n%s", typo)
		}
	})
	t.Run("stage status: the Application's sync and health, warnings, stages not run", func(t *testing.T) {
		st, err := c.Stage(ctx, "develop-frontend")
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Sync; s == nil || s.Application != "argocd/develop-frontend" || s.Status != "Synced" || s.Health != "Healthy" || s.Revision != commit || s.Operation != "Succeeded" {
			t.Errorf("develop-frontend sync = %+v, want Synced/Healthy at %s after a Succeeded operation", st.Sync, commit)
		}
		typo, err := c.Stage(ctx, "develop-typo")
		if err != nil || typo.Decision != stage.DecisionFailed || !strings.Contains(typo.Reason, "kropipe.io/constrant") {
			t.Errorf("develop-typo = %+v, %v; want failed naming the misspelt annotation", typo, err)
		}
		noPaths, err := c.Stage(ctx, "develop-nopaths")
		if err != nil || len(noPaths.Warnings) != 1 || !strings.Contains(noPaths.Warnings[0], "manifest-generate-paths") {
			t.Errorf("develop-nopaths warnings = %q, %v; want the missing manifest-generate-paths", noPaths.Warnings, err)
		}
		all, err := c.Stages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]stage.Status{}
		for _, st := range all {
			listed[st.Name] = st
		}
		if s := listed["develop-frontend"].Sync; s == nil || s.Revision != commit {
			t.Errorf("the list's develop-frontend sync = %+v, want at %s", s, commit)
		}
		if typo := listed["develop-typo"]; !strings.Contains(typo.Reason, "not run, fix its annotations") {
			t.Errorf("the list's develop-typo = %+v, want it not run for its annotations", typo)
		}
	})
	t.Run("rollback through the API", func(t *testing.T) {
		// Without a token the API records the name the command gives (promoter sends $USER@host).
		out, err := c.As("carol@laptop").Rollback(ctx, "develop-frontend", "", "1.2.2")
		if err != nil || out.New != "1.2.1" || out.RequestedBy != "carol@laptop" {
			t.Fatalf("rollback: %+v %v", out, err)
		}
		e.waitSyncRequested(t, "develop-frontend", out.Commit, logs)
		if code, body := get(t, "http://"+addr+"/metrics"); code != http.StatusOK || !strings.Contains(body, `kropipe_promotions_total{result="rolled-back",stage="develop-frontend"} 1`) {
			t.Errorf("/metrics lacks the rollback")
		}
	})
	t.Run("events on the Applications", func(t *testing.T) {
		evs, err := e.kube.CoreV1().Events("argocd").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, ev := range evs.Items {
			got[ev.InvolvedObject.Name] = append(got[ev.InvolvedObject.Name], ev.Reason)
		}
		want := map[string][]string{
			"develop-frontend": {"Promoted", "RolledBack"},
			"develop-typo":     {"InvalidConfiguration"},
			"develop-nopaths":  {"ConfigurationWarning"},
		}
		for app, reasons := range want {
			for _, r := range reasons {
				if !slices.Contains(got[app], r) {
					t.Errorf("events on %s = %v, want %s", app, got[app], r)
				}
			}
		}
		if len(got["develop-backend"]) > 0 {
			t.Errorf("events on the untouched sibling: %v", got["develop-backend"])
		}
		if !slices.ContainsFunc(evs.Items, func(ev corev1.Event) bool {
			return ev.Reason == argocd.ReasonRolledBack && strings.HasSuffix(ev.Message, ", requested by carol@laptop)")
		}) {
			t.Errorf("the RolledBack Event does not say who asked: %v", evs.Items)
		}
		if n := len(got["develop-typo"]); n != 1 {
			t.Errorf("%d events for one misspelt annotation, want 1 (not one per pass)", n)
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

// TestController_StandbyRefusesToWriteAndTakesOverAPromotionKilledBeforeItsSync: the first
// leader pushes but cannot patch the Application, then stops; the standby, which refused to
// act while standing by, takes over and triggers the sync of that commit without a second one.
func TestController_StandbyRefusesToWriteAndTakesOverAPromotionKilledBeforeItsSync(t *testing.T) {
	e := newClusterEnv(t)
	e.blockPatches.Store(true)
	firstAddr, firstLogs, stopFirst := e.start(t, configFor(""))
	waitStage(t, api.NewClient(firstAddr, "", nil), firstLogs, "promoted by the first replica", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
	commit := head(t, e.bare)

	health := addrtest.Free(t)
	secondAddr, logs, _ := e.start(t, configFor(health))
	deadline := time.Now().Add(30 * time.Second)
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
	second := api.NewClient(secondAddr, "", nil)
	_, err := second.Rollback(context.Background(), "develop-frontend", "", "")
	if err == nil || !strings.Contains(err.Error(), "standing by") || !strings.Contains(err.Error(), "kubectl port-forward pod/") {
		t.Fatalf("rollback on the standby: %v, want a refusal naming the leader's pod", err)
	}
	// The API port's /readyz says what the health port's says.
	if code, body := tryGet("http://" + secondAddr + "/readyz"); code != http.StatusOK || !strings.Contains(body, "standing by") {
		t.Errorf("standby API /readyz = %d %s, want 200 standing by", code, body)
	}
	// Reads too: a standby has no stages, and an empty list would look like a promoter with none.
	for _, path := range []string{"/api/v1/stages", "/api/v1/stages/develop-frontend", "/api/v1/stages/develop-frontend/rollback"} {
		code, body := tryGet("http://" + secondAddr + path)
		if path == "/api/v1/stages/develop-frontend/rollback" {
			code, body = tryPost("http://"+secondAddr+path, "{}")
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "kubectl port-forward pod/") {
			t.Fatalf("standby %s = %d %s, want 503 naming the leader's pod", path, code, body)
		}
	}
	// The pipeline page: the standby's says which pod leads and how to reach it; the leader's
	// shows the stage.
	if code, body := tryGet("http://" + secondAddr + "/"); code != http.StatusOK || !strings.Contains(body, "Standby replica.") || !strings.Contains(body, "kubectl port-forward pod/") {
		t.Errorf("standby pipeline page = %d, want the leader's pod named:\n%s", code, body)
	}
	if code, body := tryGet("http://" + firstAddr + "/"); code != http.StatusOK || !strings.Contains(body, `id="stage-develop-frontend"`) {
		t.Errorf("leader pipeline page = %d, want develop-frontend's card:\n%s", code, body)
	}
	if _, ok := e.app(t, "develop-frontend").Object["operation"]; ok {
		t.Fatal("the Application got an operation while patches were failing")
	}

	// The leader dies between push and sync; the API server is reachable again for the next.
	stoppedAt := time.Now()
	if err := stopFirst(); err != nil {
		t.Fatal(err)
	}
	e.blockPatches.Store(false)
	e.waitSyncRequested(t, "develop-frontend", commit, logs)
	t.Logf("leader stopped → standby synced the pending commit: %s", time.Since(stoppedAt).Round(time.Millisecond))

	subjects, err := gitserver.GitOutput(context.Background(), e.bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	if subjects != "Promote image from 1.2.1 to 1.2.2\nSeed repository\n" {
		t.Errorf("git log after the takeover:\n%s\nwant exactly one promotion", subjects)
	}
	if _, ok := e.app(t, "develop-backend").Object["operation"]; ok {
		t.Error("the sibling Application develop-backend got an operation")
	}
}

// waitStage polls the API until develop-frontend's status satisfies ok.
func waitStage(t *testing.T, c *api.Client, logs *syncBuffer, what string, ok func(stage.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Stage(context.Background(), "develop-frontend")
		if err == nil && ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("develop-frontend never %s: %v %+v\n%s", what, err, st, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestController_ProbesTellAWedgedLeaderFromAStandby(t *testing.T) {
	e, err := stage.New(nil, stage.WithGit(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		leading            bool
		lastPass           time.Duration // ago
		wantLive, wantRead int
	}{
		{name: "standby", wantLive: http.StatusOK, wantRead: http.StatusOK},
		{name: "leader before its first pass", leading: true, lastPass: time.Second, wantLive: http.StatusOK, wantRead: http.StatusServiceUnavailable},
		{name: "leader whose passes stopped", leading: true, lastPass: time.Hour, wantLive: http.StatusServiceUnavailable, wantRead: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &controller{f: configFor("")}
			c.f.Interval = time.Minute
			c.leader.Store("promoter-0_abcd")
			if tt.leading {
				c.engine.Store(e)
				c.progress.Store(time.Now().Add(-tt.lastPass).UnixNano())
			}
			for _, p := range []struct {
				h    http.HandlerFunc
				want int
			}{{c.healthy, tt.wantLive}, {c.ready, tt.wantRead}} {
				rec := httptest.NewRecorder()
				p.h(rec, httptest.NewRequest(http.MethodGet, "/", nil))
				if rec.Code != p.want {
					t.Errorf("probe = %d %s, want %d", rec.Code, rec.Body.String(), p.want)
				}
			}
		})
	}
}

// Registry credentials come from the pull secret the Application's kropipe.io/pull-secrets
// names; when the registry's password and the Secret are rotated, the running leader uses the
// new credentials without a restart.
func TestController_PullSecretFromAnnotationAndItsRotation(t *testing.T) {
	reg := registrytest.StartPrivate(t, "robot", "first-pass")
	reg.Push(t, "team/frontend", "1.2.1", "1.2.2")
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "argocd"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: reg.DockerConfigJSON()},
	}
	e := newClusterEnvFor(t, reg.Host, map[string]any{"kropipe.io/pull-secrets": "regcred"}, secret)
	refresh := pullSecretRefresh
	pullSecretRefresh = 50 * time.Millisecond
	t.Cleanup(func() { pullSecretRefresh = refresh })
	addr, logs, _ := e.start(t, configFor(""))
	c := api.NewClient(addr, "", nil)
	ctx := context.Background()
	waitStage(t, c, logs, "promoted through the private registry", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })

	reg.SetPassword("second-pass")
	reg.Push(t, "team/frontend", "1.2.3")
	waitStage(t, c, logs, "refused with the old password", func(st stage.Status) bool {
		return st.Decision == stage.DecisionFailed && strings.Contains(st.Reason, "401")
	})
	secret.Data[corev1.DockerConfigJsonKey] = reg.DockerConfigJSON()
	if _, err := e.kube.CoreV1().Secrets("argocd").Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStage(t, c, logs, "promoted with the rotated Secret", func(st stage.Status) bool { return st.CurrentTag == "1.2.3" })
	for _, pw := range []string{"first-pass", "second-pass"} {
		if strings.Contains(logs.String(), pw) {
			t.Errorf("a registry password reached the logs")
		}
	}
}

// A commit elsewhere in the repository lands between the promotion and its verification; Argo
// CD then reports the Application at that later commit. It contains the promotion, so the
// freight is verified (and not left waiting for a revision Argo CD will never report again).
func TestController_VerifiesAtALaterCommitThatContainsThePromotion(t *testing.T) {
	e := newClusterEnv(t)
	c, logs, commit := e.startPromoted(t, configFor(""))

	ctx := context.Background()
	later, err := gitserver.GitOutput(ctx, e.bare, "commit-tree", "-p", commit, "-m", "Unrelated change", commit+"^{tree}")
	if err != nil {
		t.Fatal(err)
	}
	later = strings.TrimSpace(later)
	if err := gitserver.Git(ctx, e.bare, "update-ref", "refs/heads/main", later); err != nil {
		t.Fatal(err)
	}
	e.finishSyncAt(t, "develop-frontend", commit, later)
	waitStage(t, c, logs, "verified at the later commit", func(st stage.Status) bool {
		return st.VerifiedFreight != nil && st.VerifiedFreight.Value == "1.2.2"
	})
}

// targetRevision HEAD (Argo CD's default) means the repository's default branch, which the
// promoter asks the remote for as Argo CD does: here trunk, not main.
func TestController_TargetRevisionHEADIsTheRemoteDefaultBranch(t *testing.T) {
	e := newClusterEnv(t)
	ctx := context.Background()
	for _, args := range [][]string{{"branch", "trunk", "main"}, {"symbolic-ref", "HEAD", "refs/heads/trunk"}} {
		if err := gitserver.Git(ctx, e.bare, args...); err != nil {
			t.Fatal(err)
		}
	}
	app := e.app(t, "develop-frontend")
	_ = unstructured.SetNestedField(app.Object, "HEAD", "spec", "source", "targetRevision")
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(ctx, app, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mainBefore := head(t, e.bare)
	addr, logs, _ := e.start(t, configFor(""))
	waitStage(t, api.NewClient(addr, "", nil), logs, "promoted", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
	subject, err := gitserver.GitOutput(ctx, e.bare, "log", "-1", "--format=%s", "trunk")
	if err != nil || strings.TrimSpace(subject) != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("trunk's last commit %q, %v; want the promotion", subject, err)
	}
	if after := head(t, e.bare); after != mainBefore {
		t.Errorf("main moved to %s; the promotion belongs on the default branch trunk", after)
	}
}

// A registry's push notification makes the leader look at once: the poll interval is an hour,
// the promotion follows the notification within seconds. Without the secret nothing happens.
func TestController_RegistryNotificationTriggersThePass(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1")
	e := newClusterEnvFor(t, host, nil)
	f := configFor("")
	f.Interval = time.Hour
	f.WebhookAddr, f.WebhookSecret = addrtest.Free(t), "hook-secret\n"
	addr, logs, _ := e.start(t, f)
	c := api.NewClient(addr, "", nil)
	waitStage(t, c, logs, "first pass done at 1.2.1", func(st stage.Status) bool { return st.CurrentTag == "1.2.1" && !st.CheckedAt.IsZero() })

	registrytest.Push(t, host, "team/frontend", "1.2.2")
	body := fmt.Sprintf(`{"events":[{"action":"push","target":{"repository":"team/frontend","tag":"1.2.2"},"request":{"host":%q}}]}`, host)
	url := "http://" + f.WebhookAddr + "/webhook/registry"
	if code, answer := tryPostWith(url, body, "Bearer wrong"); code != http.StatusUnauthorized {
		t.Fatalf("notification without the secret: %d %s", code, answer)
	}
	// The handler counts a notification before it answers: a refused one has made nothing due.
	if _, m := get(t, "http://"+addr+"/metrics"); !strings.Contains(m, `kropipe_registry_notifications_total{result="refused"} 1`) || strings.Contains(m, `result="due"`) {
		t.Fatalf("after a notification without the secret, /metrics should count it refused and nothing due:\n%s", m)
	}
	sent := time.Now()
	code, answer := tryPostWith(url, body, "Bearer hook-secret")
	if code != http.StatusAccepted || !strings.Contains(answer, `"develop-frontend"`) {
		t.Fatalf("notification: %d %s", code, answer)
	}
	waitStage(t, c, logs, "promoted after the notification", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
	t.Logf("notification → promotion commit %s (poll interval %s)", time.Since(sent).Round(time.Millisecond), f.Interval)
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{`kropipe_registry_notifications_total{result="due"} 1`, `kropipe_registry_notifications_total{result="refused"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// tryPostWith posts JSON with an Authorization header (none when "").
func tryPostWith(url, body, authorization string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A notification that reaches the standby (a Service picks either pod) is passed on to the
// leader, whose listener its Lease advertises.
func TestController_StandbyPassesNotificationsOnToTheLeader(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1")
	e := newClusterEnvFor(t, host, nil)
	// Short passes: the leader re-advertises its listener before each, and the fake API server
	// lets a Lease renewal overwrite the annotation (a real one refuses the stale write).
	flags := func() *Config {
		f := configFor(addrtest.Free(t))
		f.WebhookAddr, f.WebhookSecret = addrtest.Free(t), "hook-secret"
		return f
	}
	first := flags()
	addr, logs, _ := e.start(t, first)
	c := api.NewClient(addr, "", nil)
	waitStage(t, c, logs, "first pass done at 1.2.1", func(st stage.Status) bool { return st.CurrentTag == "1.2.1" && !st.CheckedAt.IsZero() })
	second := flags()
	_, secondLogs, _ := e.start(t, second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, body := tryGet("http://" + second.HealthAddr + "/readyz"); code == http.StatusOK && strings.Contains(body, "standing by") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second replica never stood by\n%s", secondLogs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	registrytest.Push(t, host, "team/frontend", "1.2.2")
	// Retried on 503 as registries do: the leader may not have advertised its listener yet.
	for {
		code, answer := tryPostWith("http://"+second.WebhookAddr+"/webhook/registry", `{"image": "`+host+`/team/frontend:1.2.2"}`, "Bearer hook-secret")
		if code == http.StatusAccepted && strings.Contains(answer, `"develop-frontend"`) {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("notification to the standby: %d %s\n%s", code, answer, secondLogs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitStage(t, c, logs, "promoted by the leader after the standby passed the notification on", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
}

// The stage waiting for its Application is verified as soon as Argo CD reports the sync done,
// not at the next scheduled pass (an hour away here).
func TestController_VerifiesWhenTheAwaitedApplicationChanges(t *testing.T) {
	e := newClusterEnv(t)
	f := configFor("")
	f.Interval = time.Hour
	c, logs, commit := e.startPromoted(t, f)
	finished := time.Now()
	e.finishSync(t, "develop-frontend", commit)
	waitStage(t, c, logs, "verified", func(st stage.Status) bool { return st.VerifiedFreight != nil && st.VerifiedFreight.Commit == commit })
	t.Logf("Argo CD reports the sync done → verified in %s (poll interval %s)", time.Since(finished).Round(time.Millisecond), f.Interval)
}

// A promotion whose Application stays Degraded past --health-timeout fails, and with
// kropipe.io/auto-rollback the promoter commits the rollback itself.
func TestController_DegradedPastTheHealthTimeoutRollsBack(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	e := newClusterEnvFor(t, host, map[string]any{"kropipe.io/auto-rollback": "true"})
	f := configFor("")
	f.HealthTimeout = time.Second
	c, logs, commit := e.startPromoted(t, f)
	e.finishSync(t, "develop-frontend", commit)
	u := e.app(t, "develop-frontend")
	_ = unstructured.SetNestedField(u.Object, "Degraded", "status", "health", "status")
	_ = unstructured.SetNestedField(u.Object, "Deployment frontend exceeded its progress deadline", "status", "health", "message")
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	degraded := time.Now()
	waitStage(t, c, logs, "rolled back", func(st stage.Status) bool { return st.CurrentTag == "1.2.1" })
	subject, err := gitserver.GitOutput(context.Background(), e.bare, "log", "-1", "--format=%s%n%(trailers:key=Kropipe-Rejected,valueonly)", "main")
	if err != nil || strings.TrimSpace(subject) != "Roll back image from 1.2.2 to 1.2.1\n1.2.2" {
		t.Fatalf("last commit %q, %v; want the rollback rejecting 1.2.2", subject, err)
	}
	t.Logf("Degraded → rollback commit in %s (--health-timeout %s)", time.Since(degraded).Round(time.Millisecond), f.HealthTimeout)
}

// degrade plays Argo CD reporting the Application Degraded.
func (e clusterEnv) degrade(t *testing.T, name string) {
	t.Helper()
	u := e.app(t, name)
	_ = unstructured.SetNestedField(u.Object, "Degraded", "status", "health", "status")
	_ = unstructured.SetNestedField(u.Object, "Deployment frontend exceeded its progress deadline", "status", "health", "message")
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// An automatic rollback whose first attempt fails (Git refuses pushes for a while) is not
// forgotten: the stage's status shows it owed, with the refusal, and it lands once Git accepts
// pushes again — in the same process, or in the next one after a restart — exactly once.
func TestController_AutomaticRollbackRefusedByGitLandsLaterOnce(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "same process", true: "after a restart"}[restart], func(t *testing.T) {
			host := registrytest.Start(t)
			registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
			e := newClusterEnvFor(t, host, map[string]any{"kropipe.io/auto-rollback": "true"})
			f := configFor("")
			f.HealthTimeout = time.Second
			f.OwedBackoff = 100 * time.Millisecond
			addr, logs, stop := e.start(t, f)
			c := api.NewClient(addr, "", nil)
			waitStage(t, c, logs, "promoted", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
			commit := head(t, e.bare)
			e.waitSyncRequested(t, "develop-frontend", commit, logs)
			e.finishSync(t, "develop-frontend", commit)
			refusePushes(t, e.git)
			e.degrade(t, "develop-frontend")
			waitStage(t, c, logs, "owing the rollback", func(st stage.Status) bool {
				return len(st.Owed) == 1 && st.Owed[0].From == "1.2.2" && st.Owed[0].Attempts >= 2 && strings.Contains(st.Owed[0].LastError, "pushes to main are frozen")
			})
			if restart {
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				addr, logs, _ = e.start(t, f)
				c = api.NewClient(addr, "", nil)
			}
			acceptPushes(t, e.git)
			waitStage(t, c, logs, "rolled back", func(st stage.Status) bool { return st.CurrentTag == "1.2.1" && len(st.Owed) == 0 })
			if got := rollbackSubjects(t, e.bare); len(got) != 1 || got[0] != "Roll back image from 1.2.2 to 1.2.1" {
				t.Fatalf("rollback commits %q; want exactly one", got)
			}
		})
	}
}

func rollbackSubjects(t *testing.T, bare string) []string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	var rs []string
	for _, s := range strings.Split(out, "\n") {
		if strings.HasPrefix(s, "Roll back") {
			rs = append(rs, s)
		}
	}
	return rs
}

// A verification Job that fails after the Application is Synced and Healthy fails the stage
// with the pod's log, raises an Event, and with kropipe.io/auto-rollback the promoter commits
// the rollback rejecting the value.
func TestController_FailedVerificationJobRollsBack(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	e := newClusterEnvFor(t, host, map[string]any{"kropipe.io/auto-rollback": "true", "kropipe.io/verify-job": "verify"})
	f := configFor("")
	c, logs, commit := e.startPromoted(t, f)
	e.finishSync(t, "develop-frontend", commit)
	ctx := context.Background()
	jobs := e.kube.BatchV1().Jobs("frontend-develop")
	var job *batchv1.Job
	deadline := time.Now().Add(30 * time.Second)
	for job == nil {
		list, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: verify.LabelStage + "=develop-frontend"})
		if err == nil && len(list.Items) == 1 {
			job = &list.Items[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("no verification Job: %v %v\n%s", list, err, logs.String())
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if env := job.Spec.Template.Spec.Containers[0].Env; !slices.Contains(env, corev1.EnvVar{Name: "KROPIPE_VALUE", Value: "1.2.2"}) || !slices.Contains(env, corev1.EnvVar{Name: "KROPIPE_COMMIT", Value: commit}) || !slices.Contains(env, corev1.EnvVar{Name: "KROPIPE_PREVIOUS", Value: "1.2.1"}) {
		t.Errorf("Job env %v", env)
	}
	waitStage(t, c, logs, "verifying", func(st stage.Status) bool {
		return st.Verification != nil && st.Verification.Phase == "Running" && strings.Contains(st.Reason, "verifying: job "+job.Name+" (running")
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-abcde", Namespace: "frontend-develop", Labels: map[string]string{"job-name": job.Name}}, Status: corev1.PodStatus{Phase: corev1.PodFailed}}
	if _, err := e.kube.CoreV1().Pods("frontend-develop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}
	if _, err := jobs.UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStage(t, c, logs, "rolled back", func(st stage.Status) bool { return st.CurrentTag == "1.2.1" })
	subject, err := gitserver.GitOutput(ctx, e.bare, "log", "-1", "--format=%s%n%(trailers:key=Kropipe-Rejected,valueonly)", "main")
	if err != nil || strings.TrimSpace(subject) != "Roll back image from 1.2.2 to 1.2.1\n1.2.2" {
		t.Fatalf("last commit %q, %v; want the rollback rejecting 1.2.2", subject, err)
	}
	events, err := e.kube.CoreV1().Events("argocd").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events.Items, func(ev corev1.Event) bool {
		return strings.Contains(ev.Message, "verification failed for 1.2.2: job "+job.Name+" failed (BackoffLimitExceeded: Job has reached the specified backoff limit); log: fake logs")
	}) {
		t.Errorf("no Event with the failed verification and its log: %v", events.Items)
	}
	if n, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: verify.LabelFreight + "=" + job.Labels[verify.LabelFreight]}); err != nil || len(n.Items) != 1 {
		t.Errorf("Jobs for the failed freight: %v, %v; want the one", n, err)
	}
}

// promoter verify STAGE deletes the verification Job of the value the stage runs and forgets
// the verdict: the next pass creates a new Job, and the stage waits for it.
func TestController_VerifyRunsTheVerificationAgain(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	e := newClusterEnvFor(t, host, map[string]any{"kropipe.io/verify-job": "verify"})
	c, logs, commit := e.startPromoted(t, configFor(""))
	e.finishSync(t, "develop-frontend", commit)
	ctx := context.Background()
	jobs := e.kube.BatchV1().Jobs("frontend-develop")
	// waitJob waits for the n-th Job creation and returns the Job.
	waitJob := func(n int) *batchv1.Job {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			created := 0
			for _, a := range e.kube.Actions() {
				if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
					created++
				}
			}
			list, err := jobs.List(ctx, metav1.ListOptions{})
			if err == nil && created == n && len(list.Items) == 1 {
				return &list.Items[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("Job creation %d never came (%d created): %v\n%s", n, created, err, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	complete := func(j *batchv1.Job) {
		t.Helper()
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		if _, err := jobs.UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	complete(waitJob(1))
	verified := func(st stage.Status) bool {
		return st.VerifiedFreight != nil && st.VerifiedFreight.Value == "1.2.2" && st.Verification != nil && st.Verification.Phase == "Passed"
	}
	waitStage(t, c, logs, "verified", verified)
	v, err := c.Reverify(ctx, "develop-frontend")
	if err != nil || v != "1.2.2" {
		t.Fatalf("Reverify = %q, %v", v, err)
	}
	j := waitJob(2)
	waitStage(t, c, logs, "verifying again", func(st stage.Status) bool {
		return st.VerifiedFreight == nil && strings.Contains(st.Reason, "verifying: job "+j.Name)
	})
	complete(j)
	waitStage(t, c, logs, "verified again", verified)
}
