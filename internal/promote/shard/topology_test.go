package shard_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/shard"
)

// Timing of the fake-clock tests: whole seconds for the lease, as a Lease keeps them.
const (
	fakeLease = 3 * time.Second
	fakeRenew = 2 * time.Second
	fakeRetry = 500 * time.Millisecond
)

// ticked is a replica whose rounds the test runs itself, on a fake clock.
type ticked struct {
	id string
	m  *shard.Manager
}

func (c *cluster) ticked(t *testing.T, clk *clocktesting.FakeClock, id string, shards int) *ticked {
	t.Helper()
	m, err := shard.New(shard.Config{
		Client: c.client, Namespace: ns, Prefix: "kropipe-promoter", Shards: shards,
		Identity: id, Member: id, Address: "http://" + id + ":8080",
		LeaseDuration: fakeLease, RenewDeadline: fakeRenew, RetryPeriod: fakeRetry,
		Logger: quiet, Clock: clk, Work: func(ctx context.Context, n int) { <-ctx.Done() },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &ticked{id: id, m: m}
}

// lease writes a Lease as another process would: holder, renew time on its own clock.
func (c *cluster) lease(t *testing.T, name, kind, holder string, renewed time.Time, shards string) {
	t.Helper()
	ctx := context.Background()
	leases := c.client.CoordinationV1().Leases(ns)
	secs := int32(fakeLease / time.Second)
	rt := metav1.NewMicroTime(renewed)
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	}
	l.Labels = map[string]string{}
	if kind != "" {
		l.Labels = map[string]string{shard.SetLabel: "kropipe-promoter", shard.KindLabel: kind}
	}
	l.Annotations = map[string]string{}
	if shards != "" {
		l.Annotations[shard.ShardsAnnotation] = shards
	}
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &rt}
	if err != nil {
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestManager_LeaseExpiryCountsFromWhenTheRenewalWasSeen: another process holds every shard
// and its clock is an hour off. While it renews, its shards are never taken, however old its
// renew time reads; once it stops, they are taken a lease duration after its last renewal was
// seen, however far ahead its renew time reads.
func TestManager_LeaseExpiryCountsFromWhenTheRenewalWasSeen(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		t.Run("holder's clock "+skew.String(), func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t)
			clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
			const n = 2
			renew := func() {
				for k := range n {
					c.lease(t, shard.ShardLeaseName("kropipe-promoter", k), "shard", "elsewhere", clk.Now().Add(skew), strconv.Itoa(n))
				}
			}
			renew()
			me := c.ticked(t, clk, "me", n)
			t.Cleanup(me.m.Stop)
			// Renewed every retry period for three lease durations: never taken.
			for i := 0; clk.Since(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)) < 3*fakeLease; i++ {
				me.m.Tick(ctx)
				if held := me.m.Held(); len(held) > 0 {
					t.Fatalf("after %s: took shards %v its holder still renews", clk.Since(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)), held)
				}
				clk.Step(fakeRetry)
				renew()
			}
			// The holder stops. Up to a lease duration after the last renewal was seen: not
			// taken; then taken.
			me.m.Tick(ctx) // sees the last renewal
			lastSeen := clk.Now()
			for clk.Since(lastSeen) < fakeLease {
				if held := me.m.Held(); len(held) > 0 {
					t.Fatalf("%s after the last renewal was seen: took %v, before the lease duration %s", clk.Since(lastSeen), held, fakeLease)
				}
				clk.Step(fakeRetry)
				me.m.Tick(ctx)
			}
			if held := me.m.Held(); len(held) != n {
				t.Errorf("%s after the last renewal was seen: holds %v, want every shard", clk.Since(lastSeen), held)
			}
		})
	}
}

// TestManager_ReplicasOfAnotherShardCountNeverActAtOnce is a rolling update of --shards:
// the new replica registers (a member Lease of its own, recording its count; it stays ready
// and serves the API) but holds no shard while a replica of the old count holds one; once
// the last old one left, it takes every shard. The old replicas' member slots do not keep it
// out, even when they are as many as its own --shards (two old replicas, 4 → 2).
func TestManager_ReplicasOfAnotherShardCountNeverActAtOnce(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{16, 8}, {4, 2}} {
		t.Run(fmt.Sprintf("%d to %d", tc.from, tc.to), func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t)
			clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
			oldA, oldB := c.ticked(t, clk, "old-a", tc.from), c.ticked(t, clk, "old-b", tc.from)
			var newer *ticked
			live := []*ticked{oldA, oldB}
			round := func() {
				t.Helper()
				for _, r := range live {
					r.m.Tick(ctx)
				}
				var old, young []int
				for _, r := range live {
					if r == newer {
						young = append(young, r.m.Held()...)
					} else {
						old = append(old, r.m.Held()...)
					}
				}
				if len(old) > 0 && len(young) > 0 {
					t.Fatalf("at %s: --shards %d holds %v while --shards %d holds %v", clk.Now().Format(time.TimeOnly), tc.from, old, tc.to, young)
				}
				clk.Step(fakeRetry)
			}
			rounds := func(d time.Duration) {
				for end := clk.Now().Add(d); clk.Now().Before(end); {
					round()
				}
			}
			rounds(2 * fakeLease)
			if got := len(oldA.m.Held()) + len(oldB.m.Held()); got != tc.from {
				t.Fatalf("the old replicas hold %d shards, want %d", got, tc.from)
			}

			newer = c.ticked(t, clk, "new", tc.to)
			live = append(live, newer)
			rounds(3 * fakeLease)
			if held := newer.m.Held(); len(held) != 0 {
				t.Fatalf("the new count holds %v while the old acts", held)
			}
			if got := c.members(t); got["new"] != strconv.Itoa(tc.to) || got["old-a"] != strconv.Itoa(tc.from) || got["old-b"] != strconv.Itoa(tc.from) {
				t.Errorf("member Leases while the old count acts (holder: --shards): %v; want new: %d, old-a and old-b: %d", got, tc.to, tc.from)
			}
			// One old replica stops: the other takes its shards, the new one still waits.
			oldA.m.Stop()
			live = []*ticked{oldB, newer}
			rounds(2 * fakeLease)
			if got := len(oldB.m.Held()); got != tc.from {
				t.Fatalf("after old-a left, old-b holds %d shards, want %d", got, tc.from)
			}
			// The last old replica stops: it releases the topology, and the new count acts at once.
			oldB.m.Stop()
			live = []*ticked{newer}
			round()
			round()
			if held := newer.m.Held(); len(held) != tc.to {
				t.Errorf("after the last old replica left: the new count holds %v, want all %d shards", held, tc.to)
			}
			l, err := c.client.CoordinationV1().Leases(ns).Get(ctx, shard.TopologyLeaseName("kropipe-promoter"), metav1.GetOptions{})
			if err != nil || l.Annotations[shard.ShardsAnnotation] != strconv.Itoa(tc.to) {
				t.Errorf("topology Lease after the update: %v %v, want --shards %d recorded", l.Annotations, err, tc.to)
			}
			newer.m.Stop()
		})
	}
}

// members returns the holders of the member Leases and the --shards each records.
func (c *cluster) members(t *testing.T) map[string]string {
	t.Helper()
	ls, err := c.client.CoordinationV1().Leases(ns).List(context.Background(), metav1.ListOptions{LabelSelector: shard.KindLabel + "=member"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range ls.Items {
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			h := *l.Spec.HolderIdentity
			out[h] = l.Annotations[shard.ShardsAnnotation]
		}
	}
	return out
}

// TestManager_WaitsForAnOlderPromoter: a replica of an older promoter (no shard count on its
// Leases: it predates the topology Lease), or a promoter without shards leading, blocks the
// shards until its Lease is released or expires.
func TestManager_WaitsForAnOlderPromoter(t *testing.T) {
	for _, tc := range []struct {
		name, lease, kind string
	}{
		{"an older sharded replica", "kropipe-promoter-member-3", "member"},
		{"a promoter without shards leading", "kropipe-promoter", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t)
			start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
			clk := clocktesting.NewFakeClock(start)
			me := c.ticked(t, clk, "me", 4)
			t.Cleanup(me.m.Stop)
			for clk.Since(start) < 3*fakeLease {
				c.lease(t, tc.lease, tc.kind, "older", clk.Now(), "")
				me.m.Tick(ctx)
				if held := me.m.Held(); len(held) > 0 {
					t.Fatalf("holds %v while %s is alive", held, tc.name)
				}
				clk.Step(fakeRetry)
			}
			// It stops without releasing: its Lease expires a lease duration after its last
			// renewal was seen.
			for end := clk.Now().Add(fakeLease + 2*fakeRetry); clk.Now().Before(end); clk.Step(fakeRetry) {
				me.m.Tick(ctx)
			}
			if held := me.m.Held(); len(held) != 4 {
				t.Errorf("after the older one's Lease expired: holds %v, want all 4 shards", held)
			}
		})
	}
}

func TestNew_RefusesLeaseDurationsALeaseCannotKeep(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		lease, renew, retry    time.Duration
		wantFlag, wantNotInMsg string
	}{
		{"not whole seconds", 1500 * time.Millisecond, time.Second, 200 * time.Millisecond, "--lease-duration 1.5s", ""},
		{"under a second", 500 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond, "--lease-duration 500ms", ""},
		{"renew deadline not shorter", 2 * time.Second, 2 * time.Second, 500 * time.Millisecond, "--renew-deadline 2s", ""},
		{"retry period not shorter", 2 * time.Second, time.Second, time.Second, "--retry-period 1s", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := shard.New(shard.Config{
				Client: newCluster(t).client, Namespace: ns, Prefix: "p", Shards: 4, Identity: "a", Member: "a",
				LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: tc.retry, Work: func(context.Context, int) {},
			})
			if err == nil || !strings.Contains(err.Error(), tc.wantFlag) {
				t.Errorf("New = %v, want an error naming %s", err, tc.wantFlag)
			}
		})
	}
}

// TestOthers_AOneLeaderPromoterWaitsForReplicasWithShards: after a rolling update to --shards
// 1, the leader waits while a replica with shards renews its Leases, and goes on a lease
// duration after their last renewal was seen.
func TestOthers_AOneLeaderPromoterWaitsForReplicasWithShards(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	o := shard.NewOthers(c.client, ns, "kropipe-promoter", clk)
	for clk.Since(start) < 3*fakeLease {
		// Its clock is behind: the renew time alone would say it expired long ago.
		c.lease(t, "kropipe-promoter-shard-5", "shard", "sharded", clk.Now().Add(-time.Hour), "16")
		if why, err := o.Alive(ctx); err != nil || !strings.Contains(why, "--shards 16") {
			t.Fatalf("Alive = %q, %v while a replica with 16 shards renews", why, err)
		}
		clk.Step(fakeRetry)
	}
	lastSeen := clk.Now().Add(-fakeRetry)
	for clk.Since(lastSeen) < fakeLease {
		if why, _ := o.Alive(ctx); why == "" {
			t.Fatalf("%s after the last renewal was seen: none alive, before the lease duration", clk.Since(lastSeen))
		}
		clk.Step(fakeRetry)
	}
	if why, err := o.Alive(ctx); why != "" || err != nil {
		t.Errorf("a lease duration after the last renewal: Alive = %q, %v; want none", why, err)
	}
}
