package shard_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// pipeline returns the specs of stages each following the one before it.
func pipeline(names ...string) []shard.Spec {
	out := make([]shard.Spec, len(names))
	for i, n := range names {
		out[i].Name = n
		if i > 0 {
			out[i].Upstream = names[i-1]
		}
	}
	return out
}

// layout is where stages run: the pipelines (their specs give the keys), --shards, and the
// replicas rendezvous hashing gives the shards to.
type layout struct {
	specs    []shard.Spec
	shards   int
	replicas []string
}

// owner is the replica running stage name.
func (l layout) owner(name string) string {
	key := name
	if k, ok := shard.Keys(l.specs)[name]; ok {
		key = k
	}
	return shard.Assign(l.shards, l.replicas)[shard.Of(key, l.shards)]
}

// cluster is the replicas of one promoter sharing the state, each with its store, and the
// layout they run now.
type stateCluster struct {
	t      *testing.T
	client *fake.Clientset
	mu     sync.Mutex
	now    layout
	stores map[string]*kubestate.Stages
}

func newStateCluster(t *testing.T, l layout) *stateCluster {
	c := &stateCluster{t: t, client: fake.NewClientset(), now: l, stores: map[string]*kubestate.Stages{}}
	return c
}

// store is replica who's store (made at its first use: a new pod).
func (c *stateCluster) store(who string) *kubestate.Stages {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stores[who]; ok {
		return s
	}
	s := kubestate.NewStages(c.client, ns, "state", func(name string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.now.owner(name) == who
	}, []kubestate.Option{kubestate.WithLogger(quiet)})
	c.stores[who] = s
	return s
}

// change moves to layout l, as the controller does: every replica's stages are cut again and
// its store told to read them afresh.
func (c *stateCluster) change(l layout) {
	c.mu.Lock()
	c.now = l
	stores := make([]*kubestate.Stages, 0, len(c.stores))
	for _, s := range c.stores {
		stores = append(stores, s)
	}
	c.mu.Unlock()
	for _, s := range stores {
		s.Forget()
	}
}

// pass is one pass on every replica of the layout: load, and save what was loaded with
// change applied.
func (c *stateCluster) pass(change func(*stage.State)) stage.State {
	c.t.Helper()
	ctx := context.Background()
	var all stage.State
	for _, who := range c.now.replicas {
		st, err := c.store(who).Load(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		if change != nil {
			change(&st)
		}
		if err := c.store(who).Save(ctx, st); err != nil {
			c.t.Fatal(err)
		}
		all = joinStates(all, st)
	}
	return all
}

func joinStates(a, b stage.State) stage.State {
	a.Paused = joinMap(a.Paused, b.Paused)
	a.Approvals = joinMap(a.Approvals, b.Approvals)
	a.Verifications = joinMap(a.Verifications, b.Verifications)
	a.Runs = joinMap(a.Runs, b.Runs)
	return a
}

func joinMap[V any](a, b map[string]V) map[string]V {
	if a == nil {
		a = map[string]V{}
	}
	for k, v := range b {
		a[k] = v
	}
	return a
}

var at = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// prodPaused is develop → prod with develop's verification, prod paused and 1.2.3 approved.
func prodPaused() stage.State {
	return stage.State{
		Paused:        map[string]time.Time{"prod": at},
		Approvals:     map[string][]stage.Approval{"prod": {{Value: "1.2.3", ApprovedAt: at}}},
		Verifications: map[string][]stage.Verification{"develop": {{Value: "1.2.3", VerifiedAt: at}}},
		Runs:          map[string][]stage.VerificationRun{"prod": {{Value: "1.2.2", Phase: "Failed", Message: "job prod-smoke failed"}}},
	}
}

// TestStore_StateFollowsItsStages: a pipeline's pauses, approvals, verifications (a soak counts
// from them) and runs survive whatever moves its stages between shards: a new first stage
// (the pipeline's key is its alphabetically smallest stage), another --shards, an upgrade from
// the one ConfigMap of a promoter without shards.
func TestStore_StateFollowsItsStages(t *testing.T) {
	before, after := pipeline("develop", "prod"), pipeline("canary", "develop", "prod")
	// With these two replicas prod changes replica in each case below but those to or
	// from one replica.
	two, one := []string{"a", "b"}, []string{"a"}
	resume := func(st *stage.State) { delete(st.Paused, "prod") }
	for _, tc := range []struct {
		name string
		// legacy is what an older promoter kept in its one ConfigMap (name "state").
		legacy       *stage.State
		from, to     layout
		changeBefore func(*stage.State) // a pass before the change makes it
		wantPaused   bool
	}{
		{name: "a new first stage", from: layout{before, 16, two}, to: layout{after, 16, two}, wantPaused: true},
		{name: "a first stage removed", from: layout{after, 16, two}, to: layout{before, 16, two}, wantPaused: true},
		{name: "--shards 16 to 4", from: layout{before, 16, two}, to: layout{before, 4, two}, wantPaused: true},
		{name: "--shards 8 to 16 with a new first stage", from: layout{before, 8, two}, to: layout{after, 16, two}, wantPaused: true},
		{name: "--shards 4 to 1", from: layout{before, 4, two}, to: layout{before, 1, one}, wantPaused: true},
		{name: "--shards 1 to 4", from: layout{before, 1, one}, to: layout{after, 4, two}, wantPaused: true},
		{name: "an upgrade from one ConfigMap", legacy: ptr(prodPaused()), from: layout{before, 16, two}, to: layout{after, 16, two}, wantPaused: true},
		{
			// After the upgrade prod was resumed; a new first stage must not bring the old
			// pause back from the ConfigMap of the promoter before shards.
			name: "an upgrade, a resume, then a new first stage", legacy: ptr(prodPaused()), from: layout{before, 16, two}, to: layout{after, 16, two},
			changeBefore: resume, wantPaused: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newStateCluster(t, tc.from)
			if tc.legacy != nil {
				if err := kubestate.New(c.client, ns, kubestate.WithName("state"), kubestate.WithLogger(quiet)).Save(ctx, *tc.legacy); err != nil {
					t.Fatal(err)
				}
				c.pass(tc.changeBefore)
			} else {
				c.pass(func(st *stage.State) { *st = prodPaused() })
				if tc.changeBefore != nil {
					c.pass(tc.changeBefore)
				}
			}
			if len(tc.from.replicas) == 2 && len(tc.to.replicas) == 2 && tc.from.owner("prod") == tc.to.owner("prod") {
				t.Fatalf("prod stays on %s: the case moves nothing", tc.from.owner("prod"))
			}

			// After the change: one pass on every replica, then what the next pass loads.
			c.change(tc.to)
			c.pass(nil)
			st := c.pass(nil)
			if _, paused := st.Paused["prod"]; paused != tc.wantPaused {
				t.Errorf("prod paused: %v, want %v (state %+v)", paused, tc.wantPaused, st)
			}
			if len(st.Approvals["prod"]) != 1 {
				t.Errorf("prod's approval of 1.2.3 lost (approvals %+v)", st.Approvals)
			}
			if len(st.Verifications["develop"]) != 1 {
				t.Errorf("develop's verification (prod's soak counts from it) lost: %+v", st.Verifications)
			}
			if len(st.Runs["prod"]) != 1 {
				t.Errorf("prod's failed run (a verdict not asked again) lost: %+v", st.Runs)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
