package warehouse

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// Strategies a Selection can name.
const (
	// StrategySemver picks the highest [v]MAJOR.MINOR.PATCH tag matching the constraint.
	StrategySemver = "semver"
	// StrategyLexical picks the tag that sorts last as a plain string.
	StrategyLexical = "lexical"
	// StrategyNewest picks the tag whose image config says it was built last.
	StrategyNewest = "newest"
	// StrategyDigest follows one mutable tag (the constraint, default latest) and
	// yields its current digest; a new digest is a new version.
	StrategyDigest = freight.StrategyDigest
)

// DefaultStrategy is used when Selection.Strategy is empty.
const DefaultStrategy = StrategySemver

// DefaultPlatform is the platform whose config the newest strategy reads from a
// multi-platform image when Selection.Platform is empty.
const DefaultPlatform = "linux/amd64"

// defaultDigestTag is the tag the digest strategy follows when no constraint names one.
const defaultDigestTag = "latest"

// Selection says which tag of an image a stage wants. The zero value selects the
// highest semantic version that is not a pre-release.
type Selection struct {
	// Strategy is semver (default), lexical, newest or digest.
	Strategy string
	// Constraint is a Masterminds semver constraint (e.g. ^1.2) for semver, and the
	// tag to follow (default latest) for digest. Other strategies take none.
	Constraint string
	// AllowTags, when set, is a regular expression a tag must match to be considered.
	AllowTags string
	// IgnoreTags, when set, is a regular expression; matching tags are never considered.
	IgnoreTags string
	// Platform is os/arch[/variant] (default linux/amd64): which image of a
	// multi-platform index the newest strategy reads the build time from.
	Platform string
}

// Validate reports the first problem with s, naming the field and what to write
// instead. An empty Strategy is valid (it means semver).
func (s Selection) Validate() error {
	_, err := s.compile()
	return err
}

// compiled is a Selection checked and parsed once per Discover.
type compiled struct {
	strategy   string
	constraint *semver.Constraints // semver only
	digestTag  string              // digest only
	allow      *regexp.Regexp
	ignore     *regexp.Regexp
	platform   v1.Platform
	raw        Selection
}

func (s Selection) compile() (*compiled, error) {
	c := &compiled{strategy: s.Strategy, raw: s}
	if c.strategy == "" {
		c.strategy = DefaultStrategy
	}
	switch c.strategy {
	case StrategySemver:
		expr := s.Constraint
		if strings.TrimSpace(expr) == "" {
			// "*" in Masterminds semantics: any release, pre-releases excluded.
			expr = "*"
		}
		con, err := semver.NewConstraint(expr)
		if err != nil {
			return nil, fmt.Errorf("constraint %q: %v: write a semver range such as ^1.2, ~1.2.3 or >=1.0.0 <2.0.0", s.Constraint, err)
		}
		c.constraint = con
	case StrategyDigest:
		c.digestTag = s.Constraint
		if c.digestTag == "" {
			c.digestTag = defaultDigestTag
		}
		if !validTag.MatchString(c.digestTag) {
			return nil, fmt.Errorf("constraint %q: the digest strategy follows one tag, and this is not a valid tag name: write a tag such as latest or main", s.Constraint)
		}
	case StrategyLexical, StrategyNewest:
		if s.Constraint != "" {
			return nil, fmt.Errorf("constraint %q: strategy %s takes no constraint: remove it, or use allowTags to narrow the tags", s.Constraint, c.strategy)
		}
	default:
		return nil, fmt.Errorf("strategy %q is unknown: use semver, lexical, newest or digest", s.Strategy)
	}
	var err error
	if c.allow, err = compileRegex("allowTags", s.AllowTags); err != nil {
		return nil, err
	}
	if c.ignore, err = compileRegex("ignoreTags", s.IgnoreTags); err != nil {
		return nil, err
	}
	platform := s.Platform
	if platform == "" {
		platform = DefaultPlatform
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil || p.OS == "" || p.Architecture == "" || strings.Contains(platform, ":") {
		return nil, fmt.Errorf("platform %q: write os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8", s.Platform)
	}
	c.platform = *p
	return c, nil
}

// validTag is the distribution spec's tag grammar.
var validTag = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

func compileRegex(field, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid regex %q: %v: write a Go regular expression such as ^v?1\\.", field, expr, err)
	}
	return re, nil
}

// admits reports whether allowTags/ignoreTags let tag through.
func (c *compiled) admits(tag string) bool {
	if c.allow != nil && !c.allow.MatchString(tag) {
		return false
	}
	if c.ignore != nil && c.ignore.MatchString(tag) {
		return false
	}
	return true
}

// parseSemverTag accepts exactly [v]MAJOR.MINOR.PATCH[-pre][+build]. The lenient
// parser would read "2024" or "1.2" as versions, and a date-stamped tag would then
// outrank every real release.
func parseSemverTag(tag string) (*semver.Version, bool) {
	v, err := semver.StrictNewVersion(strings.TrimPrefix(tag, "v"))
	if err != nil {
		return nil, false
	}
	return v, true
}
