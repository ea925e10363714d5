package shard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// An owed automatic rollback is kept in the ConfigMap of its stage's shard, like the stage's
// pauses and verifications: the replica that holds the shard next retries it.
func TestStore_OwedActionsLiveInTheirStagesShard(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	stores := make([]shard.ShardStore, 2)
	for n := range stores {
		stores[n] = kubestate.New(client, ns, kubestate.WithName(fmt.Sprintf("state-%d", n)), kubestate.WithLogger(quiet))
	}
	where := map[string]int{"develop": 0, "web": 1}
	f := shard.NewFence()
	holding(t, f, 0, 1)
	s := shard.NewStore(stores, f, func(name string) int { return where[name] })
	st := stateOf("develop", "web")
	st.Owed = map[string][]stage.OwedAction{"web": {{Kind: "rollback", From: "1.2.2", Since: time.Unix(1700000000, 0).UTC(), Attempts: 1}}}
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]int{0: 0, 1: 1} {
		got, err := stores[n].Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Owed) != want {
			t.Errorf("shard %d keeps owed %v, want %d stage(s)", n, got.Owed, want)
		}
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Owed["web"]; len(a) != 1 || a[0].From != "1.2.2" || a[0].Attempts != 1 {
		t.Errorf("loaded owed %v; want web's rollback from 1.2.2", got.Owed)
	}
}
