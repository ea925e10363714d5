package stage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// gateVerifier stands in for the Argo CD verifier: pending until opened.
type gateVerifier struct {
	mu   sync.Mutex
	open bool
}

func (g *gateVerifier) Verify(context.Context, Spec, freight.Freight, string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return ErrPending
	}
	return nil
}

func TestReconcile_PendingVerificationHoldsDownstreamUntilVerified(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream = "develop-frontend"
	gate := &gateVerifier{}
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), staging}, WithVerifier(gate))
	ctx := context.Background()
	for range 2 {
		if err := e.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := mustStatus(t, e, "develop-frontend"); st.Reason != "up to date at 1.2.2; verification pending" {
		t.Fatalf("develop %+v", st)
	}
	if st := mustStatus(t, e, "staging-frontend"); st.Decision != DecisionWait || st.Reason != "waiting for develop-frontend to verify 1.2.2" {
		t.Fatalf("staging %+v", st)
	}
	gate.mu.Lock()
	gate.open = true
	gate.mu.Unlock()
	f.clock.Step(time.Second)
	// develop is verified first in the pass, so staging takes 1.2.2 in the same pass.
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"Promote image from 1.2.0 to 1.2.2", "Promote image from 1.2.1 to 1.2.2"}
	if got := f.subjects(); !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
}

// blockingVerifier blocks every verification until release is closed.
type blockingVerifier struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingVerifier) Verify(ctx context.Context, _ Spec, _ freight.Freight, _ string) error {
	b.once.Do(func() { close(b.started) })
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestPause_DuringALongVerificationNeitherWaitsNorIsLost(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	v := &blockingVerifier{started: make(chan struct{}), release: make(chan struct{})}
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), f.spec("prod-frontend", "prod/frontend", "frontend")}, WithVerifier(v))
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- e.Reconcile(ctx) }()
	<-v.started
	// The pass is stuck in verification; pausing must not wait for it.
	if err := e.Pause(ctx, "prod-frontend"); err != nil {
		t.Fatal(err)
	}
	close(v.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := f.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Paused["prod-frontend"]; !ok {
		t.Fatal("the pass overwrote the pause made while it ran")
	}
	if len(st.Verifications["develop-frontend"]) != 1 || len(st.Verifications["prod-frontend"]) != 1 {
		t.Fatalf("verifications %+v", st.Verifications)
	}
}

// recordingVerifier verifies everything and remembers what it was asked.
type recordingVerifier struct {
	mu    sync.Mutex
	calls []string // "value@commit"
}

func (r *recordingVerifier) Verify(_ context.Context, s Spec, f freight.Freight, commit string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, f.Value(s.Strategy)+"@"+commit)
	return nil
}

func (r *recordingVerifier) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// A rollback writes freight the stage already verified; the verifier (which in the Argo CD
// mode is what syncs the Application) must still see the rollback commit, once.
func TestRollback_ToVerifiedFreightIsVerifiedAtTheRollbackCommit(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1")
	v := &recordingVerifier{}
	specs := []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")}
	e := f.engine(specs, WithVerifier(v))
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	f.reg.push(t, "team/frontend", "1.2.2")
	f.clock.Step(time.Minute)
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Minute)
	out, err := e.Rollback(ctx, "develop-frontend", "")
	if err != nil {
		t.Fatal(err)
	}
	calls := v.Calls()
	if len(calls) != 3 || calls[2] != "1.2.1@"+out.Commit {
		t.Fatalf("verifier calls %q; want 1.2.1 verified at the start, 1.2.2 after its promotion, then 1.2.1 at the rollback commit %s", calls, out.Commit)
	}
	// Verified at that commit now: neither the next pass nor a restarted engine asks again.
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.engine(specs, WithVerifier(v)).Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.Calls(); len(got) != 3 {
		t.Fatalf("verifier asked again after the rollback was verified: %q", got)
	}
}

// clusterVerifier plays the Argo CD mode's gate: verification runs somewhere else, fails for
// the values in fail, and reports its runs (stage.RunReporter).
type clusterVerifier struct {
	mu   sync.Mutex
	fail map[string]bool
	runs map[string]VerificationRun
}

func (c *clusterVerifier) Verify(_ context.Context, s Spec, f freight.Freight, commit string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	run := VerificationRun{Value: f.Value(s.Strategy), Freight: f.ID(), Commit: commit, Phase: "Passed", Message: "job smoke completed", Started: t0}
	if c.fail[run.Value] {
		run.Phase, run.Message, run.Log = "Failed", "job smoke failed (BackoffLimitExceeded)", "GET /healthz: 500"
	}
	c.runs[s.Name] = run
	if run.Phase == "Failed" {
		return errors.New(run.Message)
	}
	return nil
}

func (c *clusterVerifier) LastRun(stage string) (VerificationRun, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.runs[stage]
	return r, ok
}

// A failed verification in the cluster is kept in the State: a restarted engine shows it, and
// once the value is rolled back the stage says why.
func TestReconcile_FailedVerificationRunIsKeptAndExplainsTheRollback(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	specs := []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")}
	v := &clusterVerifier{fail: map[string]bool{"1.2.2": true}, runs: map[string]VerificationRun{}}
	ctx := context.Background()
	if err := f.engine(specs, WithVerifier(v)).Reconcile(ctx); err == nil {
		t.Fatal("the pass promoting 1.2.2 succeeded; its verification failed")
	}
	st, err := f.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failed := v.runs["develop-frontend"]
	run, ok := st.SettledRun("develop-frontend", failed.Freight, failed.Commit)
	if !ok || run.Value != "1.2.2" || run.Log != "GET /healthz: 500" {
		t.Fatalf("runs kept %+v, want 1.2.2's failure with its log", st.Runs)
	}
	// The verdict judged 1.2.2 at its promotion commit: the same freight promoted again
	// later, at another commit, is judged anew.
	if run, ok := st.SettledRun("develop-frontend", failed.Freight, "another-commit"); ok {
		t.Fatalf("SettledRun at another commit = %+v, want no verdict", run)
	}

	// A restarted engine, whose verifier (a new leader's gate) has seen nothing yet.
	restarted := &clusterVerifier{fail: map[string]bool{"1.2.2": true}, runs: map[string]VerificationRun{}}
	e := f.engine(specs, WithVerifier(restarted))
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustStatus(t, e, "develop-frontend").Verification; got == nil || got.Phase != "Failed" || got.Value != "1.2.2" {
		t.Fatalf("Verification after a restart = %+v, want 1.2.2 Failed", got)
	}
	f.clock.Step(time.Minute)
	if _, err := e.Rollback(ctx, "develop-frontend", ""); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Minute)
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got := mustStatus(t, e, "develop-frontend")
	want := "up to date at 1.2.1; 1.2.2 was rolled back here (1.2.2 failed verification: job smoke failed (BackoffLimitExceeded)); log: GET /healthz: 500"
	if got.Reason != want {
		t.Fatalf("reason %q, want %q", got.Reason, want)
	}
	if got.Verification == nil || got.Verification.Value != "1.2.1" || got.Verification.Phase != "Passed" {
		t.Fatalf("Verification = %+v, want the rollback's 1.2.1 Passed", got.Verification)
	}
	// promoter verify forgets the runs of the value it verifies again.
	if _, err := e.Reverify(ctx, "develop-frontend"); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.store.Load(ctx); len(st.Runs["develop-frontend"]) != 1 || st.Runs["develop-frontend"][0].Value != "1.2.2" {
		t.Fatalf("runs after promoter verify: %+v, want only 1.2.2's", st.Runs["develop-frontend"])
	}
}

// countingStore counts saves.
type countingStore struct {
	MemoryStore
	saves int
}

func (c *countingStore) Save(ctx context.Context, s State) error {
	c.saves++
	return c.MemoryStore.Save(ctx, s)
}

// runningVerifier reports a verification still running, its elapsed time growing each pass.
type runningVerifier struct {
	passes int
	id     string
}

func (r *runningVerifier) Verify(_ context.Context, _ Spec, f freight.Freight, _ string) error {
	r.passes++
	r.id = f.ID()
	return ErrPending
}

func (r *runningVerifier) LastRun(string) (VerificationRun, bool) {
	return VerificationRun{Value: "1.2.1", Freight: r.id, Phase: "Running", Message: fmt.Sprintf("job smoke (running %ds)", r.passes)}, true
}

// A run still going is kept once, not rewritten every pass because its elapsed time changed:
// in the cluster each save is a ConfigMap update.
func TestReconcile_RunningVerificationIsSavedOnce(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1")
	store := &countingStore{}
	v := &runningVerifier{}
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")}, WithVerifier(v), WithStore(store))
	ctx := context.Background()
	for range 3 {
		if err := e.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if v.passes != 3 || store.saves != 1 {
		t.Fatalf("%d verifications, %d saves; want 3 and 1", v.passes, store.saves)
	}
	if got := mustStatus(t, e, "develop-frontend").Verification; got == nil || got.Phase != "Running" {
		t.Fatalf("Verification = %+v, want the running one", got)
	}
}
