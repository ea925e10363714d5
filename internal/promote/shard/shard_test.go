package shard_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/shard"
)

func TestAssign_BalancedAndMovesFewShardsWhenAMemberLeaves(t *testing.T) {
	members := []string{"promoter-0_a1", "promoter-1_b2", "promoter-2_c3", "promoter-3_d4"}
	for _, n := range []int{16, 64} {
		before := shard.Assign(n, members)
		per := map[string]int{}
		for _, o := range before {
			per[o]++
		}
		for _, m := range members {
			if per[m] != n/len(members) {
				t.Errorf("%d shards: %s owns %d: %v", n, m, per[m], per)
			}
		}
		// The order members are given in does not matter: every replica agrees.
		if again := shard.Assign(n, []string{members[2], members[0], members[3], members[1]}); !slices.Equal(again, before) {
			t.Errorf("%d shards: the assignment depends on the members' order", n)
		}
		// promoter-3 leaves: its shards go to the others; of theirs, few move.
		after := shard.Assign(n, members[:3])
		moved := 0
		for s := range after {
			if after[s] == members[3] {
				t.Fatalf("shard %d still on the member that left", s)
			}
			if before[s] != members[3] && after[s] != before[s] {
				moved++
			}
		}
		if moved > n/8 {
			t.Errorf("%d shards: %d of the staying members' shards moved when one member left", n, moved)
		}
	}
	if shard.Assign(4, nil) != nil {
		t.Error("shards have owners among no members")
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
