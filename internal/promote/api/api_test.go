package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEngine returns a real engine on a git http-backend server and an in-memory
// registry holding frontend 1.2.1 and 1.2.2, with the first pass done.
func newEngine(t *testing.T, extra ...stage.Spec) *stage.Engine {
	t.Helper()
	return newEngineWith(t, nil, extra...)
}

// newEngineWith is newEngine with develop-frontend's spec changed by edit.
func newEngineWith(t *testing.T, edit func(*stage.Spec), extra ...stage.Spec) *stage.Engine {
	t.Helper()
	return newEngineWithOptions(t, edit, nil, extra...)
}

// newEngineWithOptions is newEngineWith with more engine options (a store).
func newEngineWithOptions(t *testing.T, edit func(*stage.Spec), opts []stage.Option, extra ...stage.Spec) *stage.Engine {
	t.Helper()
	srv := gitserver.StartTB(t)
	if _, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	wh, err := warehouse.New(warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true}), warehouse.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	specs := append([]stage.Spec{{
		Name: "develop-frontend", Image: host + "/team/frontend", Constraint: "^1.2",
		RepoURL: srv.URL("gitops.git"), File: "develop/frontend/instance.yaml", AutoPromote: false,
	}}, extra...)
	if edit != nil {
		edit(&specs[0])
	}
	e, err := stage.New(specs, append([]stage.Option{stage.WithWarehouse(wh), stage.WithGit(t.TempDir()), stage.WithLogger(quiet())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestAPI_ReadyOnlyAfterFirstPassAndStatusIsJSON(t *testing.T) {
	e := newEngine(t)
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	if code := get(t, ts.URL+"/readyz", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before the first pass: %d", code)
	}
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := get(t, ts.URL+"/readyz", nil); code != http.StatusOK {
		t.Fatalf("readyz: %d", code)
	}
	if code := get(t, ts.URL+"/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	var list StageList
	if code := get(t, ts.URL+"/api/v1/stages", &list); code != http.StatusOK || len(list.Stages) != 1 {
		t.Fatalf("stages: %d %+v", code, list)
	}
	st := list.Stages[0]
	if st.Name != "develop-frontend" || st.CurrentTag != "1.2.1" || st.Decision != stage.DecisionWait || st.Reason != "waiting for approval of 1.2.2" || st.Candidate == nil || st.Candidate.Tag != "1.2.2" {
		t.Fatalf("status %+v", st)
	}
	var e404 Error
	if code := get(t, ts.URL+"/api/v1/stages/nope", &e404); code != http.StatusNotFound || !strings.Contains(e404.Error, `"nope"`) {
		t.Fatalf("unknown stage: %d %+v", code, e404)
	}
}

func TestAPI_ActionsThroughTheClient(t *testing.T) {
	e := newEngine(t)
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "", nil)
	if err := c.Pause(ctx, "develop-frontend", true); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Stage(ctx, "develop-frontend"); err != nil || !st.Paused {
		t.Fatalf("after pause: %+v, %v", st, err)
	}
	if err := c.Pause(ctx, "develop-frontend", false); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Approve(ctx, "develop-frontend", "", "1.2.1"); err != nil || v != "1.2.2" {
		t.Fatalf("approve: %q, %v", v, err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := c.Rollback(ctx, "develop-frontend", "", "1.2.2")
	if err != nil || out.Old != "1.2.2" || out.New != "1.2.1" || out.Kind != "rollback" {
		t.Fatalf("rollback: %+v, %v", out, err)
	}
	out, err = c.Promote(ctx, "develop-frontend", "1.2.2", "1.2.1")
	if err != nil || out.New != "1.2.2" || out.Commit == "" {
		t.Fatalf("promote: %+v, %v", out, err)
	}
	if _, err := c.Promote(ctx, "develop-frontend", "1.9.9", ""); err == nil || !strings.Contains(err.Error(), "1.9.9") {
		t.Fatalf("promote of a missing tag: %v", err)
	}
	h, err := c.History(ctx, "develop-frontend")
	// Three commits, and the approval that let the first promotion happen (listed after it
	// when both fall in the same second: Git keeps seconds).
	if err != nil || len(h.Entries) != 4 || h.Entries[3].Kind != KindApprove || h.Entries[3].Value != "1.2.2" {
		t.Fatalf("history: %+v, %v", h, err)
	}
	if h.Entries[0].Subject != "Promote image from 1.2.1 to 1.2.2" || h.Entries[1].Kind != "rollback" || h.Entries[1].Rejected != "1.2.2" {
		t.Fatalf("history entries %+v", h.Entries)
	}
	if _, err := c.Stages(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAPI_MutatingCallsNeedTheTokenWhenRequired(t *testing.T) {
	e := newEngine(t)
	ts := httptest.NewServer(New(e, WithToken("t0ken"), WithRequireToken(true), WithLogger(quiet())))
	defer ts.Close()
	ctx := context.Background()
	addr := strings.TrimPrefix(ts.URL, "http://")
	tests := []struct {
		name, token string
		ok          bool
	}{
		{"no token", "", false},
		{"wrong token", "guess", false},
		{"right token", "t0ken", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewClient(addr, tt.token, nil).Pause(ctx, "develop-frontend", true)
			if tt.ok != (err == nil) {
				t.Fatalf("pause with %q: %v", tt.token, err)
			}
			if err != nil && strings.Contains(err.Error(), "t0ken") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}
	// The token counts only as a bearer token, the scheme the API answers with.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/stages/develop-frontend/pause", strings.NewReader(`{"paused":true}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the token without \"Bearer \": %d, want 401", resp.StatusCode)
	}
	// Reading needs no token.
	if _, err := NewClient(addr, "", nil).Stages(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAPI_ErrorsNeverCarryGitPasswords(t *testing.T) {
	e := newEngine(t, stage.Spec{Name: "secret-stage", Image: "127.0.0.1:1/team/x", RepoURL: "http://bob:hunter2@127.0.0.1:1/gitops.git", File: "x/instance.yaml", AutoPromote: true})
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/stages/secret-stage/history")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "hunter2") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_ = e.Reconcile(context.Background())
	resp, err = http.Get(ts.URL + "/api/v1/stages")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "hunter2") {
		t.Fatalf("status leaks the password: %s", body)
	}
}

func TestAPI_BadBodyIsRefusedWithAnExample(t *testing.T) {
	e := newEngine(t)
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/api/v1/stages/develop-frontend/promote", "application/json", strings.NewReader(`{"tga": "1.2.2"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e400 Error
	_ = json.NewDecoder(resp.Body).Decode(&e400)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e400.Error, `{"tag": "1.2.2", "expect": "1.2.1"}`) {
		t.Fatalf("%d %+v", resp.StatusCode, e400)
	}
}

func get(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// POST /api/v1/stages/{name}/verify makes the next pass run the stage's verify command again
// for the tag it runs, and only then.
func TestAPI_VerifyRunsTheVerificationAgain(t *testing.T) {
	log := filepath.Join(t.TempDir(), "verified")
	e := newEngineWith(t, func(s *stage.Spec) {
		s.Verify = &stage.VerifySpec{Command: []string{"sh", "-c", `echo "$KROPIPE_TAG" >> "$0"`, log}}
	})
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	ctx := context.Background()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "", nil)
	runs := func() string {
		data, _ := os.ReadFile(log)
		return strings.TrimSpace(string(data))
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Approve(ctx, "develop-frontend", "1.2.2", ""); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := runs(); got != "1.2.2" {
		t.Fatalf("verify command ran for %q, want once for 1.2.2", got)
	}
	if v, err := c.Reverify(ctx, "develop-frontend"); err != nil || v != "1.2.2" {
		t.Fatalf("Reverify = %q, %v", v, err)
	}
	for range 2 {
		if err := e.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := runs(); got != "1.2.2\n1.2.2" {
		t.Fatalf("verify command ran for %q, want twice for 1.2.2", got)
	}
	if _, err := c.Reverify(ctx, "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Reverify of an unknown stage: %v", err)
	}
}

func TestAPI_TagsSayWhyEachIsOrIsNotACandidate(t *testing.T) {
	e := newEngine(t)
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	var tags Tags
	if code := get(t, ts.URL+"/api/v1/stages/develop-frontend/tags", &tags); code != http.StatusOK {
		t.Fatalf("tags: %d", code)
	}
	if len(tags.Tags) != 2 || tags.Tags[0] != (warehouse.TagVerdict{Tag: "1.2.2", Candidate: true, Reason: "within ^1.2; the highest is taken"}) {
		t.Fatalf("tags %+v", tags)
	}
	if code := get(t, ts.URL+"/api/v1/stages/nope/tags", nil); code != http.StatusNotFound {
		t.Fatalf("tags of an unknown stage: %d", code)
	}
}
