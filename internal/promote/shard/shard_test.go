package shard_test

import (
	"fmt"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/shard"
)

func TestOwner_SpreadsEvenlyAndMovesOnlyTheLeaversShards(t *testing.T) {
	members := []string{"promoter-0_a1", "promoter-1_b2", "promoter-2_c3", "promoter-3_d4"}
	const n = 64
	per := map[string]int{}
	before := map[int]string{}
	for s := 0; s < n; s++ {
		o := shard.Owner(s, members)
		per[o]++
		before[s] = o
	}
	for _, m := range members {
		// 16 each on average; rendezvous hashing keeps each within a factor of two.
		if per[m] < n/len(members)/2 || per[m] > 2*n/len(members) {
			t.Errorf("%s owns %d of %d shards: %v", m, per[m], n, per)
		}
	}
	left := members[:3]
	for s := 0; s < n; s++ {
		o := shard.Owner(s, left)
		if before[s] != members[3] && o != before[s] {
			t.Errorf("shard %d moved from %s to %s though %s stayed", s, before[s], o, before[s])
		}
	}
	if shard.Owner(0, nil) != "" {
		t.Error("a shard has an owner among no members")
	}
}

func TestOf_IsStableAndInRange(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("app-%d", i)
		s := shard.Of(k, 16)
		if s < 0 || s >= 16 || s != shard.Of(k, 16) {
			t.Fatalf("Of(%q, 16) = %d", k, s)
		}
		seen[s] = true
	}
	if len(seen) != 16 {
		t.Errorf("1000 keys used %d of 16 shards", len(seen))
	}
	if shard.Of("x", 1) != 0 {
		t.Error("one shard is not shard 0")
	}
}

func TestKeys_APipelineAndItsReleaseGroupsShareAKey(t *testing.T) {
	keys := shard.Keys([]shard.Spec{
		{Name: "staging", Upstream: "develop"},
		{Name: "prod", Upstream: "staging"},
		{Name: "develop"},
		{Name: "other"},
		// Two release groups, the second following the first member by member.
		{Name: "dev/api", Group: "dev/shop"},
		{Name: "dev/web", Group: "dev/shop"},
		{Name: "prod/api", Upstream: "dev/api", Group: "prod/shop"},
		{Name: "prod/web", Upstream: "dev/web", Group: "prod/shop"},
	})
	same := func(a, b string) {
		t.Helper()
		if keys[a] == "" || keys[a] != keys[b] {
			t.Errorf("%s has key %q, %s %q: want one", a, keys[a], b, keys[b])
		}
	}
	same("develop", "staging")
	same("develop", "prod")
	same("dev/api", "dev/web")
	same("dev/api", "prod/shop")
	same("dev/shop", "prod/web")
	if keys["other"] == keys["develop"] || keys["other"] == keys["dev/api"] {
		t.Errorf("unrelated stages share a key: %v", keys)
	}
}
