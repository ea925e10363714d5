// Package suggest finds the name a user probably meant ("did you mean ...?") for the
// configuration readers: promoter.yaml (config) and kropipe.io/* annotations (argocd).
package suggest

import (
	"sort"
	"strings"
)

// Closest returns the known name closest to a misspelt one (edit distance at most 2,
// case-insensitive), or "". Both ways of configuring stages — promoter.yaml and kropipe.io/*
// annotations — use it for their "did you mean" hints.
func Closest(s string, known []string) string {
	best, bestD := "", 3
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	for _, k := range sorted {
		if strings.EqualFold(k, s) {
			return k
		}
		if d := distance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
