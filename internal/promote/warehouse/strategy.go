package warehouse

import (
	"github.com/Masterminds/semver/v3"
)

// pickSemver returns the highest tag within the constraint. Report.Highest is the
// highest well-formed version of all, so "no tag matches ^1.2 (highest seen
// 2.0.0)" explains itself.
func pickSemver(c *compiled, tags []string, rep *Report) string {
	var best, highest *semver.Version
	var bestTag, highestTag string
	for _, t := range tags {
		v, ok := parseSemverTag(t)
		if !ok {
			continue
		}
		if higher(v, t, highest, highestTag) {
			highest, highestTag = v, t
		}
		if !c.constraint.Check(v) {
			continue
		}
		rep.Candidates++
		if higher(v, t, best, bestTag) {
			best, bestTag = v, t
		}
	}
	rep.Highest = highestTag
	return bestTag
}

// higher orders by version, then by tag string, so that equal versions
// (1.2.3 and v1.2.3, or differing build metadata) pick the same tag every poll.
func higher(v *semver.Version, tag string, than *semver.Version, thanTag string) bool {
	if than == nil {
		return true
	}
	if c := v.Compare(than); c != 0 {
		return c > 0
	}
	return tag > thanTag
}

// pickLexical returns the tag that sorts last as a byte string.
func pickLexical(tags []string, rep *Report) string {
	best := ""
	for _, t := range tags {
		if t > best {
			best = t
		}
	}
	rep.Candidates = len(tags)
	rep.Highest = best
	return best
}
