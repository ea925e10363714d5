package signature

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// Cosign verifies cosign signatures (key-based and keyless) and SLSA provenance attestations
// with sigstore-go. It reads a policy's Cosign and Provenance sections; Notation is another
// Verifier's. It finds signatures both as OCI referrers holding sigstore bundles (with the
// referrers tag schema for registries without the referrers API) and under cosign's legacy
// sha256-<hex>.sig and .att tags.
//
// Answers are cached by repository, digest and policy: a verified digest is not asked about
// again (until evicted), an unverified one again only after the unverified TTL, since a CI
// pipeline often pushes the signature seconds after the image. Registry errors are not cached.
type Cosign struct {
	clock       clock.PassiveClock
	unverifiedT time.Duration
	answers     *lru.Cache // cacheKey → answer
	checks      *lru.Cache // policy hash → *cosignCheck (parsed keys, roots, regexps)
	publicGood  *PublicGoodRoot
	inflight    singleflight.Group
}

// CosignOption configures NewCosign.
type CosignOption func(*Cosign) error

// WithCosignCacheSize bounds the answers kept (default 8192: a thousand stages with a few
// candidate digests each). Zero or less disables the cache.
func WithCosignCacheSize(n int) CosignOption {
	return func(c *Cosign) error {
		if n <= 0 {
			c.answers = nil
			return nil
		}
		c.answers = lru.New(n)
		return nil
	}
}

// WithCosignUnverifiedTTL is how long an unverified answer (no signature yet) is reused before the
// registry is asked again (default 5 minutes). A signature pushed after its image is found by
// the first pass after that.
func WithCosignUnverifiedTTL(d time.Duration) CosignOption {
	return func(c *Cosign) error {
		if d < 0 {
			return fmt.Errorf("unverified TTL %s is negative", d)
		}
		c.unverifiedT = d
		return nil
	}
}

// WithCosignClock sets the clock the unverified TTL is measured with (tests use a fake one).
func WithCosignClock(clk clock.PassiveClock) CosignOption {
	return func(c *Cosign) error {
		c.clock = clk
		return nil
	}
}

// WithPublicGoodRoot sets where policies without a TrustedRoot get the public-good Sigstore
// trusted root (default: the copy embedded in the binary, which lacks keys added after
// sigstore-go v1.3.0).
func WithPublicGoodRoot(src *PublicGoodRoot) CosignOption {
	return func(c *Cosign) error {
		c.publicGood = src
		return nil
	}
}

// NewCosign returns a cosign verifier. Without a policy's TrustedRoot, signatures are
// verified against the public-good Sigstore trusted root: WithPublicGoodRoot's, else the one
// embedded in the binary.
func NewCosign(opts ...CosignOption) (*Cosign, error) {
	c := &Cosign{
		clock:       clock.RealClock{},
		unverifiedT: 5 * time.Minute,
		answers:     lru.New(8192),
		checks:      lru.New(64),
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

var _ Verifier = (*Cosign)(nil)

type answer struct {
	res Result
	err error // nil or an ErrUnverified
	at  time.Time
}

// Verify checks ref under p's Cosign (and Provenance) sections. A digest that does not satisfy
// them returns an error wrapping ErrUnverified whose message names what is missing; a registry
// failure returns another error, never cached.
func (c *Cosign) Verify(ctx context.Context, ref name.Digest, p Policy, opts ...remote.Option) (Result, error) {
	if p.Cosign == nil {
		return Result{}, fmt.Errorf("signature policy %q has no cosign section (the cosign verifier checks cosign signatures and provenance only)", p.Name)
	}
	phash := policyHash(p)
	key := ref.Context().Name() + "@" + ref.DigestStr() + "#" + phash
	if c.answers != nil {
		if v, ok := c.answers.Get(key); ok {
			a := v.(answer)
			if a.err == nil || c.clock.Since(a.at) < c.unverifiedT {
				return a.res, a.err
			}
		}
	}
	chk, err := c.check(phash, p)
	if err != nil {
		return Result{}, err
	}
	// Stages sharing an image ask about the same digest at once: one of them reads the
	// registry, the others take its answer.
	v, err, _ := c.inflight.Do(key, func() (any, error) {
		res, err := c.verifyUncached(ctx, ref, chk, p.Provenance, opts)
		if err == nil || errors.Is(err, ErrUnverified) {
			if c.answers != nil {
				c.answers.Add(key, answer{res: res, err: err, at: c.clock.Now()})
			}
		}
		return res, err
	})
	return v.(Result), err
}

func (c *Cosign) verifyUncached(ctx context.Context, ref name.Digest, chk *cosignCheck, prov *ProvenancePolicy, opts []remote.Option) (Result, error) {
	opts = append(append([]remote.Option{}, opts...), remote.WithContext(ctx))
	// One puller for the referrers, tags and blobs read: one token and /v2/ ping, not one
	// per request.
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return Result{}, err
	}
	opts = append(opts, remote.Reuse(puller))
	return c.verify(ctx, ref, chk, prov, opts)
}

func (c *Cosign) verify(ctx context.Context, ref name.Digest, chk *cosignCheck, prov *ProvenancePolicy, opts []remote.Option) (Result, error) {
	digest, err := parseDigest(ref)
	if err != nil {
		return Result{}, err
	}
	f := &finder{ref: ref, opts: opts}
	res, err := chk.verifySignature(ctx, f, digest)
	if err != nil {
		return Result{}, err
	}
	if prov != nil {
		pr, err := chk.verifyProvenance(ctx, f, digest, prov)
		if err != nil {
			return Result{}, err
		}
		res.Provenance = pr
	}
	return res, nil
}

// artifactDigest is the image digest a signature must name.
type artifactDigest struct {
	str string // "sha256:<hex>"
	raw []byte
}

func parseDigest(ref name.Digest) (artifactDigest, error) {
	d := ref.DigestStr()
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return artifactDigest{}, fmt.Errorf("image %s: only sha256 digests can be verified", ref)
	}
	raw, err := hex.DecodeString(hexPart)
	if err != nil || len(raw) != sha256.Size {
		return artifactDigest{}, fmt.Errorf("image %s: digest is not a sha256 hex string", ref)
	}
	return artifactDigest{str: d, raw: raw}, nil
}

// policyHash identifies a policy in the cache, its key and trusted root bytes included (they
// are not in its JSON form).
func policyHash(p Policy) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(p.Name)
	if cp := p.Cosign; cp != nil {
		field("cosign")
		field(string(cp.PublicKey))
		field(cp.Identity)
		field(cp.IdentityRegexp)
		field(cp.Issuer)
		field(cp.IssuerRegexp)
		field(string(cp.TrustedRoot))
		field(fmt.Sprint(cp.IgnoreTlog, cp.IgnoreTimestamps, cp.RequireTlog))
	}
	if np := p.Notation; np != nil {
		field("notation")
		field(string(np.TrustStore))
		field(strings.Join(np.TrustedIdentities, "\x00"))
	}
	if pp := p.Provenance; pp != nil {
		field("provenance")
		field(pp.BuilderID)
		field(pp.SourceRepository)
		field(fmt.Sprint(pp.BuilderIDRegexp, pp.SourceRepositoryRegexp))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cosignCheck is a CosignPolicy parsed once: its key or identity, trusted material and the
// verifier settings sigstore-go applies.
type cosignCheck struct {
	policy   string
	keyed    bool
	want     string // "key SHA256:…" or "<identity> (issuer …)", for messages
	material root.TrustedMaterial
	identity verify.CertificateIdentity
	// requireTlog: a transparency-log inclusion must verify.
	requireTlog bool
	// ignoreTimestamps: a keyless certificate is checked at the current time.
	ignoreTimestamps bool
	rootRef          string
	provenance       *provenanceCheck
}

func (c *Cosign) check(phash string, p Policy) (*cosignCheck, error) {
	key := phash
	var tr *root.TrustedRoot
	var rootRef string
	if len(p.Cosign.TrustedRoot) == 0 && c.publicGood != nil {
		// The public-good root changes when TUF delivers a new one: the check is made again
		// for it.
		var err error
		if tr, rootRef, err = c.publicGood.TrustedRoot(); err != nil {
			return nil, fmt.Errorf("signature policy %q: %s: %w", p.Name, rootRef, err)
		}
		key = fmt.Sprintf("%s#%p", phash, tr)
	}
	if v, ok := c.checks.Get(key); ok {
		return v.(*cosignCheck), nil
	}
	chk, err := newCosignCheck(p, tr, rootRef)
	if err != nil {
		return nil, err
	}
	c.checks.Add(key, chk)
	return chk, nil
}

// newCosignCheck parses p; tr is the public-good root (named rootRef) for a policy without
// its own, nil for the embedded one.
func newCosignCheck(p Policy, tr *root.TrustedRoot, rootRef string) (*cosignCheck, error) {
	cp := p.Cosign
	keyless := cp.Identity != "" || cp.IdentityRegexp != "" || cp.Issuer != "" || cp.IssuerRegexp != ""
	if len(cp.PublicKey) > 0 && keyless {
		return nil, fmt.Errorf("signature policy %q: give cosign either a public key or a keyless identity and issuer, not both", p.Name)
	}
	var err error
	if len(cp.TrustedRoot) > 0 || tr == nil {
		rootRef = cp.TrustedRootRef
		if len(cp.TrustedRoot) == 0 {
			rootRef = "the public-good Sigstore trusted root"
		} else if rootRef == "" {
			rootRef = "the policy's trusted root"
		}
		if tr, err = trustedRoot(cp.TrustedRoot); err != nil {
			return nil, fmt.Errorf("signature policy %q: trusted root %s: %w", p.Name, rootRef, err)
		}
	}
	chk := &cosignCheck{policy: p.Name, rootRef: rootRef, ignoreTimestamps: cp.IgnoreTimestamps}
	if p.Provenance != nil {
		if chk.provenance, err = newProvenanceCheck(p.Name, p.Provenance); err != nil {
			return nil, err
		}
	}
	if len(cp.PublicKey) > 0 {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(cp.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("signature policy %q: public key %s: %w", p.Name, cp.KeyRef, err)
		}
		// cosign signs with SHA-256 whatever the key (ECDSA P-256/P-384, RSA); Ed25519 ignores it.
		v, err := sigsig.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("signature policy %q: public key %s: %w", p.Name, cp.KeyRef, err)
		}
		id, err := keyID(pub)
		if err != nil {
			return nil, fmt.Errorf("signature policy %q: public key %s: %w", p.Name, cp.KeyRef, err)
		}
		key := root.NewExpiringKey(v, time.Time{}, time.Time{})
		keys := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
		// The trusted root still vouches for the transparency logs and timestamp authorities a
		// key-based signature may carry.
		chk.material = root.TrustedMaterialCollection{keys, tr}
		chk.keyed = true
		chk.want = "key " + id
		chk.requireTlog = cp.RequireTlog
		return chk, nil
	}
	if !keyless {
		return nil, fmt.Errorf("signature policy %q: cosign needs a public key, or a certificate identity and issuer", p.Name)
	}
	if (cp.Identity == "" && cp.IdentityRegexp == "") || (cp.Issuer == "" && cp.IssuerRegexp == "") {
		return nil, fmt.Errorf("signature policy %q: keyless cosign needs both a certificate identity (or identityRegexp) and an issuer (or issuerRegexp)", p.Name)
	}
	id, err := verify.NewShortCertificateIdentity(cp.Issuer, cp.IssuerRegexp, cp.Identity, cp.IdentityRegexp)
	if err != nil {
		return nil, fmt.Errorf("signature policy %q: %w", p.Name, err)
	}
	chk.identity = id
	chk.material = tr
	chk.requireTlog = !cp.IgnoreTlog
	chk.want = first(cp.Identity, cp.IdentityRegexp) + " (issuer " + first(cp.Issuer, cp.IssuerRegexp) + ")"
	return chk, nil
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// keyID is how Kropipe-Signed-By names a key: the SHA-256 of its DER SubjectPublicKeyInfo,
// what `openssl pkey -pubin -outform DER | sha256sum` prints.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:]), nil
}

// verifier builds the sigstore-go verifier for one signed entity: which timestamps and log
// entries must verify depends on the policy and on what the entity carries.
func (chk *cosignCheck) verifier(e verify.SignedEntity) (*verify.Verifier, error) {
	var o []verify.VerifierOption
	if chk.keyed {
		if chk.requireTlog {
			o = append(o, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1))
		} else {
			o = append(o, verify.WithNoObserverTimestamps())
		}
		return verify.NewVerifier(chk.material, o...)
	}
	if len(chk.material.CTLogs()) > 0 {
		// As cosign: a Fulcio certificate carries its certificate-transparency timestamp.
		o = append(o, verify.WithSignedCertificateTimestamps(1))
	}
	if chk.requireTlog {
		o = append(o, verify.WithTransparencyLog(1))
	}
	switch {
	case chk.ignoreTimestamps:
		o = append(o, verify.WithCurrentTime())
	case chk.requireTlog:
		// A signed timestamp or the log's integrated time dates the signature.
		o = append(o, verify.WithObserverTimestamps(1))
	case hasTimestamps(e):
		o = append(o, verify.WithSignedTimestamps(1))
	default:
		// No log and no signed timestamp: the certificate must be valid now, as cosign
		// does; a short-lived Fulcio certificate is not.
		o = append(o, verify.WithCurrentTime())
	}
	return verify.NewVerifier(chk.material, o...)
}

func hasTimestamps(e verify.SignedEntity) bool {
	ts, err := e.Timestamps()
	return err == nil && len(ts) > 0
}

func hasTlog(e verify.SignedEntity) bool {
	es, err := e.TlogEntries()
	return err == nil && len(es) > 0
}
