package leader_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kropipe/kropipe/internal/promote/leader"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// candidate is one replica: it records when its work runs.
type candidate struct {
	id      string
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run returned
	log     *timeline
	seen    chan string // leaders observed, from OnNewLeader
}

// timeline records start/stop of every leader's work in order, to check they never overlap.
type timeline struct {
	mu      sync.Mutex
	events  []string
	leading map[string]bool
	overlap bool
	started chan string
}

func newTimeline() *timeline {
	return &timeline{leading: map[string]bool{}, started: make(chan string, 10)}
}

func (tl *timeline) start(id string) {
	tl.mu.Lock()
	for other, on := range tl.leading {
		if on && other != id {
			tl.overlap = true
		}
	}
	tl.leading[id] = true
	tl.events = append(tl.events, "start "+id)
	tl.mu.Unlock()
	tl.started <- id
}

func (tl *timeline) stop(id string) {
	tl.mu.Lock()
	tl.leading[id] = false
	tl.events = append(tl.events, "stop "+id)
	tl.mu.Unlock()
}

// fastConfig shortens the durations for tests; the Lease keeps its duration in whole seconds,
// so 1s is the shortest that means anything.
func fastConfig(c *fake.Clientset, id string) leader.Config {
	// The LeaseDuration-RenewDeadline gap is the margin against overlap; 1s proved too thin on a
	// loaded 2-core CI machine, where the cut-off leader noticed a few hundred ms late. (This
	// test once failed with a takeover 1.2s after the cut-off: client-go's ReleaseOnCancel had
	// released the lost lease before the work stopped; Run no longer uses it.)
	return leader.Config{
		Client: c, Namespace: "argocd", Identity: id, Logger: quiet,
		LeaseDuration: 4 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond,
	}
}

func startCandidate(t *testing.T, c *fake.Clientset, id string, tl *timeline) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cd := &candidate{id: id, cancel: cancel, stopped: make(chan struct{}), log: tl, seen: make(chan string, 10)}
	cfg := fastConfig(c, id)
	cfg.OnNewLeader = func(leader string) { cd.seen <- leader }
	go func() {
		defer close(cd.stopped)
		err := leader.Run(ctx, cfg, func(ctx context.Context) {
			tl.start(id)
			<-ctx.Done()
			// Finishing a push takes a moment; the next leader must not start meanwhile.
			time.Sleep(50 * time.Millisecond)
			tl.stop(id)
		}, nil)
		if err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-cd.stopped })
	return cd
}

func waitLeader(t *testing.T, tl *timeline) string {
	t.Helper()
	select {
	case id := <-tl.started:
		return id
	case <-time.After(20 * time.Second):
		t.Fatal("no candidate became leader")
		return ""
	}
}

func holder(t *testing.T, c *fake.Clientset) string {
	t.Helper()
	l, err := c.CoordinationV1().Leases("argocd").Get(context.Background(), leader.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func TestRun_ExactlyOneLeadsAndTheOtherTakesOverOnShutdown(t *testing.T) {
	c := fake.NewClientset()
	tl := newTimeline()
	cands := map[string]*candidate{
		"promoter-a": startCandidate(t, c, "promoter-a", tl),
		"promoter-b": startCandidate(t, c, "promoter-b", tl),
	}
	first := waitLeader(t, tl)
	if h := holder(t, c); h != first {
		t.Errorf("Lease holder = %q, want the leader %q", h, first)
	}
	// The standby knows who leads, so its API can point there.
	for id, cd := range cands {
		if id == first {
			continue
		}
		select {
		case seen := <-cd.seen:
			if seen != first {
				t.Errorf("%s saw leader %q, want %q", id, seen, first)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s was never told who leads", id)
		}
	}

	// Graceful shutdown of the leader (SIGTERM): it finishes its work, releases the lease and
	// the other replica takes over.
	stoppedAt := time.Now()
	cands[first].cancel()
	<-cands[first].stopped
	second := waitLeader(t, tl)
	t.Logf("takeover after a clean shutdown: %s (retry period %s)", time.Since(stoppedAt).Round(time.Millisecond), fastConfig(c, "").RetryPeriod)
	if second == first {
		t.Fatalf("%s led again after shutting down", first)
	}

	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.overlap {
		t.Errorf("two leaders worked at once: %v", tl.events)
	}
	if want := []string{"start " + first, "stop " + first, "start " + second}; !equal(tl.events, want) {
		t.Errorf("events = %v, want %v", tl.events, want)
	}
}

// TestRun_LeaderCutOffFromAPIServerStopsBeforeTheOtherStarts is the leader dying without
// releasing: its renewals fail, it must stop working at RenewDeadline, and the other replica
// takes over only after LeaseDuration, never overlapping.
func TestRun_LeaderCutOffFromAPIServerStopsBeforeTheOtherStarts(t *testing.T) {
	c := fake.NewClientset()
	tl := newTimeline()
	var mu sync.Mutex
	cutOff := ""
	c.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if cutOff == "" {
			return false, nil, nil
		}
		// Every request of the cut-off replica fails, as if its node lost the network.
		if u, ok := a.(k8stesting.UpdateAction); ok {
			if l, ok := u.GetObject().(*coordinationv1.Lease); ok && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == cutOff {
				return true, nil, errors.New("connection refused")
			}
		}
		return false, nil, nil
	})
	startCandidate(t, c, "promoter-a", tl)
	startCandidate(t, c, "promoter-b", tl)
	first := waitLeader(t, tl)
	mu.Lock()
	cutOff = first
	mu.Unlock()
	cutAt := time.Now()

	second := waitLeader(t, tl)
	cfg := fastConfig(c, "")
	t.Logf("takeover after the leader was cut off: %s (renew deadline %s, lease %s)", time.Since(cutAt).Round(time.Millisecond), cfg.RenewDeadline, cfg.LeaseDuration)
	if second == first {
		t.Fatalf("%s still leads while cut off", first)
	}
	// A lost lease is left to expire, never released early (the cut-off replica's last renewal
	// was at most one retry period before the cut).
	if took := time.Since(cutAt); took < cfg.LeaseDuration-cfg.RetryPeriod {
		t.Errorf("takeover %s after the cut, before the lease (%s) expired: the lost lease was released", took, cfg.LeaseDuration)
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.overlap {
		t.Errorf("two leaders worked at once: %v", tl.events)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRun_RefusesConfigurationsThatCannotElect(t *testing.T) {
	tests := []struct {
		name string
		cfg  leader.Config
	}{
		{name: "no namespace", cfg: leader.Config{Client: fake.NewClientset()}},
		{name: "no client", cfg: leader.Config{Namespace: "argocd"}},
		{name: "sub-second lease", cfg: leader.Config{Client: fake.NewClientset(), Namespace: "argocd", LeaseDuration: 500 * time.Millisecond, RenewDeadline: 100 * time.Millisecond}},
		{name: "renew deadline beyond lease", cfg: leader.Config{Client: fake.NewClientset(), Namespace: "argocd", LeaseDuration: 5 * time.Second, RenewDeadline: 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			err := leader.Run(context.Background(), tt.cfg, func(context.Context) { called = true }, nil)
			if err == nil || called {
				t.Errorf("Run = %v (led: %v), want an error before campaigning", err, called)
			}
		})
	}
}

// TestRun_RefusesDurationsALeaseCannotKeep: a Lease stores whole seconds, and the other
// replicas time its expiry from that; 1500ms would be written as 1s, under the renew deadline.
func TestRun_RefusesDurationsALeaseCannotKeep(t *testing.T) {
	for _, tc := range []struct {
		lease, renew, retry time.Duration
		want                string
	}{
		{1500 * time.Millisecond, 1200 * time.Millisecond, 200 * time.Millisecond, "--lease-duration 1.5s"},
		{2 * time.Second, 2 * time.Second, 200 * time.Millisecond, "--renew-deadline 2s"},
		{2 * time.Second, time.Second, time.Second, "--retry-period 1s"},
	} {
		err := leader.Run(context.Background(), leader.Config{
			Client: fake.NewClientset(), Namespace: "argocd", Logger: quiet,
			LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: tc.retry,
		}, func(context.Context) { t.Error("led with durations it should refuse") }, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run with lease %s, renew %s, retry %s = %v; want an error naming %s", tc.lease, tc.renew, tc.retry, err, tc.want)
		}
	}
}
