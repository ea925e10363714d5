package warehouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// TagVerdict is one tag a registry lists and what a Selection makes of it.
type TagVerdict struct {
	Tag string `json:"tag"`
	// Candidate is true when the selection admits the tag: it is one the strategy ranks
	// (the stage's candidate is the best of these).
	Candidate bool `json:"candidate"`
	// Reason says in a few words why the tag is or is not a candidate.
	Reason string `json:"reason"`
}

// Explain lists image's tags and says for each whether sel (and the skip list, as in
// Discover) admits it, best first by the strategy: the pipeline page's answer to "why
// was my tag not taken?". It reads the tag list only; the newest strategy's ranking by
// build time is Discover's, so its candidates come in tag order.
func (w *Warehouse) Explain(ctx context.Context, image string, sel Selection, skip ...string) ([]TagVerdict, error) {
	c, err := sel.compile()
	if err != nil {
		return nil, err
	}
	repo, err := w.repository(image)
	if err != nil {
		return nil, err
	}
	tags, err := w.listTags(ctx, repo)
	if err != nil {
		return nil, err
	}
	skipped := make(map[string]bool, len(skip))
	for _, s := range skip {
		skipped[s] = true
	}
	out := make([]TagVerdict, 0, len(tags))
	for _, t := range tags {
		out = append(out, c.verdict(t, skipped))
	}
	c.sortBest(out)
	return out, nil
}

func (c *compiled) verdict(tag string, skipped map[string]bool) TagVerdict {
	no := func(format string, args ...any) TagVerdict {
		return TagVerdict{Tag: tag, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case !validTag.MatchString(tag):
		return no("not a valid tag name")
	case c.strategy == StrategyDigest && tag != c.digestTag:
		return no("not the followed tag %s", c.digestTag)
	case c.strategy == StrategyDigest:
		return TagVerdict{Tag: tag, Candidate: true, Reason: "the followed tag: each new digest is a new version"}
	case skipped[tag]:
		return no("rolled back here: never taken automatically again")
	case c.allow != nil && !c.allow.MatchString(tag):
		return no("does not match allowTags %s", c.raw.AllowTags)
	case c.ignore != nil && c.ignore.MatchString(tag):
		return no("matches ignoreTags %s", c.raw.IgnoreTags)
	}
	switch c.strategy {
	case StrategySemver:
		v, ok := parseSemverTag(tag)
		if !ok {
			return no("not a version ([v]MAJOR.MINOR.PATCH)")
		}
		if !c.constraint.Check(v) {
			if c.raw.Constraint == "" {
				return no("a pre-release (no constraint admits them)")
			}
			return no("outside the constraint %s", c.raw.Constraint)
		}
		if c.raw.Constraint == "" {
			return TagVerdict{Tag: tag, Candidate: true, Reason: "a release; the highest is taken"}
		}
		return TagVerdict{Tag: tag, Candidate: true, Reason: "within " + c.raw.Constraint + "; the highest is taken"}
	case StrategyNewest:
		return TagVerdict{Tag: tag, Candidate: true, Reason: "admitted; the one built last is taken"}
	default:
		return TagVerdict{Tag: tag, Candidate: true, Reason: "admitted; the one that sorts last is taken"}
	}
}

// sortBest orders verdicts best first: versions by semver for the semver strategy, the
// rest as strings, last first.
func (c *compiled) sortBest(vs []TagVerdict) {
	slices.SortStableFunc(vs, func(a, b TagVerdict) int {
		if c.strategy == StrategySemver {
			va, oka := parseSemverTag(a.Tag)
			vb, okb := parseSemverTag(b.Tag)
			switch {
			case oka && okb:
				if r := vb.Compare(va); r != 0 {
					return r
				}
			case oka:
				return -1
			case okb:
				return 1
			}
		}
		return strings.Compare(b.Tag, a.Tag)
	})
}
