package signature

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// legacyEntity is a signature from cosign's sha256-<hex>.sig or .att tag, shaped as the
// sigstore-go SignedEntity it verifies: a signature over a simple-signing payload (or a DSSE
// envelope), the signer's certificate or nothing (a key), and the Rekor entry and RFC 3161
// timestamp cosign attached as annotations.
type legacyEntity struct {
	payload    []byte         // simple-signing payload (.sig)
	sig        []byte         // its signature
	envelope   *dsse.Envelope // DSSE envelope (.att)
	cert       *x509.Certificate
	chain      []*x509.Certificate
	entries    []*tlog.Entry
	timestamps [][]byte
}

var _ verify.SignedEntity = (*legacyEntity)(nil)

// parseLegacySignature reads one .sig layer.
func parseLegacySignature(l legacyLayer) (*legacyEntity, error) {
	sigB64, ok := l.ann[annSignature]
	if !ok {
		return nil, fmt.Errorf("layer has no %s annotation", annSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return nil, fmt.Errorf("%s annotation: %w", annSignature, err)
	}
	e := &legacyEntity{payload: l.blob, sig: sig}
	return e, e.parseAnnotations(l.ann)
}

// parseLegacyAttestation reads one .att layer: a DSSE envelope.
func parseLegacyAttestation(l legacyLayer) (*legacyEntity, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(l.blob, &env); err != nil {
		return nil, fmt.Errorf("attestation layer is not a DSSE envelope: %w", err)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("attestation envelope has no signature")
	}
	e := &legacyEntity{envelope: &env}
	return e, e.parseAnnotations(l.ann)
}

func (e *legacyEntity) parseAnnotations(ann map[string]string) error {
	if pemCert := ann[annCert]; pemCert != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(pemCert))
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("%s annotation is not a PEM certificate", annCert)
		}
		e.cert = certs[0]
		if pemChain := ann[annChain]; pemChain != "" {
			chain, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(pemChain))
			if err != nil {
				return fmt.Errorf("%s annotation: %w", annChain, err)
			}
			e.chain = chain
		}
	}
	if js := ann[annBundle]; js != "" {
		var rb rekorBundle
		if err := json.Unmarshal([]byte(js), &rb); err != nil {
			return fmt.Errorf("%s annotation: %w", annBundle, err)
		}
		tle, err := rb.entry()
		if err != nil {
			return fmt.Errorf("%s annotation: %w", annBundle, err)
		}
		entry, err := tlog.NewTlogEntry(tle)
		if err != nil {
			return fmt.Errorf("%s annotation: %w", annBundle, err)
		}
		e.entries = append(e.entries, entry)
	}
	if js := ann[annRFC3161]; js != "" {
		var ts struct {
			SignedRFC3161Timestamp []byte `json:"SignedRFC3161Timestamp"`
		}
		if err := json.Unmarshal([]byte(js), &ts); err != nil {
			return fmt.Errorf("%s annotation: %w", annRFC3161, err)
		}
		e.timestamps = append(e.timestamps, ts.SignedRFC3161Timestamp)
	}
	return nil
}

func (e *legacyEntity) HasInclusionPromise() bool {
	for _, en := range e.entries {
		if en.HasInclusionPromise() {
			return true
		}
	}
	return false
}

func (e *legacyEntity) HasInclusionProof() bool {
	for _, en := range e.entries {
		if en.HasInclusionProof() {
			return true
		}
	}
	return false
}

func (e *legacyEntity) SignatureContent() (verify.SignatureContent, error) {
	if e.envelope != nil {
		return &bundle.Envelope{Envelope: e.envelope}, nil
	}
	sum := sha256.Sum256(e.payload)
	return bundle.NewMessageSignature(sum[:], "SHA2_256", e.sig), nil
}

func (e *legacyEntity) VerificationContent() (verify.VerificationContent, error) {
	if e.cert != nil {
		return &legacyCert{leaf: bundle.NewCertificate(e.cert), chain: e.chain}, nil
	}
	// A key: the policy's key is the only one trusted, whatever hint a bundle would carry.
	return &bundle.PublicKey{}, nil
}

func (e *legacyEntity) Timestamps() ([][]byte, error) { return e.timestamps, nil }

func (e *legacyEntity) TlogEntries() ([]*tlog.Entry, error) { return e.entries, nil }

// Version: cosign's legacy signatures verify as bundle v0.3 would.
func (e *legacyEntity) Version() (string, error) { return "v0.3", nil }

// legacyCert is a Fulcio certificate with the intermediates cosign put in the chain
// annotation (a self-signed root among them is dropped: only the trusted root anchors it).
type legacyCert struct {
	leaf  *bundle.Certificate
	chain []*x509.Certificate
}

func (c *legacyCert) CompareKey(k any, tm root.TrustedMaterial) bool { return c.leaf.CompareKey(k, tm) }
func (c *legacyCert) ValidAtTime(t time.Time, tm root.TrustedMaterial) bool {
	return c.leaf.ValidAtTime(t, tm)
}
func (c *legacyCert) Certificate() *x509.Certificate      { return c.leaf.Certificate() }
func (c *legacyCert) PublicKey() verify.PublicKeyProvider { return nil }

func (c *legacyCert) Intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for _, ch := range c.chain {
		if ch.Equal(c.leaf.Certificate()) || (ch.IsCA && bytes.Equal(ch.RawIssuer, ch.RawSubject)) {
			continue
		}
		out = append(out, ch)
	}
	return out
}

// simpleSigning is the part of cosign's simple-signing payload that names the image.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// signedDigest is the image digest a simple-signing payload names.
func signedDigest(payload []byte) (string, error) {
	var ss simpleSigning
	if err := json.Unmarshal(payload, &ss); err != nil {
		return "", fmt.Errorf("signature payload is not a simple-signing document: %w", err)
	}
	if ss.Critical.Image.DockerManifestDigest == "" {
		return "", fmt.Errorf("signature payload names no critical.image.docker-manifest-digest")
	}
	return ss.Critical.Image.DockerManifestDigest, nil
}
