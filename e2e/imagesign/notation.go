package imagesign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-go"
	notationregistry "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orasremote "oras.land/oras-go/v2/registry/remote"
)

// NotationMediaType is the artifactType of a Notation signature referrer.
const NotationMediaType = "application/vnd.cncf.notary.signature"

// NotationCA is a release team's X.509 authority and the code-signing certificate it issued
// to CI, as `notation cert generate-test` would make them (but a real CA and leaf).
type NotationCA struct {
	chain []*x509.Certificate // leaf first
	key   crypto.Signer
	// TrustStore is the CA certificate (PEM): what the verifier's trust store holds.
	TrustStore []byte
	// Subject is the signing certificate's subject as a Notation trust policy names it in
	// trustedIdentities ("x509.subject: C=US, ST=WA, O=Example, CN=…").
	Subject string
	// SignerName is the signing certificate's subject as Go prints it ("CN=…,O=Example,ST=WA,C=US"),
	// how kropipe's Kropipe-Signed-By names a Notation signer.
	SignerName string
}

// NewNotationCA makes a CA named after commonName and a code-signing certificate issued by it
// with the subject CN=commonName signer, both valid from a day ago for a year.
func NewNotationCA(commonName string) (*NotationCA, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	subject := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"Example"}, Province: []string{"WA"}, Country: []string{"US"}}
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               subject(commonName + " CA"),
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      subject(commonName + " signer"),
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, err
	}
	return &NotationCA{
		chain:      []*x509.Certificate{leaf, caCert},
		key:        key,
		TrustStore: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		Subject:    "x509.subject: C=US, ST=WA, O=Example, CN=" + commonName + " signer",
		SignerName: leaf.Subject.String(),
	}, nil
}

// Sign signs digest with notation-go's notation.Sign (a COSE envelope, as `notation sign`
// makes by default) and pushes the signature as a referrer of digest. plainHTTP is for a
// registry on http:// (the stack's). It returns the signature manifest's descriptor.
func (c *NotationCA) Sign(ctx context.Context, digest name.Digest, plainHTTP bool) (ocispec.Descriptor, error) {
	s, err := signer.NewGenericSigner(c.key, c.chain)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo, err := NotationRepository(digest.Context(), plainHTTP)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	_, desc, err := signAndDescribe(ctx, s, repo, digest)
	return desc, err
}

// NotationRepository reaches repo the way the notation CLI does (oras-go), anonymously.
func NotationRepository(repo name.Repository, plainHTTP bool) (notationregistry.Repository, error) {
	r, err := orasremote.NewRepository(repo.String())
	if err != nil {
		return nil, err
	}
	r.PlainHTTP = plainHTTP
	return notationregistry.NewRepository(r), nil
}

// signAndDescribe is notation.Sign, then the pushed signature's descriptor, found as notation
// verify finds it: among the subject's referrers.
func signAndDescribe(ctx context.Context, s notation.Signer, repo notationregistry.Repository, digest name.Digest) (ocispec.Descriptor, ocispec.Descriptor, error) {
	subject, err := notation.Sign(ctx, s, repo, notation.SignOptions{
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: cose.MediaTypeEnvelope, SigningAgent: "kropipe e2e"},
		ArtifactReference: digest.String(),
	})
	if err != nil {
		return ocispec.Descriptor{}, ocispec.Descriptor{}, fmt.Errorf("notation sign %s: %w", digest, err)
	}
	var found []ocispec.Descriptor
	if err := repo.ListSignatures(ctx, subject, func(sigs []ocispec.Descriptor) error {
		found = append(found, sigs...)
		return nil
	}); err != nil {
		return subject, ocispec.Descriptor{}, fmt.Errorf("list Notation signatures of %s: %w", digest, err)
	}
	if len(found) == 0 {
		return subject, ocispec.Descriptor{}, fmt.Errorf("notation sign %s: the registry lists no signature after the push", digest)
	}
	return subject, found[len(found)-1], nil
}
