package controller

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

func TestOwedBackoff_DoublesToFiveMinutesAndStaysThere(t *testing.T) {
	tests := []struct {
		attempts int
		want     time.Duration
	}{
		{1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {4, 80 * time.Second},
		{5, 160 * time.Second}, {6, 5 * time.Minute}, {7, 5 * time.Minute}, {100, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := owedDelay(OwedBackoff, tt.attempts); got != tt.want {
			t.Errorf("after %d failed attempts: wait %s, want %s", tt.attempts, got, tt.want)
		}
	}
}

// refusePushes makes the Git server refuse every push to gitops.git, as a frozen branch does.
func refusePushes(t *testing.T, srv *gitserver.Server) {
	t.Helper()
	if err := srv.InstallHook("gitops.git", "pre-receive", "#!/bin/sh\necho 'pushes to main are frozen' >&2\nexit 1\n"); err != nil {
		t.Fatal(err)
	}
}

func acceptPushes(t *testing.T, srv *gitserver.Server) {
	t.Helper()
	if err := srv.RemoveHook("gitops.git", "pre-receive"); err != nil {
		t.Fatal(err)
	}
}

// refusingStore is a MemoryStore whose saves fail while refuse is set, as the shard store's do
// once the pass lost its shard.
type refusingStore struct {
	stage.MemoryStore
	refuse atomic.Bool
}

func (s *refusingStore) Save(ctx context.Context, st stage.State) error {
	if s.refuse.Load() {
		return errors.New("shard 3 is no longer held here")
	}
	return s.MemoryStore.Save(ctx, st)
}

// owedEnv is a real engine running develop-frontend at 1.2.2 (promoted from 1.2.1), its Git
// server, and the state store a restarted engine would read.
type owedEnv struct {
	srv       *gitserver.Server
	bare      string
	store     *refusingStore
	newEngine func() *stage.Engine
}

func newOwedEnv(t *testing.T, opts ...gitserver.Option) owedEnv {
	t.Helper()
	ctx := context.Background()
	srv := gitserver.StartTB(t, opts...)
	bare, err := srv.NewBareRepo(ctx, "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	store := &refusingStore{}
	newEngine := func() *stage.Engine {
		wh, err := warehouse.New(warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true}), warehouse.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		e, err := stage.New([]stage.Spec{{
			Name: "develop-frontend", Image: host + "/team/frontend", Constraint: "^1.2",
			RepoURL: srv.URL("gitops.git"), File: "develop/frontend/instance.yaml",
		}}, stage.WithWarehouse(wh), stage.WithGit(t.TempDir()), stage.WithStore(store), stage.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := newEngine()
	if _, err := e.Promote(ctx, "develop-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	return owedEnv{srv: srv, bare: bare, store: store, newEngine: func() *stage.Engine {
		e := newEngine()
		if err := e.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		return e
	}}
}

func (o owedEnv) rollbackCommits(t *testing.T) []string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), o.bare, "log", "--format=%s", "main")
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

// An automatic rollback whose push Git refuses is owed: kept in the State with its attempts,
// last error and next attempt, tried again after OwedBackoff (not before), by a restarted
// engine too, and lands exactly once; an owed rollback that already landed is done without a
// second commit.
func TestRollbacks_FailedAutomaticRollbackIsOwedUntilItLandsOnce(t *testing.T) {
	ctx := context.Background()
	env := newOwedEnv(t)
	e := env.newEngine()
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	r := &rollbacks{clock: clk, backoff: OwedBackoff, log: slog.New(slog.DiscardHandler)}
	failed := argocd.Failure{Stage: "develop-frontend", Value: "1.2.2", AutoRollback: true, Err: errors.New("verification failed for 1.2.2")}

	refusePushes(t, env.srv)
	if left := r.owe(ctx, e, []argocd.Failure{failed}); len(left) != 0 {
		t.Fatalf("failures not recorded: %v", left)
	}
	owed, next := r.settle(ctx, e)
	a := owed["develop-frontend"]
	if len(a) != 1 || a[0].From != "1.2.2" || a[0].Attempts != 1 || !a[0].NextAttempt.Equal(t0.Add(10*time.Second)) ||
		!strings.Contains(a[0].LastError, "frozen") || !next.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("after a refused push: owed %+v, next %s; want one rollback from 1.2.2, attempt 1, next in 10s, the refusal as last error", a, next)
	}
	if stored, _ := e.Owed(ctx); len(stored["develop-frontend"]) != 1 || stored["develop-frontend"][0].Attempts != 1 {
		t.Fatalf("the State holds %+v; want the owed rollback with its attempt", stored)
	}

	pushes := env.srv.Pushes("gitops.git")
	clk.Step(5 * time.Second)
	r.settle(ctx, e)
	if got := env.srv.Pushes("gitops.git"); got != pushes {
		t.Fatalf("an attempt before its back-off ended: %d pushes, want %d", got, pushes)
	}
	clk.Step(5 * time.Second)
	owed, _ = r.settle(ctx, e)
	if a := owed["develop-frontend"]; len(a) != 1 || a[0].Attempts != 2 || !a[0].NextAttempt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("second refused attempt: %+v; want attempt 2, next 20s later", a)
	}

	// The process restarts (a new engine on the same State) and Git accepts pushes again.
	acceptPushes(t, env.srv)
	restarted := env.newEngine()
	r = &rollbacks{clock: clk, backoff: OwedBackoff, log: slog.New(slog.DiscardHandler)}
	clk.Step(20 * time.Second)
	owed, next = r.settle(ctx, restarted)
	if len(owed) != 0 || !next.IsZero() {
		t.Fatalf("after the rollback landed: owed %+v, next %s; want nothing", owed, next)
	}
	if got := env.rollbackCommits(t); len(got) != 1 || got[0] != "Roll back image from 1.2.2 to 1.2.1" {
		t.Fatalf("rollback commits %q; want exactly one", got)
	}
	if st, _ := restarted.StatusOf("develop-frontend"); st.CurrentTag != "1.2.1" {
		t.Fatalf("status after the rollback: %+v", st)
	}

	// An attempt landed but its success was never recorded (the process died right after the
	// push): the owed rollback is tried again, finds the stage moved, and is done — no second
	// rollback.
	if err := restarted.UpdateOwed(ctx, func(o map[string][]stage.OwedAction) {
		o["develop-frontend"] = []stage.OwedAction{{Kind: "rollback", From: "1.2.2", Since: t0, NextAttempt: t0}}
	}); err != nil {
		t.Fatal(err)
	}
	if owed, _ := r.settle(ctx, restarted); len(owed) != 0 {
		t.Fatalf("owed after a retry of a landed rollback: %+v", owed)
	}
	if got := env.rollbackCommits(t); len(got) != 1 {
		t.Fatalf("rollback commits %q; want still exactly one", got)
	}
}

// A failure whose owed rollback cannot be recorded (the pass lost its shard) goes back to the
// health gate, which hands it over again after the next pass: it is never dropped.
func TestRollbacks_UnrecordedFailureGoesBackToTheGate(t *testing.T) {
	ctx := context.Background()
	env := newOwedEnv(t)
	e := env.newEngine()
	r := &rollbacks{clock: clocktesting.NewFakeClock(time.Now()), backoff: OwedBackoff, log: slog.New(slog.DiscardHandler)}
	hg := argocd.NewHealthGate(nil, nil)
	failed := argocd.Failure{Stage: "develop-frontend", Value: "1.2.2", AutoRollback: true, Err: errors.New("application unhealthy after promotion")}

	env.store.refuse.Store(true)
	left := r.owe(ctx, e, []argocd.Failure{failed})
	if len(left) != 1 {
		t.Fatalf("unrecorded failures %v; want the one", left)
	}
	hg.ReturnFailures(left...)
	env.store.refuse.Store(false)
	again := hg.TakeFailures()
	if len(again) != 1 || again[0].Stage != "develop-frontend" {
		t.Fatalf("the gate hands over %v after the failure went back; want it again", again)
	}
	if left := r.owe(ctx, e, again); len(left) != 0 {
		t.Fatalf("still unrecorded: %v", left)
	}
	if owed, _ := e.Owed(ctx); len(owed["develop-frontend"]) != 1 {
		t.Fatalf("owed %v; want the rollback from 1.2.2", owed)
	}
}
