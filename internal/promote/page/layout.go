package page

import (
	"cmp"
	"slices"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// grouping is a way to group the lanes (?group-by=): by where the stages were configured.
type grouping struct {
	Key   string // the query parameter's value; "" is no grouping (lanes by image)
	Label string
	none  string // the heading of the stages without one
	of    func(stage.Origin) string
}

var groupings = []grouping{
	{Key: "", Label: "nothing (lanes by image)"},
	{Key: "appset", Label: "ApplicationSet", none: "no ApplicationSet", of: func(o stage.Origin) string { return o.ApplicationSet }},
	{Key: "project", Label: "Argo CD project", none: "no Argo CD project", of: func(o stage.Origin) string { return o.Project }},
	{Key: "namespace", Label: "namespace", none: "no namespace", of: func(o stage.Origin) string { return o.Namespace }},
	{Key: "file", Label: "promoter.yaml file", none: "no promoter.yaml", of: func(o stage.Origin) string { return o.File }},
}

func groupingOf(key string) grouping {
	for _, g := range groupings {
		if g.Key == key {
			return g
		}
	}
	return groupings[0]
}

// section is a heading of the pipeline (an ApplicationSet, a project…) with its lanes; the
// one section of an ungrouped pipeline has no name.
type section struct {
	Name  string
	Count int // its stages and release groups
	Lanes []lane
}

// sections groups cards (release groups folded, see units) by g into lanes, the sections
// in name order, the lanes in the cards' order.
func sections(cs []card, g grouping) []section {
	if g.of == nil {
		if len(cs) == 0 {
			return nil
		}
		return []section{{Count: len(cs), Lanes: lanes(cs)}}
	}
	by := map[string][]card{}
	for _, c := range cs {
		k := cmp.Or(g.of(c.Origin), g.none)
		by[k] = append(by[k], c)
	}
	out := make([]section, 0, len(by))
	for k, cs := range by {
		out = append(out, section{Name: k, Count: len(cs), Lanes: lanes(cs)})
	}
	slices.SortFunc(out, func(a, b section) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// count is one of stagefilter.States in the header: how many stages, linking to them.
type count struct {
	State stagefilter.State
	N     int
	URL   string
}

// attentionCounts counts the cards needing a human, by what they need.
func attentionCounts(cs []card) (total int, counts []count) {
	for _, s := range stagefilter.States {
		counts = append(counts, count{State: s, URL: "/?" + stagefilter.Filter{States: []stagefilter.State{s}}.Values().Encode()})
	}
	for _, c := range cs {
		needs := false
		for i, s := range stagefilter.States {
			if slices.Contains(c.States, s) {
				counts[i].N++
				needs = true
			}
		}
		if needs {
			total++
		}
	}
	return total, counts
}

// filterCards keeps the cards f matches.
func filterCards(cs []card, f stagefilter.Filter) []card {
	if f.Empty() {
		return cs
	}
	out := make([]card, 0, len(cs))
	for _, c := range cs {
		if f.MatchOrigin(c.Origin) && f.MatchShown(c.Search, c.States) {
			out = append(out, c)
		}
	}
	return out
}
