package signature

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// cosignSignPredicate is the in-toto predicate type cosign's bundle-format signatures
// (cosign sign --new-bundle-format) carry in their DSSE envelope.
const cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

// cosignError is an ErrUnverified whose message says what is missing.
type cosignError struct{ msg string }

func (e *cosignError) Error() string        { return e.msg }
func (e *cosignError) Is(target error) bool { return target == ErrUnverified }

// candidate is one signature or attestation found for the image, ready for sigstore-go.
type candidate struct {
	entity verify.SignedEntity
	// names: the digests it says it signs ("sha256:…").
	names []string
	// artifact is what it is verified against: the image digest (bundles), the payload it
	// signs (legacy .sig, whose payload then names the digest).
	artifact func() verify.ArtifactPolicyOption
	// predicateType of a DSSE statement ("" for a message signature).
	predicateType string
	from          string
}

// miss is why one candidate did not satisfy the policy; rank orders how telling it is.
type miss struct {
	rank int
	why  string
}

const (
	rankOtherDigest = iota + 1
	rankOtherKind
	rankUnreadable
	rankTrust
	rankSigner
)

// verifySignature finds a signature satisfying the policy: first among the referrers'
// bundles, then under the legacy .sig tag.
func (chk *cosignCheck) verifySignature(ctx context.Context, f *finder, d artifactDigest) (Result, error) {
	var best *miss
	seen := 0
	note := func(m *miss) {
		if best == nil || m.rank > best.rank {
			best = m
		}
	}
	bundles, err := f.referrerBundles(ctx)
	if err != nil {
		return Result{}, err
	}
	for _, fb := range bundles {
		c, ok := bundleCandidate(fb, d)
		if !ok || (c.predicateType != "" && c.predicateType != cosignSignPredicate) {
			continue // an attestation, not a signature
		}
		seen++
		res, m := chk.try(c, d)
		if m == nil {
			return signedBy(chk, res), nil
		}
		note(m)
	}
	layers, err := f.legacyLayers(ctx, ".sig")
	if err != nil {
		return Result{}, err
	}
	for _, l := range layers {
		seen++
		e, err := parseLegacySignature(l)
		if err != nil {
			note(&miss{rankUnreadable, fmt.Sprintf("signature in %s unreadable: %v", l.from, err)})
			continue
		}
		named, err := signedDigest(e.payload)
		if err != nil {
			note(&miss{rankUnreadable, fmt.Sprintf("signature in %s unreadable: %v", l.from, err)})
			continue
		}
		payload := e.payload
		c := candidate{
			entity:   e,
			names:    []string{named},
			artifact: func() verify.ArtifactPolicyOption { return verify.WithArtifact(bytes.NewReader(payload)) },
			from:     l.from,
		}
		res, m := chk.try(c, d)
		if m == nil {
			return signedBy(chk, res), nil
		}
		note(m)
	}
	if seen == 0 {
		return Result{}, &cosignError{fmt.Sprintf("no signature by %s (the image has no cosign signature)", chk.want)}
	}
	return Result{}, &cosignError{fmt.Sprintf("no signature by %s: %s", chk.want, best.why)}
}

func signedBy(chk *cosignCheck, res *verify.VerificationResult) Result {
	if chk.keyed || res.Signature == nil || res.Signature.Certificate == nil {
		return Result{SignedBy: chk.want}
	}
	s := res.Signature.Certificate
	return Result{SignedBy: s.SubjectAlternativeName + " (issuer " + s.Issuer + ")"}
}

// bundleCandidate reads what a bundle signs. ok is false for a bundle with no content.
func bundleCandidate(fb foundBundle, d artifactDigest) (candidate, bool) {
	c := candidate{
		entity:   fb.b,
		artifact: func() verify.ArtifactPolicyOption { return verify.WithArtifactDigest("sha256", d.raw) },
		from:     fb.from,
	}
	sc, err := fb.b.SignatureContent()
	if err != nil {
		return c, false
	}
	if env := sc.EnvelopeContent(); env != nil {
		st, err := env.Statement()
		if err != nil {
			return c, false
		}
		c.predicateType = st.GetPredicateType()
		for _, s := range st.GetSubject() {
			if h, ok := s.GetDigest()["sha256"]; ok {
				c.names = append(c.names, "sha256:"+h)
			}
		}
		return c, true
	}
	if ms := sc.MessageSignatureContent(); ms != nil {
		if ms.DigestAlgorithm() == "SHA2_256" {
			c.names = []string{"sha256:" + hex.EncodeToString(ms.Digest())}
		}
		return c, true
	}
	return c, false
}

// try verifies one candidate with sigstore-go, and says why it does not count when it
// does not.
func (chk *cosignCheck) try(c candidate, d artifactDigest) (*verify.VerificationResult, *miss) {
	if !slices.Contains(c.names, d.str) {
		other := "no digest"
		if len(c.names) > 0 {
			other = "digest " + c.names[0]
		}
		return nil, &miss{rankOtherDigest, fmt.Sprintf("the signature found (%s) is over another image (%s), as when a tag is pushed again", c.from, other)}
	}
	vc, err := c.entity.VerificationContent()
	if err != nil {
		return nil, &miss{rankUnreadable, fmt.Sprintf("signature in %s has no certificate or key: %v", c.from, err)}
	}
	cert := vc.Certificate()
	switch {
	case chk.keyed && cert != nil:
		return nil, &miss{rankOtherKind, fmt.Sprintf("signed keyless by %s, not with the key", describeCert(cert))}
	case !chk.keyed && cert == nil:
		return nil, &miss{rankOtherKind, "signed with a key, not keyless"}
	}
	if chk.requireTlog && !hasTlog(c.entity) {
		return nil, &miss{rankTrust, "no transparency log entry"}
	}
	v, err := chk.verifier(c.entity)
	if err != nil {
		return nil, &miss{rankUnreadable, fmt.Sprintf("signature in %s: %v", c.from, err)}
	}
	var pol []verify.PolicyOption
	if chk.keyed {
		pol = append(pol, verify.WithKey())
	} else {
		pol = append(pol, verify.WithCertificateIdentity(chk.identity))
	}
	res, err := v.Verify(c.entity, verify.NewPolicy(c.artifact(), pol...))
	if err == nil {
		return res, nil
	}
	return nil, chk.explain(c, err)
}

// explain turns a sigstore-go failure into what the user must know.
func (chk *cosignCheck) explain(c candidate, err error) *miss {
	var idErr *verify.ErrNoMatchingCertificateIdentity
	msg := err.Error()
	switch {
	case errors.As(err, &idErr):
		leaf, _ := c.entity.VerificationContent()
		return &miss{rankSigner, "signed by another identity: " + describeCert(leaf.Certificate())}
	case chk.keyed && strings.Contains(msg, "failed to verify signature"):
		return &miss{rankSigner, "signed by another key"}
	case strings.Contains(msg, "outside certificate validity"),
		strings.Contains(msg, "leaf certificate verification failed") && chk.certExpired(c):
		if hasTimestamps(c.entity) {
			return &miss{rankTrust, "certificate not valid when the signature was timestamped"}
		}
		return &miss{rankTrust, "certificate expired and no signed timestamp"}
	case strings.Contains(msg, "leaf certificate verification failed"):
		return &miss{rankTrust, "certificate not issued by " + chk.rootRef}
	case strings.Contains(msg, "not enough verified log entries"):
		return &miss{rankTrust, "transparency log entry is not from a log " + chk.rootRef + " trusts"}
	case strings.Contains(msg, "failed to verify log inclusion"):
		return &miss{rankTrust, fmt.Sprintf("transparency log entry does not verify against %s: %v", chk.rootRef, err)}
	case strings.Contains(msg, "failed to verify timestamps"):
		if !hasTimestamps(c.entity) {
			return &miss{rankTrust, "no signed timestamp"}
		}
		return &miss{rankTrust, fmt.Sprintf("signed timestamp does not verify against %s: %v", chk.rootRef, err)}
	case strings.Contains(msg, "failed to verify signature"):
		return &miss{rankSigner, "signature does not verify: " + msg}
	}
	return &miss{rankTrust, "signature does not verify: " + msg}
}

// certExpired says whether the candidate's certificate chains to the trusted root at a time
// inside its validity: then it failed only for want of a time to check it at.
func (chk *cosignCheck) certExpired(c candidate) bool {
	vc, err := c.entity.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		return false
	}
	leaf := vc.Certificate()
	at := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	for _, ca := range chk.material.FulcioCertificateAuthorities() {
		if _, err := ca.Verify(leaf, at); err == nil {
			return true
		}
	}
	return false
}

func describeCert(cert *x509.Certificate) string {
	if cert == nil {
		return "no certificate"
	}
	s, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return "an unreadable certificate"
	}
	return s.SubjectAlternativeName + " (issuer " + s.Issuer + ")"
}
