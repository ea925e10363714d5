package imagesign

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"
)

// Sigstore is sigstore-go's virtual Sigstore: a Fulcio issuing short-lived certificates for
// any identity and issuer, a Rekor logging every signature with an inclusion proof, and an
// RFC 3161 timestamp authority, all in memory. Its certificate authorities are valid for two
// hours from NewSigstore, and each certificate for ten minutes from its signature: enough for
// a test, not for a long-lived stack.
type Sigstore struct {
	vs *ca.VirtualSigstore
	// TrustedRoot is its trusted_root.json, what a private Sigstore's users give cosign
	// verify --trusted-root and kropipe's keyless policy.
	TrustedRoot []byte
}

// NewSigstore starts a virtual Sigstore.
func NewSigstore() (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, err
	}
	// The virtual Rekor names its log by the hex text of its id; trusted_root.json holds the
	// id's bytes (base64), which is what a bundle's log entry carries.
	logs := map[string]*root.TransparencyLog{}
	for id, l := range vs.RekorLogs() {
		raw, err := hex.DecodeString(id)
		if err != nil {
			return nil, fmt.Errorf("virtual Rekor log id %q: %w", id, err)
		}
		cp := *l
		cp.ID = raw
		logs[id] = &cp
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, vs.TimestampingAuthorities(), logs)
	if err != nil {
		return nil, err
	}
	js, err := tr.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return &Sigstore{vs: vs, TrustedRoot: js}, nil
}

// Bundle signs digest keyless as identity (the certificate's SAN, e.g. a workflow URL) issued
// by issuer (the OIDC issuer), as cosign sign --new-bundle-format does in CI: a DSSE envelope
// over the in-toto statement naming digest, with the Fulcio certificate, the Rekor entry and
// its inclusion proof, and a signed timestamp, in a v0.3 sigstore bundle (JSON).
func (s *Sigstore) Bundle(digest name.Digest, identity, issuer string) ([]byte, error) {
	// Logged five minutes in, as the virtual Fulcio's certificate validity requires.
	e, err := s.vs.AttestAtTime(identity, issuer, SignatureStatement(digest), time.Now().Add(5*time.Minute), true)
	if err != nil {
		return nil, fmt.Errorf("virtual Sigstore: sign %s as %s: %w", digest, identity, err)
	}
	vc, err := e.VerificationContent()
	if err != nil {
		return nil, err
	}
	vm := &protobundle.VerificationMaterial{
		Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		TimestampVerificationData: &protobundle.TimestampVerificationData{},
	}
	entries, _ := e.TlogEntries()
	for _, en := range entries {
		tle := en.TransparencyLogEntry()
		if tle.KindVersion == nil {
			tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
		}
		vm.TlogEntries = append(vm.TlogEntries, tle)
	}
	ts, _ := e.Timestamps()
	for _, t := range ts {
		vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
	}
	sc, err := e.SignatureContent()
	if err != nil {
		return nil, err
	}
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, err
	}
	pe := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for _, sig := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(sig.Sig)
		if err != nil {
			return nil, err
		}
		pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: raw, Keyid: sig.KeyID})
	}
	return protojson.Marshal(&protobundle.Bundle{
		MediaType:            BundleMediaType,
		VerificationMaterial: vm,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe},
	})
}

// Sign signs digest keyless (see Bundle) and attaches the bundle to it as an OCI referrer
// (artifactType application/vnd.dev.sigstore.bundle.v0.3+json). It returns the referrer.
func (s *Sigstore) Sign(ctx context.Context, digest name.Digest, identity, issuer string, opts ...remote.Option) (name.Digest, error) {
	b, err := s.Bundle(digest, identity, issuer)
	if err != nil {
		return name.Digest{}, err
	}
	return Attach(ctx, digest, BundleMediaType, b, opts...)
}
