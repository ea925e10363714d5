package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// ErrNoMatch is wrapped by Discover's error when the registry answered but no tag
// fits the selection: nothing to promote, as opposed to a failure.
var ErrNoMatch = errors.New("no tag matches")

// ErrTagNotFound is wrapped by Resolve's error when the tag does not exist.
var ErrTagNotFound = errors.New("tag not found")

// Warehouse discovers image versions in registries. Create it once with New and
// share it: it keeps per-registry rate limits, authenticated connections and the
// newest strategy's build-time cache. It is safe for concurrent use.
type Warehouse struct {
	// puller is replaced whole by SetKeychain: it caches each repository's
	// authenticated session, so new credentials need a new one.
	puller     atomic.Pointer[remote.Puller]
	keychain   atomic.Pointer[authn.Keychain] // the puller's, for Keychain
	rt         *registryTransport
	pageSize   int
	clock      clock.PassiveClock
	log        *slog.Logger
	registries map[string]RegistryConfig

	// proofs holds the digests the warehouse hashed itself; see provenDigest.
	proofs proofs
	// known holds each listed tag's digest as last proven, for Pass; digestFile keeps
	// it across restarts (WithDigestFile).
	known      knownDigests
	digestFile string
	// warned holds the keys of warnings already logged (warnOnce), so a bad tag a
	// registry keeps listing is reported once, not every poll.
	warned sync.Map
	// onInvalidTag is WithInvalidTags' callback.
	onInvalidTag func(image, tag string)

	// builds caches what the newest strategy learned per repository and platform.
	buildsMu sync.Mutex
	builds   map[buildsKey]*buildCache
}

// New returns a Warehouse configured by opts.
func New(opts ...Option) (*Warehouse, error) {
	o := &options{
		keychain:       authn.DefaultKeychain,
		transport:      remote.DefaultTransport,
		registries:     map[string]RegistryConfig{},
		log:            slog.Default(),
		clock:          clock.RealClock{},
		pageSize:       defaultPageSize,
		requestTimeout: DefaultRequestTimeout,
	}
	for _, opt := range opts {
		opt(o)
	}
	rt := &registryTransport{
		inner:   o.transport,
		clock:   o.clock,
		log:     o.log,
		observe: o.observe,
		configs: o.registries,
		retry:   DefaultRetry,
		timeout: o.requestTimeout,
		hosts:   map[string]*hostTransport{},
	}
	w := &Warehouse{
		rt:           rt,
		pageSize:     o.pageSize,
		clock:        o.clock,
		log:          o.log,
		registries:   o.registries,
		builds:       map[buildsKey]*buildCache{},
		onInvalidTag: o.onInvalidTag,
		digestFile:   o.digestFile,
	}
	w.loadDigests()
	if err := w.SetKeychain(o.keychain); err != nil {
		return nil, err
	}
	return w, nil
}

// SetKeychain makes later requests authenticate with kc: rotated or added
// registry credentials without a new Warehouse. Requests already running finish
// with the old ones; rate limits and the newest strategy's cache are kept.
func (w *Warehouse) SetKeychain(kc authn.Keychain) error {
	puller, err := remote.NewPuller(
		remote.WithTransport(w.rt),
		remote.WithAuthFromKeychain(kc),
		remote.WithPageSize(w.pageSize),
		remote.WithUserAgent("kropipe-promoter"),
		// Retrying is registryTransport's job (per host, honouring Retry-After);
		// the library's own retry would multiply the tries and ignore the limit.
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(func(error) bool { return false }),
	)
	if err != nil {
		return fmt.Errorf("registry client: %w", err)
	}
	w.rt.forgetPings()
	w.keychain.Store(&kc)
	w.puller.Store(puller)
	return nil
}

// Report says what Discover saw, enough for a human sentence such as
// "no tag matches ^1.2 (highest seen 2.0.0)"; String writes one.
type Report struct {
	// Image is the repository that was searched.
	Image string
	// Strategy and Constraint are the selection as applied (defaults filled in).
	Strategy, Constraint string
	// Tags is how many tags the registry listed.
	Tags int
	// Invalid lists the listed tags that are not valid tag names
	// ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}): never candidates, never written.
	Invalid []string
	// Missing lists the tags that were listed and selected but whose manifest the
	// registry did not have; the next candidate was taken instead.
	Missing []string
	// Filtered is how many of them allowTags, ignoreTags or the skip list removed.
	Filtered int
	// Candidates is how many of the rest the strategy could rank and accepted
	// (for semver: well-formed versions within the constraint).
	Candidates int
	// Highest is the best tag by the strategy with the constraint left out, e.g.
	// the highest version overall; empty if no tag qualified at all.
	Highest string
}

// String is the report as one sentence.
func (r Report) String() string {
	s := fmt.Sprintf("%d tags in %s", r.Tags, r.Image)
	if len(r.Invalid) > 0 {
		s += fmt.Sprintf(", %d not valid tag names (skipped)", len(r.Invalid))
	}
	if r.Filtered > 0 {
		s += fmt.Sprintf(", %d filtered out by allowTags/ignoreTags/rejected", r.Filtered)
	}
	what := r.Strategy
	if r.Constraint != "" {
		what += " " + r.Constraint
	}
	s += fmt.Sprintf(", %d match %s", r.Candidates, what)
	if r.Highest != "" {
		s += fmt.Sprintf(" (highest seen %s)", r.Highest)
	}
	if len(r.Missing) > 0 {
		s += fmt.Sprintf("; listed without a manifest, skipped: %s", strings.Join(r.Missing, ", "))
	}
	return s
}

// Discover finds the tag of image (host/path, e.g. 127.0.0.1:5000/team/frontend;
// the freight's Image is this string as given) that sel selects and returns it as freight
// with its current digest. skip lists tags the caller has rejected (for example
// rolled back); they are treated as if ignoreTags matched them. For the digest
// strategy skip lists digests instead.
//
// When the registry answers but nothing qualifies, the error wraps ErrNoMatch and
// the report says what was seen. Other errors name the registry and what to do.
//
// Discover asks the registry anew each time; a pass over many stages shares its
// requests through a Pass instead.
func (w *Warehouse) Discover(ctx context.Context, image string, sel Selection, skip ...string) (freight.Freight, Report, error) {
	p := w.NewPass()
	p.trustKnown = false
	return p.Discover(ctx, image, sel, skip...)
}

// Discover is Warehouse.Discover sharing the pass's requests: see Pass for which
// digests may be older than the pass.
func (p *Pass) Discover(ctx context.Context, image string, sel Selection, skip ...string) (freight.Freight, Report, error) {
	w := p.w
	c, err := sel.compile()
	if err != nil {
		return freight.Freight{}, Report{}, err
	}
	repo, err := w.repository(image)
	if err != nil {
		return freight.Freight{}, Report{}, err
	}
	rep := Report{Image: image, Strategy: c.strategy, Constraint: sel.Constraint}
	skipped := make(map[string]bool, len(skip))
	for _, s := range skip {
		skipped[s] = true
	}

	if c.strategy == StrategyDigest {
		rep.Constraint = c.digestTag
		f, err := p.resolve(ctx, image, repo, c.digestTag)
		if err != nil {
			return freight.Freight{}, rep, err
		}
		rep.Tags, rep.Highest = 1, c.digestTag
		if skipped[f.Digest] {
			rep.Filtered = 1
			return freight.Freight{}, rep, fmt.Errorf("%w: %s:%s points to %s, which was rejected: push a new image to the tag", ErrNoMatch, image, c.digestTag, f.Digest)
		}
		rep.Candidates = 1
		return f, rep, nil
	}

	tags, err := p.listTags(ctx, repo)
	if err != nil {
		return freight.Freight{}, rep, err
	}
	rep.Tags = len(tags)
	tags = w.validTags(ctx, image, tags, &rep)
	admitted := tags[:0:0]
	for _, t := range tags {
		if c.admits(t) && !skipped[t] {
			admitted = append(admitted, t)
		}
	}
	rep.Filtered = len(tags) - len(admitted)

	if c.strategy == StrategyNewest {
		best, digest, err := w.pickNewest(ctx, repo, c, tags, admitted, &rep)
		if err != nil {
			return freight.Freight{}, rep, err
		}
		if best == "" {
			return freight.Freight{}, rep, fmt.Errorf("%w: %s", ErrNoMatch, noMatchSentence(rep))
		}
		return freight.Freight{Image: image, Tag: best, Digest: digest, DiscoveredAt: w.clock.Now()}, rep, nil
	}
	for {
		var best string
		if c.strategy == StrategySemver {
			best = pickSemver(c, admitted, &rep)
		} else {
			best = pickLexical(admitted, &rep)
		}
		if best == "" {
			return freight.Freight{}, rep, fmt.Errorf("%w: %s", ErrNoMatch, noMatchSentence(rep))
		}
		// The digest is read now rather than at write time: the freight names exactly
		// what was found, and a tag deleted since listing is caught here.
		f, err := p.resolveListed(ctx, image, repo, best)
		if !errors.Is(err, ErrTagNotFound) {
			return f, rep, err
		}
		// Listed but without a manifest (deleted since, or a broken registry): the
		// next candidate is promoted instead of the stage failing on every poll.
		rep.Missing = append(rep.Missing, best)
		w.warnOnce(ctx, "missing\x00"+image+"\x00"+best, "tag is listed but has no manifest; skipped for the next candidate", "image", image, "tag", best)
		if len(rep.Missing) >= maxMissing {
			return freight.Freight{}, rep, fmt.Errorf("%d listed tags of %s have no manifest (%s): the registry's tag list does not match its content; check the registry", len(rep.Missing), image, strings.Join(rep.Missing, ", "))
		}
		admitted = without(admitted, best)
		rep.Candidates = 0
	}
}

// maxMissing bounds how many listed-but-missing tags one Discover skips before it
// gives up: each costs a request, and that many means the registry is broken.
const maxMissing = 10

// validTags drops the listed tags that are not valid tag names, counting them in the
// report; each is logged once and passed to WithInvalidTags' callback once. Such a
// tag cannot be pulled, and written into YAML it could be anything (a comment, a
// flow mapping, a quote).
func (w *Warehouse) validTags(ctx context.Context, image string, tags []string, rep *Report) []string {
	ok := tags[:0:0]
	for _, t := range tags {
		if validTag.MatchString(t) {
			ok = append(ok, t)
			continue
		}
		rep.Invalid = append(rep.Invalid, t)
		if w.warnOnce(ctx, "invalid\x00"+image+"\x00"+t, "registry lists a tag that is not a valid tag name; skipped", "image", image, "tag", fmt.Sprintf("%q", t)) && w.onInvalidTag != nil {
			w.onInvalidTag(image, t)
		}
	}
	return ok
}

// warnOnce logs msg the first time key is seen and reports whether it did.
func (w *Warehouse) warnOnce(ctx context.Context, key, msg string, args ...any) bool {
	if _, seen := w.warned.LoadOrStore(key, struct{}{}); seen {
		return false
	}
	w.log.WarnContext(ctx, msg, args...)
	return true
}

func noMatchSentence(r Report) string {
	what := r.Strategy
	if r.Constraint != "" {
		what += " " + r.Constraint
	}
	s := fmt.Sprintf("no tag of %s matches %s (%d tags listed", r.Image, what, r.Tags)
	if r.Filtered > 0 {
		s += fmt.Sprintf(", %d filtered out by allowTags/ignoreTags/rejected", r.Filtered)
	}
	if r.Highest != "" {
		s += fmt.Sprintf(", highest seen %s", r.Highest)
	}
	return s + "): push a matching tag or widen the constraint"
}

// Resolve returns the freight tag points to now. A tag that does not exist is an
// error wrapping ErrTagNotFound, so nothing that is not in the registry is ever
// written to Git.
func (w *Warehouse) Resolve(ctx context.Context, image, tag string) (freight.Freight, error) {
	repo, err := w.tagRepository(image, tag)
	if err != nil {
		return freight.Freight{}, err
	}
	return w.resolve(ctx, image, repo, tag)
}

// tagRepository is image's repository, once tag is known to be a valid tag name.
func (w *Warehouse) tagRepository(image, tag string) (name.Repository, error) {
	repo, err := w.repository(image)
	if err != nil {
		return name.Repository{}, err
	}
	if !validTag.MatchString(tag) {
		return name.Repository{}, fmt.Errorf("tag %q is not a valid tag name (letters, digits, '_', '.', '-'; at most 128)", tag)
	}
	return repo, nil
}

func (w *Warehouse) resolve(ctx context.Context, image string, repo name.Repository, tag string) (freight.Freight, error) {
	var digest string
	var err error
	if _, proven := w.known.get(repo.Name(), tag); proven {
		// Seen before: a HEAD says whether it still points where it did, and the manifest
		// is read only when it moved.
		var desc *v1.Descriptor
		if desc, err = w.puller.Load().Head(ctx, repo.Tag(tag)); err == nil {
			digest, err = w.provenDigest(ctx, repo, tag, desc.Digest.String())
		}
	} else {
		// A tag never proven needs its manifest read anyway: read it straight away, one
		// request instead of a HEAD and then a GET.
		digest, err = w.readDigest(ctx, repo, tag)
	}
	if err == nil {
		return freight.Freight{Image: image, Tag: tag, Digest: digest, DiscoveredAt: w.clock.Now()}, nil
	}
	if isNotFound(err) {
		return freight.Freight{}, fmt.Errorf("%w: tag %s not found in %s: push it first, or check the image name", ErrTagNotFound, tag, image)
	}
	return freight.Freight{}, w.explain(repo, "read tag "+tag, err)
}

// listTags reads every page of the repository's tag list.
func (w *Warehouse) listTags(ctx context.Context, repo name.Repository) ([]string, error) {
	lister, err := w.puller.Load().Lister(ctx, repo)
	if err != nil {
		return nil, w.explain(repo, "list tags", err)
	}
	var tags []string
	for lister.HasNext() {
		page, err := lister.Next(ctx)
		if err != nil {
			return nil, w.explain(repo, "list tags", err)
		}
		tags = append(tags, page.Tags...)
	}
	return tags, nil
}

// repository parses image, marking hosts configured insecure so they are reached
// over plain HTTP.
func (w *Warehouse) repository(image string) (name.Repository, error) {
	repo, err := name.NewRepository(image, name.WeakValidation)
	if err != nil {
		return name.Repository{}, fmt.Errorf("image %q: %v: write host/path without tag, e.g. 127.0.0.1:5000/team/frontend", image, err)
	}
	if w.registries[repo.RegistryStr()].Insecure {
		repo, err = name.NewRepository(image, name.WeakValidation, name.Insecure)
		if err != nil {
			return name.Repository{}, fmt.Errorf("image %q: %v", image, err)
		}
	}
	return repo, nil
}
