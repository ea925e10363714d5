package shard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kropipe/kropipe/internal/promote/shard"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	ns     = "kropipe"
	shards = 8
)

// cluster is a fake API server whose Lease updates are compare-and-swaps on the
// resourceVersion, as the real one's are, and whose writes from a cut-off replica fail.
type cluster struct {
	client *fake.Clientset
	mu     sync.Mutex
	cutOff map[string]bool
	// version is the last resourceVersion given: the fake tracker gives none.
	version int
	book    *book
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{client: fake.NewClientset(), cutOff: map[string]bool{}, book: &book{t: t, active: map[int]string{}}}
	gvr := schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
	c.client.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var l *coordinationv1.Lease
		if w, ok := a.(k8stesting.CreateAction); ok { // creates and updates alike
			l, _ = w.GetObject().(*coordinationv1.Lease)
		}
		if l == nil {
			return false, nil, nil
		}
		c.mu.Lock()
		cut := l.Spec.HolderIdentity != nil && c.cutOff[*l.Spec.HolderIdentity]
		c.mu.Unlock()
		if cut {
			// As if its node lost the network.
			return true, nil, errors.New("connection refused")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if a.GetVerb() == "update" {
			cur, err := c.client.Tracker().Get(gvr, ns, l.Name)
			if err != nil {
				return true, nil, err
			}
			if cur.(metav1.Object).GetResourceVersion() != l.ResourceVersion {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), l.Name, errors.New("the object has been modified"))
			}
		}
		c.version++
		l.ResourceVersion = fmt.Sprint(c.version)
		return false, nil, nil
	})
	return c
}

func (c *cluster) cut(id string) {
	c.mu.Lock()
	c.cutOff[id] = true
	c.mu.Unlock()
}

// book records which replica works on which shard, and fails the test when two work on one
// shard at once.
type book struct {
	t *testing.T
	// linger is how long a work keeps running after its context ended (a pass stopping).
	linger time.Duration
	mu     sync.Mutex
	active map[int]string
	starts []start
	stops  map[string]time.Time // "id/shard" → when its work ended
}

type start struct {
	id    string
	shard int
	at    time.Time
}

func (b *book) work(id string) func(context.Context, int) {
	return func(ctx context.Context, n int) {
		b.mu.Lock()
		if other, ok := b.active[n]; ok {
			b.t.Errorf("shard %d: %s started while %s still works on it", n, id, other)
		}
		b.active[n] = id
		b.starts = append(b.starts, start{id, n, time.Now()})
		b.mu.Unlock()
		<-ctx.Done()
		if b.linger > 0 {
			time.Sleep(b.linger) // the work under test: a pass that takes a while to stop
		}
		b.mu.Lock()
		delete(b.active, n)
		if b.stops == nil {
			b.stops = map[string]time.Time{}
		}
		b.stops[fmt.Sprintf("%s/%d", id, n)] = time.Now()
		b.mu.Unlock()
	}
}

// holders returns shard → replica working on it.
func (b *book) holders() map[int]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[int]string{}
	for n, id := range b.active {
		out[n] = id
	}
	return out
}

// fast durations: the lease in whole seconds, as the Lease stores it.
const (
	leaseDuration = 2 * time.Second
	renewDeadline = 1200 * time.Millisecond
	retryPeriod   = 100 * time.Millisecond
)

type replica struct {
	m      *shard.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *cluster) start(t *testing.T, id string) *replica {
	t.Helper()
	m, err := shard.New(shard.Config{
		Client: c.client, Namespace: ns, Prefix: "kropipe-promoter", Shards: shards,
		Identity: id, Member: id, Address: "http://" + id + ":8080",
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
		Logger: quiet, Work: c.book.work(id),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not standing in for one
	}
}

// spread says whether every shard is worked on by the replica rendezvous hashing picks among
// ids, and each of ids has some.
func spread(h map[int]string, ids ...string) bool {
	if len(h) != shards {
		return false
	}
	per := map[string]int{}
	owners := shard.Assign(shards, ids)
	for n, id := range h {
		if id != owners[n] {
			return false
		}
		per[id]++
	}
	for _, id := range ids {
		if per[id] == 0 {
			return false
		}
	}
	return len(per) == len(ids)
}

func TestManager_SpreadsShardsOverReplicasAndHandsThemOverOnStop(t *testing.T) {
	c := newCluster(t)
	a := c.start(t, "promoter-a")
	b := c.start(t, "promoter-b")
	c.start(t, "promoter-c")
	waitFor(t, "every shard on one of three replicas", 10*time.Second, func() bool {
		return spread(c.book.holders(), "promoter-a", "promoter-b", "promoter-c")
	})
	// The owners are those rendezvous hashing picks.
	owners := shard.Assign(shards, []string{"promoter-a", "promoter-b", "promoter-c"})
	for n, id := range c.book.holders() {
		if want := owners[n]; id != want {
			t.Errorf("shard %d on %s, want %s", n, id, want)
		}
	}

	// A clean stop releases at once: the others take b's shards well before its Leases expire.
	stopped := time.Now()
	b.cancel()
	<-b.done
	waitFor(t, "b's shards on a and c", leaseDuration, func() bool {
		return spread(c.book.holders(), "promoter-a", "promoter-c")
	})
	t.Logf("handover after a clean stop: %s", time.Since(stopped).Round(time.Millisecond))
	// b left its membership: a sees only c.
	waitFor(t, "a sees c alone", time.Second, func() bool {
		ms := a.m.Members()
		return len(ms) == 1 && ms[0].Identity == "promoter-c"
	})
}

func TestManager_NewReplicaTakesItsShareFromTheOthers(t *testing.T) {
	c := newCluster(t)
	c.start(t, "promoter-a")
	waitFor(t, "every shard on a", 10*time.Second, func() bool { return spread(c.book.holders(), "promoter-a") })
	c.start(t, "promoter-b")
	waitFor(t, "shards shared with b", 10*time.Second, func() bool {
		return spread(c.book.holders(), "promoter-a", "promoter-b")
	})
}

// TestManager_CutOffReplicaStopsBeforeItsShardsAreTakenOver is a replica that dies without
// releasing (its writes fail, as SIGKILL or a lost node): it must stop working on its shards
// at the renew deadline, and the others take them over only after the lease expired, within
// a lease duration plus a retry period, never two at once (book fails the test on overlap).
func TestManager_CutOffReplicaStopsBeforeItsShardsAreTakenOver(t *testing.T) {
	c := newCluster(t)
	c.start(t, "promoter-a")
	c.start(t, "promoter-b")
	waitFor(t, "shards on a and b", 10*time.Second, func() bool {
		return spread(c.book.holders(), "promoter-a", "promoter-b")
	})
	var lost []int
	for n, id := range c.book.holders() {
		if id == "promoter-a" {
			lost = append(lost, n)
		}
	}
	cutAt := time.Now()
	c.cut("promoter-a")
	waitFor(t, "a's shards on b", 3*leaseDuration, func() bool { return spread(c.book.holders(), "promoter-b") })
	took := time.Since(cutAt)
	t.Logf("takeover of %d shards after the cut: %s (lease %s, renew deadline %s)", len(lost), took.Round(time.Millisecond), leaseDuration, renewDeadline)

	c.book.mu.Lock()
	defer c.book.mu.Unlock()
	for _, n := range lost {
		stop, ok := c.book.stops[fmt.Sprintf("promoter-a/%d", n)]
		if !ok {
			t.Fatalf("shard %d: a never stopped", n)
		}
		// Fenced: a stopped within the renew deadline of its last renewal (at most one retry
		// period before the cut).
		if d := stop.Sub(cutAt); d > renewDeadline+retryPeriod+500*time.Millisecond {
			t.Errorf("shard %d: a stopped %s after the cut, later than the renew deadline %s", n, d, renewDeadline)
		}
		for _, s := range c.book.starts {
			if s.shard == n && s.id == "promoter-b" && s.at.After(cutAt) {
				if !s.at.After(stop) {
					t.Errorf("shard %d: b started before a stopped", n)
				}
				// Not before the lease expired: a stopped at its last renewal plus the renew
				// deadline, b starts at that renewal plus the lease duration, never earlier (a
				// lost Lease is never released early).
				if gap := s.at.Sub(stop); gap < (leaseDuration-renewDeadline)*5/8 {
					t.Errorf("shard %d: b took over %s after a stopped; the lease's margin is %s", n, gap, leaseDuration-renewDeadline)
				}
				if d := s.at.Sub(cutAt); d > leaseDuration+2*retryPeriod+time.Second {
					t.Errorf("shard %d: b took over %s after the cut; want within about one lease duration (%s)", n, d, leaseDuration)
				}
			}
		}
	}
}

// TestManager_HandsOverOnlyOnceTheWorkStopped is a pass that takes longer to stop than the
// lease lasts: the replica giving shards to a new member keeps renewing them until its work
// returned, so the new member never starts while it runs (book fails the test on overlap).
func TestManager_HandsOverOnlyOnceTheWorkStopped(t *testing.T) {
	c := newCluster(t)
	c.book.linger = leaseDuration + 500*time.Millisecond
	c.start(t, "promoter-a")
	waitFor(t, "every shard on a", 10*time.Second, func() bool { return spread(c.book.holders(), "promoter-a") })
	c.start(t, "promoter-b")
	waitFor(t, "shards shared with b", 4*leaseDuration, func() bool {
		return spread(c.book.holders(), "promoter-a", "promoter-b")
	})
}

func TestManager_HolderNamesTheOwnersAddress(t *testing.T) {
	c := newCluster(t)
	a := c.start(t, "promoter-a")
	c.start(t, "promoter-b")
	waitFor(t, "shards on a and b", 10*time.Second, func() bool {
		return spread(c.book.holders(), "promoter-a", "promoter-b")
	})
	waitFor(t, "a sees every holder", 5*time.Second, func() bool {
		for n := 0; n < shards; n++ {
			if _, ok := a.m.Holder(n); !ok {
				return false
			}
		}
		return true
	})
	for n, id := range c.book.holders() {
		m, _ := a.m.Holder(n)
		if m.Identity != id || m.Address != "http://"+id+":8080" {
			t.Errorf("a says shard %d is on %+v, want %s at http://%s:8080", n, m, id, id)
		}
	}
}

func TestNew_RefusesBadTiming(t *testing.T) {
	_, err := shard.New(shard.Config{
		Client: fake.NewClientset(), Namespace: ns, Prefix: "p", Shards: 4, Identity: "a", Member: "a",
		LeaseDuration: time.Second, RenewDeadline: 2 * time.Second, Work: func(context.Context, int) {},
	})
	if err == nil {
		t.Fatal("a renew deadline longer than the lease was accepted")
	}
}
