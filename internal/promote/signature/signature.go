// Package signature decides whether an image digest is signed (and, optionally, built) the way
// a stage's policy requires, before the promoter writes it: cosign signatures made with a key or
// keyless (Fulcio certificate, Rekor inclusion, signed timestamps), verified with sigstore-go;
// Notation signatures, verified with notation-go; an in-toto SLSA provenance attestation.
//
// A Verifier answers for one digest the promoter proved from the manifest bytes, never for a
// tag: a tag pushed again names other bytes, and their signature is checked anew. Answers are
// cached by digest and policy, so a pass that finds nothing new asks the registry nothing.
package signature

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Policy is what a stage requires of an image (kropipe.io/verify-signature, signature: in
// promoter.yaml). Every policy given must hold.
type Policy struct {
	// Name identifies the policy in messages and in the cache key.
	Name string `json:"name,omitempty"`
	// Cosign, Notation: exactly one of them, or neither for a provenance-only policy.
	Cosign   *CosignPolicy   `json:"cosign,omitempty"`
	Notation *NotationPolicy `json:"notation,omitempty"`
	// Provenance, when set, also requires an in-toto SLSA provenance attestation signed as
	// Cosign says, whose builder and source match.
	Provenance *ProvenancePolicy `json:"provenance,omitempty"`
}

// CosignPolicy is a cosign signature: with a public key, or keyless.
type CosignPolicy struct {
	// PublicKey is a PEM public key (ECDSA, Ed25519, RSA): key-based signatures.
	PublicKey []byte `json:"-"`
	// KeyRef says where PublicKey came from (a file, a Secret), for messages.
	KeyRef string `json:"key,omitempty"`

	// Keyless: the certificate's identity (SAN) and OIDC issuer, exact or a regular
	// expression (as cosign verify --certificate-identity[-regexp] --certificate-oidc-issuer[-regexp]).
	Identity       string `json:"identity,omitempty"`
	IdentityRegexp string `json:"identityRegexp,omitempty"`
	Issuer         string `json:"issuer,omitempty"`
	IssuerRegexp   string `json:"issuerRegexp,omitempty"`
	// TrustedRoot is a trusted_root.json (a private Sigstore); empty: the public-good root
	// embedded in the binary.
	TrustedRoot []byte `json:"-"`
	// TrustedRootRef says where TrustedRoot came from, for messages.
	TrustedRootRef string `json:"trustedRoot,omitempty"`
	// IgnoreTlog and IgnoreTimestamps relax keyless verification: by default a transparency
	// log inclusion and a signed timestamp (or the log's integrated time) are required.
	IgnoreTlog       bool `json:"ignoreTlog,omitempty"`
	IgnoreTimestamps bool `json:"ignoreTimestamps,omitempty"`
	// RequireTlog also requires a transparency log inclusion of a key-based signature (a key
	// signed offline, with cosign --tlog-upload=false, has none, so by default it is optional).
	RequireTlog bool `json:"requireTlog,omitempty"`
}

// NotationPolicy is a Notation signature under a trust policy and an X.509 trust store.
type NotationPolicy struct {
	// TrustStore holds the trusted root certificates (PEM).
	TrustStore    []byte `json:"-"`
	TrustStoreRef string `json:"trustStore,omitempty"`
	// TrustedIdentities are the x509.subject identities accepted ("*": any the store trusts).
	TrustedIdentities []string `json:"trustedIdentities,omitempty"`
}

// ProvenancePolicy is what an SLSA provenance predicate must say.
type ProvenancePolicy struct {
	// BuilderID is the builder.id (exact, or a regular expression when BuilderIDRegexp).
	BuilderID       string `json:"builderID,omitempty"`
	BuilderIDRegexp bool   `json:"builderIDRegexp,omitempty"`
	// SourceRepository is the repository the build came from (exact or regular expression).
	SourceRepository       string `json:"sourceRepository,omitempty"`
	SourceRepositoryRegexp bool   `json:"sourceRepositoryRegexp,omitempty"`
}

// Result is a digest that verified under a policy: who signed it, and what built it.
type Result struct {
	// SignedBy is the key's id ("key SHA256:…") or the certificate's identity and issuer
	// ("https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1 (issuer
	// https://token.actions.githubusercontent.com)"), or the Notation signer's subject: the
	// Kropipe-Signed-By trailer.
	SignedBy string `json:"signedBy"`
	// Provenance is set when the policy checked one: the Kropipe-Provenance trailer.
	Provenance *Provenance `json:"provenance,omitempty"`
}

// Provenance is what an SLSA provenance attestation said about a digest.
type Provenance struct {
	Builder string `json:"builder"`
	Source  string `json:"source"`
	Digest  string `json:"digest"`
}

// ErrUnverified is wrapped when a digest has no signature or attestation satisfying the policy;
// the message says what is missing, e.g. "no signature by https://github.com/org/repo/…".
// Any other error (the registry failing) means it could not be decided: the stage holds and
// tries again, it never promotes unverified.
var ErrUnverified = errors.New("not signed as the policy requires")

// Verifier checks digests against policies.
type Verifier interface {
	// Verify checks the image ref (repository@digest) under p, reaching the registry with
	// opts. It returns ErrUnverified (wrapped) when the image does not satisfy p.
	Verify(ctx context.Context, ref name.Digest, p Policy, opts ...remote.Option) (Result, error)
}
