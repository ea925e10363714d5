package signature

import (
	"errors"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/verify"
)

// FieldError is a problem with one field of a policy, named as promoter.yaml names it
// (cosign.identity, notation.trustStore; "" for the policy as a whole).
type FieldError struct {
	Field string
	Msg   string // what is wrong and what to write instead
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Validate checks p as the verifiers read it, so that a policy that cannot work is named when
// the configuration is read, not at the first candidate: which sections go together, keys,
// trusted roots and trust stores that parse, regular expressions that compile. Key material
// must already be read (PublicKey, TrustedRoot, TrustStore). Every problem is a *FieldError,
// joined.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case p.Cosign == nil && p.Notation == nil:
		bad("", "gives neither cosign nor notation; say how the image is signed: cosign (key, or identity and issuer) or notation (trustStore and trustedIdentities)")
	case p.Cosign != nil && p.Notation != nil:
		bad("notation", "is given together with cosign; a policy checks one kind of signature: make two policies and require both")
	}
	if pp := p.Provenance; pp != nil {
		if p.Cosign == nil {
			bad("provenance", "needs cosign: the provenance attestation must be signed, and cosign says by which key or identity; add cosign to the policy")
		}
		if pp.BuilderID == "" && pp.SourceRepository == "" {
			bad("provenance", "needs builderID or sourceRepository (or both), e.g. builderID: https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0")
		}
		if _, err := newProvenanceCheck(p.Name, &ProvenancePolicy{BuilderID: pp.BuilderID, BuilderIDRegexp: pp.BuilderIDRegexp}); err != nil {
			bad("provenance.builderID", "%q is not a regular expression (builderIDRegexp is true): %v", pp.BuilderID, errors.Unwrap(err))
		}
		if _, err := newProvenanceCheck(p.Name, &ProvenancePolicy{SourceRepository: pp.SourceRepository, SourceRepositoryRegexp: pp.SourceRepositoryRegexp}); err != nil {
			bad("provenance.sourceRepository", "%q is not a regular expression (sourceRepositoryRegexp is true): %v", pp.SourceRepository, errors.Unwrap(err))
		}
	}
	if cp := p.Cosign; cp != nil {
		validateCosign(cp, bad)
		if len(errs) == 0 {
			// What the verifier itself refuses (a key that does not parse, for one).
			if _, err := newCosignCheck(p, nil, ""); err != nil {
				field := "cosign"
				if len(cp.PublicKey) > 0 {
					field = "cosign.key"
				}
				bad(field, "%v", err)
			}
		}
	}
	if np := p.Notation; np != nil {
		n := len(errs)
		if len(np.TrustStore) == 0 {
			bad("notation.trustStore", "%s; give a file of PEM CA certificates (-----BEGIN CERTIFICATE-----) that Notation signatures must chain to", missing(np.TrustStoreRef))
		}
		if len(np.TrustedIdentities) == 0 {
			bad("notation.trustedIdentities", `is empty; list the signing certificates' subjects to accept, e.g. ["x509.subject: C=US, O=Example, CN=release"], or ["*"] for any the trust store trusts`)
		}
		if len(errs) == n {
			if err := np.Validate(); err != nil {
				bad("notation", "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

// missing says that a file or Secret holding key material is absent or empty.
func missing(ref string) string {
	if ref == "" {
		return "is missing"
	}
	return fmt.Sprintf("%s is empty", ref)
}

// validateCosign checks which of key and keyless identity are given, and their regular
// expressions and trusted root, field by field.
func validateCosign(cp *CosignPolicy, bad func(field, format string, args ...any)) {
	keyed := len(cp.PublicKey) > 0 || cp.KeyRef != ""
	keyless := cp.Identity != "" || cp.IdentityRegexp != "" || cp.Issuer != "" || cp.IssuerRegexp != ""
	switch {
	case keyed && keyless:
		bad("cosign.key", "is given together with a keyless identity or issuer; give either key (a public key) or identity and issuer (keyless), not both")
	case !keyed && !keyless:
		bad("cosign", "needs key (a PEM public key file) or, for keyless signatures, identity (or identityRegexp) and issuer (or issuerRegexp), as cosign verify --certificate-identity --certificate-oidc-issuer takes them")
	case keyed && len(cp.PublicKey) == 0:
		bad("cosign.key", "%s; give a PEM public key (cosign.pub, -----BEGIN PUBLIC KEY-----)", missing(cp.KeyRef))
	case keyless:
		for _, f := range []struct{ exact, re, name, example string }{
			{cp.Identity, cp.IdentityRegexp, "identity", "identity: https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.0.0 or identityRegexp: ^https://github.com/org/repo/.github/workflows/release.yml@refs/tags/"},
			{cp.Issuer, cp.IssuerRegexp, "issuer", "issuer: https://token.actions.githubusercontent.com"},
		} {
			switch {
			case f.exact == "" && f.re == "":
				bad("cosign."+f.name, "is missing; keyless signatures need both identity and issuer, e.g. %s", f.example)
			case f.exact != "" && f.re != "":
				bad("cosign."+f.name+"Regexp", "is given together with %s; give one: %s (exact) or %sRegexp (a regular expression)", f.name, f.name, f.name)
			}
		}
		if _, err := verify.NewSANMatcher("", cp.IdentityRegexp); err != nil {
			bad("cosign.identityRegexp", "%q is not a regular expression: %v", cp.IdentityRegexp, err)
		}
		if _, err := verify.NewIssuerMatcher("", cp.IssuerRegexp); err != nil {
			bad("cosign.issuerRegexp", "%q is not a regular expression: %v", cp.IssuerRegexp, err)
		}
	}
	switch {
	case len(cp.TrustedRoot) > 0:
		if _, err := trustedRoot(cp.TrustedRoot); err != nil {
			bad("cosign.trustedRoot", "%s is not a Sigstore trusted_root.json: %v; create one with cosign trusted-root create, or leave trustedRoot out for the public-good Sigstore", orInline(cp.TrustedRootRef), err)
		}
	case cp.TrustedRootRef != "":
		bad("cosign.trustedRoot", "%s; give a trusted_root.json, or leave trustedRoot out for the public-good Sigstore", missing(cp.TrustedRootRef))
	}
}

func orInline(ref string) string {
	if ref == "" {
		return "the trusted root"
	}
	return ref
}
