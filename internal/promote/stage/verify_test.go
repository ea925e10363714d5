package stage

import (
	"context"
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
