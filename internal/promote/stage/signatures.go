package stage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// This file holds what a stage's signature policies (Spec.Signatures) change: a tag is a
// candidate only once its digest, the one the warehouse proved from the manifest bytes,
// verifies; a set is written only when each changed member verifies right before the write;
// the promotion commit names who signed it.

// WithSignatureVerifier sets how the digests of stages with Spec.Signatures are checked
// (default: NewSignatureVerifier over the engine's warehouse, made on first use).
func WithSignatureVerifier(v signature.Verifier) Option {
	return func(e *Engine) { e.sig.verifier = v }
}

// WithSignatureChecks calls observe after every signature check with its result,
// SignatureVerified, SignatureUnverified or SignatureError (e.g. to count them). Checks
// answered from the verifier's cache count too. It must be fast and safe for concurrent use.
func WithSignatureChecks(observe func(result string)) Option {
	return func(e *Engine) { e.sig.observe = observe }
}

// Results of a signature check, as WithSignatureChecks reports them.
const (
	SignatureVerified   = "verified"
	SignatureUnverified = "unverified"
	// SignatureError: it could not be decided (the registry failed); the stage holds.
	SignatureError = "error"
)

// maxUnsigned bounds how many tags one discovery skips as unsigned before it stops looking
// further down: each costs its signature requests the first time it is seen.
const maxUnsigned = 20

// NewSignatureVerifier is the verifier of cosign (key, keyless, provenance) and Notation
// policies that reaches registries the way wh does: its transport (rate limits, retries),
// its credentials and its insecure hosts. clk dates the verifiers' caches; cosignOpts add to
// the cosign verifier's (e.g. signature.WithPublicGoodRoot, the public-good root from TUF).
func NewSignatureVerifier(wh *warehouse.Warehouse, clk clock.PassiveClock, cosignOpts ...signature.CosignOption) (signature.Verifier, error) {
	cosign, err := signature.NewCosign(append([]signature.CosignOption{signature.WithCosignClock(clk)}, cosignOpts...)...)
	if err != nil {
		return nil, err
	}
	notation := signature.NewNotation(
		signature.WithNotationTransport(wh.Transport()),
		signature.WithNotationKeychain(wh.Keychain()),
		signature.WithNotationInsecure(wh.Insecure),
		signature.WithNotationClock(clk),
	)
	return signature.NewVerifier(cosign, notation), nil
}

// signatures is the engine's signature checking.
type signatures struct {
	verifier signature.Verifier
	observe  func(result string)
	once     sync.Once
	err      error
}

func (e *Engine) signatureVerifier() (signature.Verifier, error) {
	e.sig.once.Do(func() {
		if e.sig.verifier == nil {
			e.sig.verifier, e.sig.err = NewSignatureVerifier(e.wh, e.clock)
		}
	})
	return e.sig.verifier, e.sig.err
}

func (e *Engine) observeSignature(result string) {
	if e.sig.observe != nil {
		e.sig.observe(result)
	}
}

// checkSigned checks f's digest under every policy. It returns each policy's result, in
// order, when all hold; unverified says why f does not satisfy them ("2.1.0: no signature
// by …"), "" when it does; err says why it could not be decided: the stage holds.
func (e *Engine) checkSigned(ctx context.Context, policies []signature.Policy, f freight.Freight) (results []signature.Result, unverified string, err error) {
	if len(policies) == 0 {
		return nil, "", nil
	}
	what := f.Tag
	if what == "" {
		what = shortDigest(f.Digest)
	}
	if f.Digest == "" {
		return nil, "", fmt.Errorf("%s:%s: no digest known, so its signature cannot be checked: promote it from the registry by its tag", f.Image, f.Tag)
	}
	v, err := e.signatureVerifier()
	if err != nil {
		return nil, "", fmt.Errorf("signature verifier: %w", err)
	}
	ref, err := e.wh.DigestReference(f.Image, f.Digest)
	if err != nil {
		return nil, "", err
	}
	opts := e.wh.RemoteOptions()
	for _, p := range policies {
		r, err := v.Verify(ctx, ref, p, opts...)
		switch {
		case errors.Is(err, signature.ErrUnverified):
			e.observeSignature(SignatureUnverified)
			return nil, what + ": " + err.Error(), nil
		case err != nil:
			e.observeSignature(SignatureError)
			return nil, "", fmt.Errorf("checking the signature of %s (%s) under policy %q: %w; the stage holds and tries again next pass", what, shortDigest(f.Digest), p.Name, err)
		}
		e.observeSignature(SignatureVerified)
		results = append(results, r)
	}
	return results, "", nil
}

// policyKey identifies a list of policies, key material included, so stages with the same
// image, selection and policies share one discovery.
func policyKey(ps []signature.Policy) string {
	if len(ps) == 0 {
		return ""
	}
	h := sha256.New()
	for _, p := range ps {
		js, _ := json.Marshal(p)
		h.Write(js)
		if p.Cosign != nil {
			h.Write(p.Cosign.PublicKey)
			h.Write(p.Cosign.TrustedRoot)
		}
		if p.Notation != nil {
			h.Write(p.Notation.TrustStore)
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// discoverSigned is look.Discover taking only a tag whose digest verifies under policies:
// a tag that does not is skipped (skipped says why) and the next best is tried. A digest
// that cannot be checked (the registry failed) is an error: nothing is taken this pass.
func (e *Engine) discoverSigned(ctx context.Context, look *warehouse.Pass, image string, sel warehouse.Selection, policies []signature.Policy, skip []string) (freight.Freight, warehouse.Report, []string, error) {
	var skipped []string
	for {
		f, rep, err := look.Discover(ctx, image, sel, skip...)
		if err != nil || len(policies) == 0 {
			return f, rep, skipped, err
		}
		_, why, err := e.checkSigned(ctx, policies, f)
		if err != nil {
			return freight.Freight{}, rep, skipped, err
		}
		if why == "" {
			return f, rep, skipped, nil
		}
		skipped = append(skipped, why)
		if sel.Strategy == warehouse.StrategyDigest {
			return freight.Freight{}, rep, skipped, fmt.Errorf("%w: %s", warehouse.ErrNoMatch, why)
		}
		if len(skipped) >= maxUnsigned {
			return freight.Freight{}, rep, skipped, fmt.Errorf("%w: the %d best tags of %s are not signed as required", warehouse.ErrNoMatch, len(skipped), image)
		}
		skip = append(skip[:len(skip):len(skip)], f.Tag)
	}
}

// skippedNote is what a status reason adds for tags skipped as unsigned.
func skippedNote(skipped []string) string {
	if len(skipped) == 0 {
		return ""
	}
	return "; not signed as required, skipped: " + strings.Join(skipped, "; ")
}

// signatureHold says whether a unit's candidate set may move under its members' policies: a
// release group holds while a member's best tag is unsigned (it moves only when every member
// does), and a member taking its upstream's freight checks it under its own policies. It
// returns the member concerned and why the unit holds, or err when a check could not be
// decided.
func (e *Engine) signatureHold(ctx context.Context, u *group, cand freight.Set, obs map[string]*observation) (member, held string, err error) {
	for i, m := range u.members {
		o := obs[m.Name]
		if !u.lone && u.up == nil && len(o.skipped) > 0 {
			// The best tag's reason: the member's release the set waits for.
			return m.Name, fmt.Sprintf("held: member %s: %s", m.Name, o.skipped[0]), nil
		}
		if u.up == nil || len(m.Signatures) == 0 || i >= len(cand) || cand[i].Value == o.current {
			continue
		}
		_, why, err := e.checkSigned(ctx, m.Signatures, cand[i].Freight)
		if err != nil {
			return m.Name, "", err
		}
		if why != "" {
			if u.lone {
				return m.Name, fmt.Sprintf("held: %s verified %s, but %s", u.up.Name, cand[i].Value, why), nil
			}
			return m.Name, fmt.Sprintf("held: member %s: %s verified %s, but %s", m.Name, u.up.Name, cand[i].Value, why), nil
		}
	}
	return "", "", nil
}

// holdUnsigned turns a decision to move into a hold when signatureHold says the candidate set
// may not move, and into a failure when that could not be decided (the next pass asks again).
func (e *Engine) holdUnsigned(ctx context.Context, in input, d decision) decision {
	switch {
	case d.Cand == nil, d.Decision == DecisionFailed, d.Decision == DecisionBlocked, d.Decision == DecisionUpToDate:
		return d
	}
	member, held, err := e.signatureHold(ctx, in.u, d.Cand, in.obs)
	switch {
	case err != nil:
		if in.u.lone {
			member = ""
		}
		return decision{Decision: DecisionFailed, Err: err, Member: member}
	case held == "":
		return d
	}
	out := decision{Decision: DecisionHold, Reason: held, Cand: d.Cand}
	verifyRunning(in, &out)
	return out
}
