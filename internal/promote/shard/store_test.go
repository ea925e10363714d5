package shard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// holding marks shards held in f until the returned functions (one per shard) are called.
func holding(t *testing.T, f *shard.Fence, shards ...int) map[int]context.CancelFunc {
	t.Helper()
	lose := map[int]context.CancelFunc{}
	for _, n := range shards {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.Hold(ctx, n)
		}()
		lose[n] = func() {
			cancel()
			<-done
		}
		t.Cleanup(lose[n])
	}
	for len(f.Held()) < len(shards) {
		<-f.Changed()
	}
	return lose
}

func stateOf(stages ...string) stage.State {
	st := stage.State{Verifications: map[string][]stage.Verification{}, Paused: map[string]time.Time{}}
	for _, s := range stages {
		st.Verifications[s] = []stage.Verification{{Value: "1.0." + s, VerifiedAt: time.Unix(1700000000, 0).UTC()}}
	}
	st.Paused[stages[0]] = time.Unix(1700000000, 0).UTC()
	return st
}

func TestStore_EachShardsStateLivesInItsOwnConfigMap(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	stores := make([]shard.ShardStore, 3)
	for n := range stores {
		stores[n] = kubestate.New(client, ns, kubestate.WithName(fmt.Sprintf("state-%d", n)), kubestate.WithLogger(quiet))
	}
	where := map[string]int{"develop": 0, "staging": 0, "web": 1, "api": 2}
	f := shard.NewFence()
	lose := holding(t, f, 0, 1)
	s := shard.NewStore(stores, f, func(name string) int { return where[name] })

	// api is on shard 2, which another replica holds: never written here.
	if err := s.Save(ctx, stateOf("develop", "staging", "web", "api")); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int][]string{0: {"develop", "staging"}, 1: {"web"}} {
		got, err := stores[n].Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Verifications) != len(want) {
			t.Errorf("shard %d keeps %v, want %v", n, keys(got.Verifications), want)
		}
		for _, name := range want {
			if _, ok := got.Verifications[name]; !ok {
				t.Errorf("shard %d lacks %s: %v", n, name, keys(got.Verifications))
			}
		}
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "state-2", metav1.GetOptions{}); err == nil {
		t.Error("shard 2's ConfigMap was written by a replica not holding it")
	}

	// Load joins the held shards.
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Verifications) != 3 || got.Paused["develop"].IsZero() {
		t.Errorf("loaded %v (paused %v), want develop, staging and web", keys(got.Verifications), got.Paused)
	}

	// Nothing changed: no writes.
	client.ClearActions()
	if err := s.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("saving an unchanged state wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}

	// Shard 1 lost: its stage's changes are not this replica's to write any more.
	lose[1]()
	got.Verifications["web"] = append(got.Verifications["web"], stage.Verification{Value: "2.0"})
	got.Verifications["develop"] = append(got.Verifications["develop"], stage.Verification{Value: "2.0"})
	if err := s.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	web, _ := stores[1].Load(ctx)
	dev, _ := stores[0].Load(ctx)
	if len(web.Verifications["web"]) != 1 || len(dev.Verifications["develop"]) != 2 {
		t.Errorf("after losing shard 1: web has %d verifications (want 1: untouched), develop %d (want 2)", len(web.Verifications["web"]), len(dev.Verifications["develop"]))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestFence_ALostShardEndsItsWorkAndWaitsForIt(t *testing.T) {
	f := shard.NewFence()
	lose := holding(t, f, 3)
	held, ctx, leave := f.Enter(context.Background(), []int{3, 4})
	if len(held) != 1 || held[0] != 3 {
		t.Fatalf("entered %v, want [3] (4 is not held)", held)
	}
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		lose[3]()
	}()
	<-ctx.Done() // the work is told at once
	select {
	case <-lost:
		t.Fatal("Hold returned while work on its shard was still running")
	case <-time.After(50 * time.Millisecond): // a negative check: Hold must still be waiting
	}
	leave()
	<-lost
	if f.Holds(3) {
		t.Error("shard 3 still held after it was lost")
	}
}

func TestStore_AnUpgradeStartsEachShardFromTheStateBeforeSharding(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	legacy := kubestate.New(client, ns, kubestate.WithName("state"), kubestate.WithLogger(quiet))
	if err := legacy.Save(ctx, stateOf("develop", "web")); err != nil {
		t.Fatal(err)
	}
	stores := make([]shard.ShardStore, 2)
	for n := range stores {
		stores[n] = kubestate.New(client, ns, kubestate.WithName(fmt.Sprintf("state-%d", n)), kubestate.WithLogger(quiet))
	}
	where := map[string]int{"develop": 0, "web": 1}
	f := shard.NewFence()
	holding(t, f, 0, 1)
	s := shard.NewStore(stores, f, func(name string) int { return where[name] }).WithLegacy(legacy)

	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Verifications) != 2 || got.Paused["develop"].IsZero() {
		t.Fatalf("after the upgrade: verifications of %v, paused %v; want develop and web as before, develop paused", keys(got.Verifications), got.Paused)
	}
	// The first save moves each shard's part into its own ConfigMap; the old one is not read
	// again.
	if err := s.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := legacy.Save(ctx, stateOf("other")); err != nil {
		t.Fatal(err)
	}
	again, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Verifications) != 2 || again.Verifications["other"] != nil || again.Paused["develop"].IsZero() {
		t.Errorf("after the first save: verifications of %v, paused %v; want develop and web from the shards' own ConfigMaps", keys(again.Verifications), again.Paused)
	}
}
