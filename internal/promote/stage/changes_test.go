package stage

import (
	"context"
	"errors"
	"testing"
)

// TestSubscribe_PassesAndActionsWakeBoundedSubscribers: the pipeline page's live updates
// come from these wake-ups; a burst is one wake-up, and watchers are bounded.
func TestSubscribe_PassesAndActionsWakeBoundedSubscribers(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	changed, stop, err := e.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Pause(ctx, "develop-frontend"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("no wake-up after a pass and a pause")
	}
	select {
	case <-changed:
		t.Fatal("a burst of changes woke the subscriber twice")
	default:
	}
	stop()
	stop() // ending twice is harmless
	var stops []func()
	for range MaxSubscribers {
		_, s, err := e.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, s)
	}
	if _, _, err := e.Subscribe(); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("subscriber %d: %v, want ErrTooManySubscribers", MaxSubscribers+1, err)
	}
	stops[0]()
	if _, _, err := e.Subscribe(); err != nil {
		t.Fatalf("after one left: %v", err)
	}
}
