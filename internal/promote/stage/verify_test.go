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
