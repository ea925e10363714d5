package signature

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/notaryproject/notation-core-go/revocation"
	"github.com/notaryproject/notation-core-go/revocation/crl"
	"github.com/notaryproject/notation-core-go/revocation/purpose"
	revocationresult "github.com/notaryproject/notation-core-go/revocation/result"
	notationcore "github.com/notaryproject/notation-core-go/signature"
	_ "github.com/notaryproject/notation-core-go/signature/cose" // registers the COSE envelope
	_ "github.com/notaryproject/notation-core-go/signature/jws"  // registers the JWS envelope
	"github.com/notaryproject/notation-go"
	notationregistry "github.com/notaryproject/notation-go/registry"
	notationverifier "github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/utils/clock"
	orasremote "oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Notation verifies Notation signatures with notation-go: the trust store and trust policy a
// NotationPolicy describes are built in memory (nothing is read from ~/.config/notation), and
// the signatures are found through the registry's referrers API, or the referrers tag
// (sha256-<hex>) where the registry has none (oras-go falls back by itself).
//
// Verification is strict: integrity, authenticity (trust store and identities), the signature's
// expiry, the certificates' validity now (no timestamp authority is configured) and revocation
// (OCSP, then CRL, as the certificates say; CRLs are kept until their NextUpdate).
//
// Answers are cached by repository, digest and policy: a verified digest for an hour
// (WithNotationVerifiedTTL: a certificate revoked meanwhile stops promotions within it) or
// until the first certificate of its signing chain expires; an unverified one for a while
// (WithNotationUnsignedTTL), since a signature is often pushed a little after its image.
// What could not be decided (the registry failing, a revocation server unreachable) is an
// error other than ErrUnverified and is not cached.
//
// A Notation is safe for concurrent use.
type Notation struct {
	transport   http.RoundTripper
	client      atomic.Pointer[orasauth.Client]
	revocation  revocation.Validator
	insecure    func(registry string) bool
	plainHosts  sync.Map // registry host → true: an insecure one found to answer only over HTTP
	clock       clock.PassiveClock
	unsignedTTL time.Duration
	verifiedTTL time.Duration

	mu    sync.Mutex
	cache map[notationCacheKey]notationAnswer
}

var _ Verifier = (*Notation)(nil)

// NotationOption configures a Notation verifier.
type NotationOption func(*notationOptions)

type notationOptions struct {
	transport   http.RoundTripper
	keychain    authn.Keychain
	insecure    func(registry string) bool
	clock       clock.PassiveClock
	unsignedTTL time.Duration
	verifiedTTL time.Duration
}

// DefaultNotationUnsignedTTL is how long "not signed as the policy requires" is remembered for
// a digest: about one poll, so a signature pushed after its image is found on the next pass or
// the one after, while an idle pass over many unsigned tags does not ask the registry each time.
const DefaultNotationUnsignedTTL = 5 * time.Minute

// DefaultNotationVerifiedTTL is how long a verified digest is remembered (never past its
// certificates' expiry): revocation is checked again that often.
const DefaultNotationVerifiedTTL = time.Hour

// notationMaxSignatures bounds the signatures read for one digest, as the notation CLI's
// --max-signatures does (default 100): anyone with push rights can attach many.
const notationMaxSignatures = 100

// WithNotationTransport sends the registry requests through rt (the promoter's rate-limited,
// retrying transport). Default: go-containerregistry's remote.DefaultTransport.
func WithNotationTransport(rt http.RoundTripper) NotationOption {
	return func(o *notationOptions) { o.transport = rt }
}

// WithNotationKeychain authenticates to registries with kc's credentials, as the promoter's
// image discovery does. Default: authn.DefaultKeychain.
func WithNotationKeychain(kc authn.Keychain) NotationOption {
	return func(o *notationOptions) { o.keychain = kc }
}

// WithNotationInsecure names the registries (host:port, as name.Registry.RegistryStr says) that
// may be reached over plain HTTP when HTTPS fails, as go-containerregistry does for a registry
// marked name.Insecure (the promoter's RegistryConfig.Insecure). Default: none.
func WithNotationInsecure(insecure func(registry string) bool) NotationOption {
	return func(o *notationOptions) { o.insecure = insecure }
}

// WithNotationClock sets the clock the cache expires answers by. Default: the real clock.
func WithNotationClock(c clock.PassiveClock) NotationOption {
	return func(o *notationOptions) { o.clock = c }
}

// WithNotationVerifiedTTL sets how long a verified answer is kept at most (0: never kept).
// Default: DefaultNotationVerifiedTTL.
func WithNotationVerifiedTTL(d time.Duration) NotationOption {
	return func(o *notationOptions) { o.verifiedTTL = d }
}

// WithNotationUnsignedTTL sets how long an unverified answer is kept (0: never kept).
// Default: DefaultNotationUnsignedTTL.
func WithNotationUnsignedTTL(d time.Duration) NotationOption {
	return func(o *notationOptions) { o.unsignedTTL = d }
}

// NewNotation returns a Notation verifier. Its Verify ignores go-containerregistry remote
// options (they cannot be read back); reaching the registry is configured here instead.
// OCSP and CRL requests go to the servers the certificates name, with notation-go's timeouts
// (2s, 5s), not through the registry transport.
func NewNotation(opts ...NotationOption) *Notation {
	o := notationOptions{
		transport:   remote.DefaultTransport,
		keychain:    authn.DefaultKeychain,
		insecure:    func(string) bool { return false },
		clock:       clock.RealClock{},
		unsignedTTL: DefaultNotationUnsignedTTL,
		verifiedTTL: DefaultNotationVerifiedTTL,
	}
	for _, opt := range opts {
		opt(&o)
	}
	n := &Notation{
		transport:   o.transport,
		revocation:  newNotationRevocation(),
		insecure:    o.insecure,
		clock:       o.clock,
		unsignedTTL: o.unsignedTTL,
		verifiedTTL: o.verifiedTTL,
		cache:       map[notationCacheKey]notationAnswer{},
	}
	n.SetKeychain(o.keychain)
	return n
}

// SetKeychain makes later requests authenticate with kc: rotated or added registry
// credentials without a new verifier. Tokens obtained with the old credentials are dropped.
func (n *Notation) SetKeychain(kc authn.Keychain) {
	n.client.Store(&orasauth.Client{
		// The transport retries as the promoter configured it; oras-go's own retrying
		// client would multiply the tries.
		Client: &http.Client{Transport: n.transport},
		Header: http.Header{"User-Agent": {"kropipe-promoter"}},
		Cache:  orasauth.NewCache(),
		Credential: func(ctx context.Context, hostport string) (orasauth.Credential, error) {
			return notationCredential(ctx, kc, hostport)
		},
	})
}

// newNotationRevocation is notation-go's default code-signing revocation check, with the CRLs
// it downloads kept in memory until their NextUpdate.
func newNotationRevocation() revocation.Validator {
	fetcher, err := crl.NewHTTPFetcher(&http.Client{Timeout: 5 * time.Second})
	if err != nil {
		panic(err) // only for a nil client
	}
	fetcher.Cache = &notationCRLCache{bundles: map[string]*crl.Bundle{}}
	v, err := revocation.NewWithOptions(revocation.Options{
		OCSPHTTPClient:   &http.Client{Timeout: 2 * time.Second},
		CRLFetcher:       fetcher,
		CertChainPurpose: purpose.CodeSigning,
	})
	if err != nil {
		panic(err) // only for an unknown purpose
	}
	return v
}

// notationCRLCache keeps downloaded CRLs; the fetcher refreshes one past its NextUpdate.
type notationCRLCache struct {
	mu      sync.Mutex
	bundles map[string]*crl.Bundle
}

func (c *notationCRLCache) Get(_ context.Context, url string) (*crl.Bundle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.bundles[url]; ok {
		return b, nil
	}
	return nil, crl.ErrCacheMiss
}

func (c *notationCRLCache) Set(_ context.Context, url string, b *crl.Bundle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bundles[url] = b
	return nil
}

// notationRevocationCheck runs the revocation check of one signature and keeps why its status
// stayed unknown: a server that did not answer is a reason to try again, not a verdict.
type notationRevocationCheck struct {
	revocation.Validator
	unknown error
}

func (r *notationRevocationCheck) ValidateContext(ctx context.Context, opts revocation.ValidateContextOptions) ([]*revocationresult.CertRevocationResult, error) {
	results, err := r.Validator.ValidateContext(ctx, opts)
	if err != nil {
		r.unknown = err
		return results, err
	}
	for i, c := range results {
		if c.Result != revocationresult.ResultUnknown {
			continue
		}
		var errs []error
		for _, s := range c.ServerResults {
			if s.Error != nil {
				errs = append(errs, s.Error)
			}
		}
		subject := "a certificate of the chain"
		if i < len(opts.CertChain) {
			subject = fmt.Sprintf("certificate %s", opts.CertChain[i].Subject)
		}
		r.unknown = fmt.Errorf("revocation status of %s unknown: %w", subject, errors.Join(errs...))
	}
	return results, err
}

// notationCredential gives oras-go the credentials the keychain holds for a registry.
func notationCredential(ctx context.Context, kc authn.Keychain, hostport string) (orasauth.Credential, error) {
	reg, err := name.NewRegistry(hostport, name.WeakValidation)
	if err != nil {
		return orasauth.EmptyCredential, fmt.Errorf("registry %q: %w", hostport, err)
	}
	a, err := authn.Resolve(ctx, kc, reg)
	if err != nil {
		return orasauth.EmptyCredential, fmt.Errorf("credentials for registry %s: %w", hostport, err)
	}
	cfg, err := authn.Authorization(ctx, a)
	if err != nil {
		return orasauth.EmptyCredential, fmt.Errorf("credentials for registry %s: %w", hostport, err)
	}
	c := orasauth.Credential{
		Username:     cfg.Username,
		Password:     cfg.Password,
		RefreshToken: cfg.IdentityToken,
		AccessToken:  cfg.RegistryToken,
	}
	if c.Username == "" && c.Password == "" && cfg.Auth != "" {
		// A docker config "auth" entry: base64 of user:password.
		b, err := base64.StdEncoding.DecodeString(cfg.Auth)
		if err != nil {
			return orasauth.EmptyCredential, fmt.Errorf("credentials for registry %s: auth is not base64", hostport)
		}
		c.Username, c.Password, _ = strings.Cut(string(b), ":")
	}
	return c, nil
}

// Verify checks that ref carries a Notation signature made by a certificate the policy's trust
// store and trusted identities accept. opts are not used: see NewNotation.
func (n *Notation) Verify(ctx context.Context, ref name.Digest, p Policy, _ ...remote.Option) (Result, error) {
	if p.Notation == nil {
		return Result{}, fmt.Errorf("policy %q has no notation section", p.Name)
	}
	key := notationCacheKey{image: ref.Context().Name() + "@" + ref.DigestStr(), policy: notationFingerprint(p.Name, p.Notation)}
	if a, ok := n.cached(key); ok {
		return a.result, a.err
	}
	pol, err := compileNotation(p.Name, p.Notation)
	if err != nil {
		return Result{}, err
	}
	res, notAfter, err := n.verify(ctx, ref, pol)
	switch {
	case err == nil && n.verifiedTTL > 0:
		until := n.clock.Now().Add(n.verifiedTTL)
		if notAfter.Before(until) {
			until = notAfter
		}
		n.remember(key, notationAnswer{result: res, until: until})
	case errors.Is(err, ErrUnverified) && n.unsignedTTL > 0:
		n.remember(key, notationAnswer{err: err, until: n.clock.Now().Add(n.unsignedTTL)})
	}
	return res, err
}

func (n *Notation) verify(ctx context.Context, ref name.Digest, pol *notationPolicy) (Result, time.Time, error) {
	repoName := ref.Context().Name()
	repo, desc, err := n.resolve(ctx, ref)
	if err != nil {
		return Result{}, time.Time{}, fmt.Errorf("image %s: reading its manifest to check its Notation signature: %w", ref, err)
	}
	if desc.Digest.String() != ref.DigestStr() {
		return Result{}, time.Time{}, fmt.Errorf("image %s: the registry answered with manifest %s", ref, desc.Digest)
	}

	revocationCheck := &notationRevocationCheck{Validator: n.revocation}
	verifier, err := pol.verifier(repoName, revocationCheck)
	if err != nil {
		return Result{}, time.Time{}, err
	}
	artifact := repoName + "@" + ref.DigestStr()
	var (
		reasons  []string
		read     int
		result   Result
		notAfter time.Time
		verified bool
		stopped  error // why the listing stopped early: a registry failure, a policy notation-go refused
		// undecided is a signature whose certificate's revocation status could not be learnt:
		// unless another signature verifies, the digest is neither verified nor unverified.
		undecided error
	)
	errDone := errors.New("done")
	err = repo.ListSignatures(ctx, desc, func(sigs []ocispec.Descriptor) error {
		for _, sig := range sigs {
			if read == notationMaxSignatures {
				return errDone
			}
			read++
			revocationCheck.unknown = nil
			blob, blobDesc, err := repo.FetchSignatureBlob(ctx, sig)
			if err != nil {
				if notationRegistryFailure(err) {
					stopped = fmt.Errorf("image %s: reading its Notation signature %s: %w", ref, sig.Digest, err)
					return errDone
				}
				reasons = append(reasons, fmt.Sprintf("unreadable Notation signature %s: %v", sig.Digest, err))
				continue
			}
			outcome, err := verifier.Verify(ctx, desc, blob, notation.VerifierVerifyOptions{
				ArtifactReference:  artifact,
				SignatureMediaType: blobDesc.MediaType,
			})
			if err == nil {
				chain := outcome.EnvelopeContent.SignerInfo.CertificateChain
				result = Result{SignedBy: pol.signedBy(chain[0])}
				notAfter = earliestNotAfter(chain)
				verified = true
				return errDone
			}
			if outcome == nil {
				// No verdict on this signature: the trust policy itself did not apply.
				stopped = fmt.Errorf("image %s: Notation trust policy: %w", ref, err)
				return errDone
			}
			if revocationCheck.unknown != nil && notationFailedAt(outcome, trustpolicy.TypeRevocation) {
				undecided = fmt.Errorf("image %s: Notation signature %s: %w", ref, sig.Digest, revocationCheck.unknown)
				continue
			}
			reasons = append(reasons, pol.explain(outcome, err))
		}
		return nil
	})
	if stopped != nil {
		return Result{}, time.Time{}, stopped
	}
	if err != nil && !errors.Is(err, errDone) {
		return Result{}, time.Time{}, fmt.Errorf("image %s: listing its Notation signatures: %w", ref, err)
	}
	if verified {
		return result, notAfter, nil
	}
	if undecided != nil {
		return Result{}, time.Time{}, undecided
	}
	switch len(reasons) {
	case 0:
		return Result{}, time.Time{}, notationUnverified("no Notation signature")
	case 1:
		return Result{}, time.Time{}, notationUnverified(reasons[0])
	}
	slices.Sort(reasons)
	reasons = slices.Compact(reasons)
	return Result{}, time.Time{}, notationUnverified(fmt.Sprintf("no Notation signature the policy accepts among %d: %s", read, strings.Join(reasons, "; ")))
}

// resolve reads ref's manifest descriptor (the payload a signature must name), over HTTPS, or
// over plain HTTP for an insecure registry where HTTPS fails, and returns the repository the
// signatures are read from the same way.
func (n *Notation) resolve(ctx context.Context, ref name.Digest) (notationregistry.Repository, ocispec.Descriptor, error) {
	host := ref.Context().RegistryStr()
	open := func(plain bool) (notationregistry.Repository, ocispec.Descriptor, error) {
		r, err := orasremote.NewRepository(ref.Context().Name())
		if err != nil {
			return nil, ocispec.Descriptor{}, err
		}
		r.Client = n.client.Load()
		r.PlainHTTP = plain
		repo := notationregistry.NewRepository(r)
		desc, err := repo.Resolve(ctx, ref.DigestStr())
		return repo, desc, err
	}
	if _, plain := n.plainHosts.Load(host); plain || !n.insecure(host) {
		return open(plain)
	}
	repo, desc, err := open(false)
	var uerr *url.Error
	if err == nil || ctx.Err() != nil || !errors.As(err, &uerr) {
		return repo, desc, err
	}
	// HTTPS did not connect: an insecure registry may speak plain HTTP only.
	repo, desc, plainErr := open(true)
	if plainErr != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("over HTTPS: %w; over HTTP: %w", err, plainErr)
	}
	n.plainHosts.Store(host, true)
	return repo, desc, nil
}

// notationRegistryFailure tells a registry that could not answer (the stage holds and tries
// again) from a signature that is broken (a reason the digest does not verify).
func notationRegistryFailure(err error) bool {
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode != http.StatusNotFound
	}
	var uerr *url.Error
	return errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// notationUnverifiedError is a digest that does not satisfy a Notation policy; its message is
// the reason alone, for "2.1.0: no Notation signature".
type notationUnverifiedError struct{ reason string }

func notationUnverified(reason string) error         { return &notationUnverifiedError{reason: reason} }
func (e *notationUnverifiedError) Error() string     { return e.reason }
func (e *notationUnverifiedError) Is(err error) bool { return err == ErrUnverified }

// notationPolicy is a NotationPolicy parsed once: its trusted certificates and identities.
type notationPolicy struct {
	name       string
	storeRef   string
	certs      []*x509.Certificate
	identities []string
}

// notationStoreName is the name of the one trust store a policy has, as notation-go's trust
// policy refers to it (ca:<name>); messages name the store by TrustStoreRef instead.
const notationStoreName = "kropipe"

var notationStatementName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// Validate says whether the policy can be used: its trust store holds CA (or self-signed)
// certificates and its trusted identities are "*" or x509.subject distinguished names. The
// promoter calls it when it reads the policy, so a broken one is named at start.
func (p *NotationPolicy) Validate() error {
	_, err := compileNotation("", p)
	return err
}

func compileNotation(policyName string, p *NotationPolicy) (*notationPolicy, error) {
	where := "notation policy"
	if policyName != "" {
		where = fmt.Sprintf("notation policy %q", policyName)
	}
	storeRef := p.TrustStoreRef
	if storeRef == "" {
		storeRef = "(inline)"
	}
	certs, err := notationTrustedCerts(p.TrustStore)
	if err != nil {
		return nil, fmt.Errorf("%s: trust store %s: %w", where, storeRef, err)
	}
	if len(p.TrustedIdentities) == 0 {
		return nil, fmt.Errorf(`%s: trustedIdentities is empty: list the certificate subjects to accept (x509.subject:C=US, O=Example, CN=release) or "*" for any the trust store %s trusts`, where, storeRef)
	}
	identities := make([]string, len(p.TrustedIdentities))
	for i, id := range p.TrustedIdentities {
		id = strings.TrimSpace(id)
		if id != "*" && !strings.Contains(id, ":") {
			// A bare distinguished name: the only identity kind notation-go checks itself.
			id = "x509.subject:" + id
		}
		identities[i] = id
	}
	pol := &notationPolicy{
		name:       notationStatementName.ReplaceAllString(policyName, "-"),
		storeRef:   p.TrustStoreRef,
		certs:      certs,
		identities: identities,
	}
	if pol.name == "" || pol.name == "-" {
		pol.name = "kropipe"
	}
	// notation-go validates the identities (distinguished names, "*" alone) with the document.
	if err := pol.document("kropipe.invalid/policy").Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return pol, nil
}

// notationFingerprint identifies a policy in the cache: every field that changes a verdict or
// the words of one.
func notationFingerprint(policyName string, p *NotationPolicy) [sha256.Size]byte {
	h := sha256.New()
	for _, part := range append([]string{policyName, p.TrustStoreRef, string(p.TrustStore)}, p.TrustedIdentities...) {
		fmt.Fprintf(h, "%d:%s\n", len(part), part)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// notationTrustedCerts reads the PEM certificates of a trust store and checks them as
// notation-go checks a trust store directory's files.
func notationTrustedCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
	}
	if err := truststore.ValidateCertificates(certs); err != nil {
		return nil, err
	}
	return certs, nil
}

// document is the trust policy for one repository: strict verification against the policy's
// one CA trust store and identities.
func (p *notationPolicy) document(repository string) *trustpolicy.Document {
	return &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  p.name,
			RegistryScopes:        []string{repository},
			SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: trustpolicy.LevelStrict.Name},
			TrustStores:           []string{string(truststore.TypeCA) + ":" + notationStoreName},
			TrustedIdentities:     p.identities,
		}},
	}
}

func (p *notationPolicy) verifier(repository string, rev revocation.Validator) (notation.Verifier, error) {
	v, err := notationverifier.NewWithOptions(p.document(repository), notationTrustStore(p.certs), nil,
		notationverifier.VerifierOptions{RevocationCodeSigningValidator: rev})
	if err != nil {
		return nil, fmt.Errorf("notation trust policy for %s: %w", repository, err)
	}
	return v, nil
}

// notationTrustStore is the policy's trust store in memory.
type notationTrustStore []*x509.Certificate

func (s notationTrustStore) GetCertificates(_ context.Context, t truststore.Type, named string) ([]*x509.Certificate, error) {
	if t != truststore.TypeCA || named != notationStoreName {
		return nil, truststore.TrustStoreError{Msg: fmt.Sprintf("the policy has no %s trust store %q", t, named)}
	}
	return s, nil
}

func (p *notationPolicy) signedBy(leaf *x509.Certificate) string {
	if p.storeRef == "" {
		return leaf.Subject.String() + " (Notation)"
	}
	return fmt.Sprintf("%s (Notation, trust store %s)", leaf.Subject, p.storeRef)
}

func (p *notationPolicy) store() string {
	if p.storeRef == "" {
		return "the trust store"
	}
	return "trust store " + p.storeRef
}

// explain says why one signature did not verify, from the first check notation-go enforced
// and failed.
func (p *notationPolicy) explain(outcome *notation.VerificationOutcome, err error) string {
	subject := "an unknown signer"
	var chain []*x509.Certificate
	if outcome.EnvelopeContent != nil {
		chain = outcome.EnvelopeContent.SignerInfo.CertificateChain
	}
	if len(chain) > 0 {
		subject = chain[0].Subject.String()
	}
	for _, r := range outcome.VerificationResults {
		if r == nil || r.Error == nil || r.Action != trustpolicy.ActionEnforce {
			continue
		}
		switch r.Type {
		case trustpolicy.TypeIntegrity:
			return fmt.Sprintf("a Notation signature that does not verify: %v", r.Error)
		case trustpolicy.TypeAuthenticity:
			var untrusted *notationcore.SignatureAuthenticityError
			var inconclusive notation.VerificationInconclusiveError
			switch {
			case errors.As(r.Error, &untrusted):
				return fmt.Sprintf("Notation signature by %s, which %s does not trust", subject, p.store())
			case errors.As(r.Error, &inconclusive):
				return fmt.Sprintf("Notation signature by %s: %v", subject, r.Error)
			}
			return fmt.Sprintf("Notation signature by %s, which is not one of the trusted identities %s", subject, strings.Join(p.identities, ", "))
		case trustpolicy.TypeExpiry:
			return fmt.Sprintf("Notation signature by %s: %v", subject, r.Error)
		case trustpolicy.TypeAuthenticTimestamp:
			if first := earliestNotAfter(chain); !first.IsZero() && time.Now().After(first) {
				return fmt.Sprintf("Notation signature by %s, whose certificate expired on %s (no timestamp is trusted)", subject, first.UTC().Format(time.RFC3339))
			}
			return fmt.Sprintf("Notation signature by %s, outside its certificate's validity: %v", subject, r.Error)
		case trustpolicy.TypeRevocation:
			return fmt.Sprintf("Notation signature by %s, whose certificate is revoked (%v)", subject, r.Error)
		}
	}
	if outcome.EnvelopeContent != nil {
		var payload struct {
			TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
		}
		if json.Unmarshal(outcome.EnvelopeContent.Payload.Content, &payload) == nil && payload.TargetArtifact.Digest != "" {
			return fmt.Sprintf("Notation signature by %s over another digest (%s)", subject, payload.TargetArtifact.Digest)
		}
	}
	return fmt.Sprintf("Notation signature by %s: %v", subject, err)
}

// notationFailedAt says whether the enforced check of kind t is the one a signature failed.
func notationFailedAt(outcome *notation.VerificationOutcome, t trustpolicy.ValidationType) bool {
	for _, r := range outcome.VerificationResults {
		if r != nil && r.Error != nil && r.Action == trustpolicy.ActionEnforce {
			return r.Type == t
		}
	}
	return false
}

func earliestNotAfter(chain []*x509.Certificate) time.Time {
	var first time.Time
	for _, c := range chain {
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first
}

type notationCacheKey struct {
	image  string // repository@digest
	policy [sha256.Size]byte
}

type notationAnswer struct {
	result Result
	err    error
	until  time.Time
}

func (n *Notation) cached(key notationCacheKey) (notationAnswer, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.cache[key]
	if !ok {
		return notationAnswer{}, false
	}
	if !n.clock.Now().Before(a.until) {
		delete(n.cache, key)
		return notationAnswer{}, false
	}
	return a, true
}

func (n *Notation) remember(key notationCacheKey, a notationAnswer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.clock.Now()
	// Forget what expired, so the cache holds the digests still being asked about.
	for k, old := range n.cache {
		if !now.Before(old.until) {
			delete(n.cache, k)
		}
	}
	n.cache[key] = a
}
