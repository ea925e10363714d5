// Package shard spreads the stages over the promoter's replicas, as Argo CD spreads clusters
// over its application controllers: every replica registers in a membership Lease carrying
// its API address, each of a fixed number of shards is owned by the live member that
// rendezvous hashing picks, and a Lease per shard fences its owner. A replica acts on a
// stage only while it holds the stage's shard Lease and renewed it within the renew
// deadline; it stops before any other replica can take the Lease.
package shard

import (
	"hash/fnv"
	"slices"
	"strconv"
)

// Of returns the shard of key among n shards (n >= 1): FNV-1a of the key, modulo n. The
// key is the stage's pipeline (see Keys), never the replica count: a shard's stages stay
// the same when replicas come and go, so its Lease follows it as a whole.
func Of(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// Assign gives every shard an owner among members: rendezvous (highest random weight)
// hashing, each shard going to the member scoring highest for it, with the load bounded: a
// member already owning its fair share (shards/members, rounded up) is passed over. Every
// replica computes the same assignment from the same live members. When a member leaves,
// its shards spread over the others and few else move; when one joins, it takes about
// 1/len(members) of the shards. It returns nil for no members.
func Assign(shards int, members []string) []string {
	if len(members) == 0 {
		return nil
	}
	sorted := append([]string(nil), members...)
	slices.Sort(sorted)
	limit := (shards + len(sorted) - 1) / len(sorted)
	load := map[string]int{}
	out := make([]string, shards)
	for n := range out {
		ranked := append([]string(nil), sorted...)
		slices.SortStableFunc(ranked, func(a, b string) int {
			sa, sb := score(a, n), score(b, n)
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return 0
		})
		for _, m := range ranked {
			if load[m] < limit {
				out[n] = m
				load[m]++
				break
			}
		}
	}
	return out
}

func score(member string, shard int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(strconv.Itoa(shard)))
	// FNV's low bits mix poorly for short, similar inputs: finish with a 64-bit mixer
	// (splitmix64's) so the owners spread evenly.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Spec is what Keys needs of a stage: its name, the stage it follows and its release group.
type Spec struct {
	Name, Upstream, Group string
}

// Keys maps every stage (and every release group) to the key its shard is computed from:
// the alphabetically smallest name in its pipeline (a release group counts as
// "group:<name>"), whatever the order of its stages: adding a stage with a smaller name moves
// the whole pipeline (its state does not move: kubestate.Stages keeps it by stage name). A stage, its upstreams and downstreams, and the
// members of its release groups (with their upstream groups) share a key, so a pipeline
// lives on one shard: the engine decides a downstream right after its upstream verified,
// in the same pass, and a release group's set is written as one commit.
func Keys(specs []Spec) map[string]string {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			parent[x] = x
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	union := func(a, b string) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		// The smaller name is the root: the key does not depend on the specs' order.
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[rb] = ra
	}
	for _, s := range specs {
		find(s.Name)
		if s.Upstream != "" {
			union(s.Name, s.Upstream)
		}
		if s.Group != "" {
			union(s.Name, "group:"+s.Group)
		}
	}
	keys := make(map[string]string, len(parent))
	for x := range parent {
		r := find(x)
		name := x
		if g, ok := cutGroup(x); ok {
			name = g
		}
		keys[name] = r
	}
	return keys
}

func cutGroup(s string) (string, bool) {
	const p = "group:"
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}
