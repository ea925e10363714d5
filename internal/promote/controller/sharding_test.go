package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kropipe/kropipe/internal/promote/addrtest"
	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/leader"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// newRouting is the routing part of a replica's sharding over n shards.
func newRouting(n int) *sharding {
	s := &sharding{n: n, fence: shard.NewFence()}
	keys := map[string]string{}
	s.keys.Store(&keys)
	return s
}

func chain(names ...string) []stage.Spec {
	out := make([]stage.Spec, len(names))
	for i, n := range names {
		out[i].Name = n
		if i > 0 {
			out[i].Upstream = names[i-1]
		}
	}
	return out
}

func specNames(specs []stage.Spec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func groupNames(groups []stage.GroupSpec) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g.Name)
	}
	return out
}

// TestSharding_CutKeepsEachPipelineWholeOnTheShardOfItsSmallestStage: over every shard, the
// cuts are a partition of the stages and groups; a pipeline (upstreams, downstreams, release
// groups with their members and upstream groups) is on one shard, the one of its
// alphabetically smallest stage name.
func TestSharding_CutKeepsEachPipelineWholeOnTheShardOfItsSmallestStage(t *testing.T) {
	const n = 4
	specs := append(chain("develop-web", "staging-web", "prod-web"), chain("alpha-api", "develop-api")...)
	// Release groups develop/shop → prod/shop, members of two services each.
	shop := []stage.Spec{
		{Name: "develop-cart"}, {Name: "develop-pay"},
		{Name: "prod-cart", Upstream: "develop-cart"}, {Name: "prod-pay", Upstream: "develop-pay"},
	}
	specs = append(specs, shop...)
	for i := range 40 { // single stages, to spread
		specs = append(specs, stage.Spec{Name: fmt.Sprintf("lone-%02d", i)})
	}
	groups := []stage.GroupSpec{
		{Name: "develop/shop", Members: []string{"develop-cart", "develop-pay"}},
		{Name: "prod/shop", Members: []string{"prod-cart", "prod-pay"}},
	}
	pipelines := map[string][]string{
		"develop-web":  {"develop-web", "staging-web", "prod-web"},
		"alpha-api":    {"alpha-api", "develop-api"},
		"develop-cart": {"develop-cart", "develop-pay", "prod-cart", "prod-pay", "develop/shop", "prod/shop"},
	}

	s := newRouting(n)
	seen := map[string]int{}
	perShard := map[int]int{}
	for held := range n {
		gotSpecs, gotGroups := s.cut(specs, groups, []int{held})
		for _, name := range append(specNames(gotSpecs), groupNames(gotGroups)...) {
			if prev, ok := seen[name]; ok {
				t.Errorf("%s is cut for shard %d and shard %d", name, prev, held)
			}
			seen[name] = held
			perShard[held]++
		}
	}
	if len(seen) != len(specs)+len(groups) {
		t.Errorf("the cuts of every shard hold %d stages and groups, want %d", len(seen), len(specs)+len(groups))
	}
	for key, members := range pipelines {
		want := shard.Of(key, n)
		for _, m := range members {
			if got := seen[m]; got != want {
				t.Errorf("%s is on shard %d, want %d: its pipeline's smallest stage is %s", m, got, want, key)
			}
			if got := s.of(m); got != want {
				t.Errorf("of(%s) = %d, want %d", m, got, want)
			}
		}
	}
	for held := range n {
		if perShard[held] == 0 {
			t.Errorf("shard %d runs nothing of %d stages: %v", held, len(specs), perShard)
		}
	}
	// Two shards held: both cuts.
	both, _ := s.cut(specs, groups, []int{0, 1})
	if len(both) != perShardSpecs(s, specs, 0)+perShardSpecs(s, specs, 1) {
		t.Errorf("holding shards 0 and 1 cuts %d stages, want theirs together", len(both))
	}
}

func perShardSpecs(s *sharding, specs []stage.Spec, n int) int {
	c := 0
	for _, sp := range specs {
		if s.of(sp.Name) == n {
			c++
		}
	}
	return c
}

// TestSharding_ANewFirstStageMovesThePipelineAndSaysSo: canary in front of develop → prod is the
// pipeline's new smallest name: its stages move to canary's shard, and the state store is told
// (moved) so the new owner reads their state afresh.
func TestSharding_ANewFirstStageMovesThePipelineAndSaysSo(t *testing.T) {
	const n = 16
	s := newRouting(n)
	moved := 0
	s.moved = func() { moved++ }

	before, after := chain("develop", "prod"), chain("canary", "develop", "prod")
	s.cut(before, nil, nil)
	if got, want := s.of("prod"), shard.Of("develop", n); got != want {
		t.Fatalf("prod on shard %d, want develop's %d", got, want)
	}
	moves := moved
	s.cut(before, nil, nil)
	if moved != moves {
		t.Error("cutting the same pipelines again told the store they moved")
	}
	held := shard.Of("canary", n)
	got, _ := s.cut(after, nil, []int{held})
	if !slices.Equal(specNames(got), []string{"canary", "develop", "prod"}) {
		t.Errorf("shard %d (canary's) cuts %v, want the whole pipeline", held, specNames(got))
	}
	if s.of("prod") != held {
		t.Errorf("prod on shard %d after canary came first, want %d", s.of("prod"), held)
	}
	if moved != moves+1 {
		t.Errorf("the store was told %d times of the move, want once", moved-moves)
	}
	if old, _ := s.cut(after, nil, []int{shard.Of("develop", n)}); len(old) != 0 {
		t.Errorf("develop's old shard still cuts %v", specNames(old))
	}
}

// TestSharding_OfAStageNoPipelineNamesIsItsOwnShard: a name the last cut did not see (an
// action on a stage just removed) routes by itself.
func TestSharding_OfAStageNoPipelineNamesIsItsOwnShard(t *testing.T) {
	s := newRouting(8)
	s.cut(chain("develop", "prod"), nil, nil)
	if got, want := s.of("gone"), shard.Of("gone", 8); got != want {
		t.Errorf("of(gone) = %d, want %d", got, want)
	}
}

// TestSharding_OwnsTheStagesOfTheShardsHeldNow: the state store reads and writes a stage only
// while this replica holds its shard.
func TestSharding_OwnsTheStagesOfTheShardsHeldNow(t *testing.T) {
	const n = 16
	s := newRouting(n)
	s.cut(chain("canary", "develop", "prod"), nil, nil)
	k := shard.Of("canary", n)
	ctx, lose := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.fence.Hold(ctx, k)
	}()
	<-s.fence.Changed()
	for _, name := range []string{"canary", "develop", "prod"} {
		if !s.owns(name) {
			t.Errorf("%s not owned while its shard %d is held", name, k)
		}
	}
	if other := "lone"; shard.Of(other, n) != k && s.owns(other) {
		t.Errorf("%s owned: its shard %d is not held", other, shard.Of(other, n))
	}
	lose()
	<-done
	if s.owns("prod") {
		t.Error("prod still owned after its shard was lost")
	}
}

// TestController_AnotherShardCountIsReadyAndWaits is the new pod of a rolling update of
// --shards 16 → 8: while the old count acts (its topology Lease renewed), the new replica is
// Ready (a Deployment waits for that before it stops an old pod) yet runs and promotes
// nothing; once the old count's last replica released the Lease, it takes over and promotes.
func TestController_AnotherShardCountIsReadyAndWaits(t *testing.T) {
	e := newClusterEnv(t)
	ctx := context.Background()
	leases := e.kube.CoordinationV1().Leases("argocd")
	holder, secs, now := "old-pod_1", int32(3600), metav1.NewMicroTime(time.Now())
	topology := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: shard.TopologyLeaseName(leader.DefaultName), Namespace: "argocd",
			Labels:      map[string]string{shard.SetLabel: leader.DefaultName, shard.KindLabel: "topology"},
			Annotations: map[string]string{shard.ShardsAnnotation: "16"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now},
	}
	if _, err := leases.Create(ctx, topology, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	seed := head(t, e.bare)
	f := configFor(addrtest.Free(t))
	f.Shards, f.LeaseDuration, f.RenewDeadline, f.RetryPeriod = 8, 2*time.Second, time.Second, 200*time.Millisecond
	addr, logs, _ := e.start(t, f)

	deadline := time.Now().Add(30 * time.Second)
	for {
		// Ready after its first pass (over no stage): the loop runs, holding no shard.
		code, body := tryGet("http://" + f.HealthAddr + "/readyz")
		if code == http.StatusOK && strings.Contains(body, "leading") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica of the new count never became ready: %d %s\n%s", code, body, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the probe, as the kubelet does
	}
	if code, body := get(t, "http://"+addr+"/api/v1/shard/stages"); code != http.StatusOK || strings.Contains(body, "develop-frontend") {
		t.Errorf("while --shards 16 acts, the --shards 8 replica runs: %d %s", code, body)
	}
	if ls, _ := leases.List(ctx, metav1.ListOptions{LabelSelector: shard.KindLabel + "=shard"}); len(ls.Items) != 0 {
		t.Errorf("while --shards 16 acts, the --shards 8 replica took %d shard Leases", len(ls.Items))
	}
	if h := head(t, e.bare); h != seed {
		t.Errorf("while --shards 16 acts, the --shards 8 replica committed %s", h)
	}

	// The old count's last replica leaves: it releases the topology Lease.
	topology, _ = leases.Get(ctx, topology.Name, metav1.GetOptions{})
	released := ""
	topology.Spec.HolderIdentity = &released
	if _, err := leases.Update(ctx, topology, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStage(t, api.NewClient(addr, "", nil), logs, "promoted once the new count acts", func(st stage.Status) bool { return st.CurrentTag == "1.2.2" })
	if l, err := leases.Get(ctx, topology.Name, metav1.GetOptions{}); err != nil || l.Annotations[shard.ShardsAnnotation] != "8" {
		t.Errorf("topology Lease: %v %v, want --shards 8 recorded", err, l.Annotations)
	}
}

// A history another replica passed on keeps who asked, and its approvals (no commit) stay
// out of the Git records.
func TestHistory_FromAnotherReplicaKeepsWhoAsked(t *testing.T) {
	h := api.History{Stage: "develop-frontend", Entries: []api.HistoryEntry{
		{Commit: "c2", Kind: "rollback", Value: "1.2.1", Rejected: "1.2.2", RequestedBy: "alice"},
		{Kind: api.KindApprove, Value: "1.2.2", RequestedBy: "bob"},
		{Commit: "c1", Kind: "promote", Value: "1.2.2"},
	}}
	recs := history(h)
	if len(recs) != 2 || recs[0].Commit != "c2" || recs[0].Kind != gitwrite.Rollback || recs[0].RequestedBy != "alice" || recs[1].Commit != "c1" || recs[1].RequestedBy != "" {
		t.Fatalf("records %+v", recs)
	}
}
