// Package signaturetest signs images the way a CI pipeline does, with real keys, for the
// promoter's tests: cosign's legacy .sig/.att tags, sigstore bundles attached as OCI referrers,
// keyless bundles made by sigstore-go's virtual Fulcio, Rekor and timestamp authority.
package signaturetest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"
)

// Media types and cosign's annotations, as cosign writes them.
const (
	// BundleV03 is the artifactType (and layer media type) of a sigstore bundle referrer.
	BundleV03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// CosignSignPredicate is the predicate type of cosign's bundle-format image signature.
	CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

	inTotoType   = "application/vnd.in-toto+json"
	annSignature = "dev.cosignproject.cosign/signature"
	annCert      = "dev.sigstore.cosign/certificate"
	annChain     = "dev.sigstore.cosign/chain"
	annBundle    = "dev.sigstore.cosign/bundle"
	annRFC3161   = "dev.sigstore.cosign/rfc3161timestamp"
)

// rawManifest is a manifest pushed as bytes.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// Attach pushes blob as an OCI artifact referring to subject, as cosign --new-bundle-format
// does (the registry indexes it, or go-containerregistry updates the sha256-<hex> tag).
func Attach(tb testing.TB, subject name.Digest, artifactType string, blob []byte, opts ...remote.Option) {
	tb.Helper()
	repo := subject.Context()
	layer := static.NewLayer(blob, types.MediaType(artifactType))
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	for _, l := range []v1.Layer{layer, cfg} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			tb.Fatal(err)
		}
	}
	desc, err := remote.Head(subject, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ld, _ := layer.Digest()
	cd, _ := cfg.Digest()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  artifactType,
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd.String(), "size": 2},
		"layers":        []any{map[string]any{"mediaType": artifactType, "digest": ld.String(), "size": len(blob)}},
		"subject":       map[string]any{"mediaType": desc.MediaType, "digest": desc.Digest.String(), "size": desc.Size},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	if err := remote.Put(repo.Digest(h.String()), rawManifest{raw, types.OCIManifestSchema1}, opts...); err != nil {
		tb.Fatal(err)
	}
}

// LegacyPush writes cosign's sha256-<hex><suffix> tag for subject with the given layers.
func LegacyPush(tb testing.TB, subject name.Digest, suffix string, layers []mutate.Addendum, opts ...remote.Option) {
	tb.Helper()
	img, err := mutate.Append(empty.Image, layers...)
	if err != nil {
		tb.Fatal(err)
	}
	tag := subject.Context().Tag(strings.Replace(subject.DigestStr(), ":", "-", 1) + suffix)
	if err := remote.Write(tag, img, opts...); err != nil {
		tb.Fatal(err)
	}
}

// SimpleSigningPayload is what cosign signs for an image.
func SimpleSigningPayload(ref name.Digest, digest string) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`,
		ref.Context().String(), digest)
}

// SignatureStatement is what cosign --new-bundle-format signs for an image: an in-toto
// statement over digest with the cosign sign predicate.
func SignatureStatement(ref name.Digest, digest string) []byte {
	return Statement(ref, digest, CosignSignPredicate, map[string]any{})
}

// Statement is an in-toto statement over digest.
func Statement(ref name.Digest, digest, predicateType string, predicate any) []byte {
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": ref.Context().String(), "digest": map[string]string{"sha256": strings.TrimPrefix(digest, "sha256:")}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	if err != nil {
		panic(err)
	}
	return b
}

type Key struct {
	Signer sigsig.Signer
	// PEM is the public key, as a policy gives it.
	PEM []byte
}

func NewKey(tb testing.TB, kind string) Key {
	tb.Helper()
	var priv crypto.Signer
	var err error
	switch kind {
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		tb.Fatal(err)
	}
	s, err := sigsig.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return Key{Signer: s, PEM: pem}
}

// SignLegacy pushes a key signature of the payload naming digest under subject's .sig tag.
func (k Key) SignLegacy(tb testing.TB, subject name.Digest, digest string, opts ...remote.Option) {
	tb.Helper()
	payload := SimpleSigningPayload(subject, digest)
	sig, err := k.Signer.SignMessage(bytes.NewReader(payload))
	if err != nil {
		tb.Fatal(err)
	}
	LegacyPush(tb, subject, ".sig", []mutate.Addendum{{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: map[string]string{annSignature: base64.StdEncoding.EncodeToString(sig)},
	}}, opts...)
}

// Envelope signs an in-toto statement into a DSSE envelope with the key.
func (k Key) Envelope(tb testing.TB, stmt []byte) *dsse.Envelope {
	tb.Helper()
	raw, err := sigdsse.WrapSigner(k.Signer, inTotoType).SignMessage(bytes.NewReader(stmt))
	if err != nil {
		tb.Fatal(err)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		tb.Fatal(err)
	}
	return &env
}

// Bundle is a v0.3 bundle of a key-signed DSSE envelope (no log entry: signed offline).
func (k Key) Bundle(tb testing.TB, stmt []byte) []byte {
	tb.Helper()
	pb := &protobundle.Bundle{
		MediaType: BundleV03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "ci"}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: protoEnvelope(tb, k.Envelope(tb, stmt))},
	}
	js, err := protojson.Marshal(pb)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func protoEnvelope(tb testing.TB, env *dsse.Envelope) *protodsse.Envelope {
	tb.Helper()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		tb.Fatal(err)
	}
	out := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for _, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			tb.Fatal(err)
		}
		out.Signatures = append(out.Signatures, &protodsse.Signature{Sig: sig, Keyid: s.KeyID})
	}
	return out
}

// Authority is sigstore-go's virtual Sigstore, and its trusted_root.json.
type Authority struct {
	VS *ca.VirtualSigstore
	// TrustedRoot is its trusted_root.json.
	TrustedRoot []byte
}

func NewAuthority(tb testing.TB) Authority {
	tb.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		tb.Fatal(err)
	}
	// The virtual Rekor names its log by the hex text of its id; a trusted_root.json holds
	// the id's bytes.
	logs := map[string]*root.TransparencyLog{}
	for id, l := range vs.RekorLogs() {
		raw, err := hex.DecodeString(id)
		if err != nil {
			tb.Fatal(err)
		}
		cp := *l
		cp.ID = raw
		logs[id] = &cp
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, vs.TimestampingAuthorities(), logs)
	if err != nil {
		tb.Fatal(err)
	}
	js, err := tr.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return Authority{VS: vs, TrustedRoot: js}
}

// BundleOptions strip parts of a keyless bundle, for the cases that lack them.
type BundleOptions struct {
	NoTlog, NoTimestamps bool
	// LoggedAt is the log's integrated time (default: inside the certificate's validity).
	LoggedAt time.Time
}

// KeylessBundle signs stmt as identity/issuer with the virtual Fulcio, logs it in the virtual
// Rekor (with an inclusion proof) and timestamps it, as cosign sign --new-bundle-format does.
func (a Authority) KeylessBundle(tb testing.TB, identity, issuer string, stmt []byte, o BundleOptions) []byte {
	tb.Helper()
	at := o.LoggedAt
	if at.IsZero() {
		at = time.Now().Add(5 * time.Minute)
	}
	e, err := a.VS.AttestAtTime(identity, issuer, stmt, at, true)
	if err != nil {
		tb.Fatal(err)
	}
	return entityBundle(tb, e, o)
}

func entityBundle(tb testing.TB, e verify.SignedEntity, o BundleOptions) []byte {
	tb.Helper()
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
	}
	if !o.NoTlog {
		entries, _ := e.TlogEntries()
		for _, en := range entries {
			tle := en.TransparencyLogEntry()
			if tle.KindVersion == nil {
				tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
			}
			vm.TlogEntries = append(vm.TlogEntries, tle)
		}
	}
	if !o.NoTimestamps {
		ts, _ := e.Timestamps()
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, t := range ts {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
		}
	}
	pb := &protobundle.Bundle{MediaType: BundleV03, VerificationMaterial: vm}
	pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: protoEnvelope(tb, sc.EnvelopeContent().RawEnvelope())}
	js, err := protojson.Marshal(pb)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// SignKeylessLegacy pushes a keyless signature in cosign's .sig tag format: the Fulcio
// certificate, chain, Rekor bundle and RFC 3161 timestamp as annotations.
func (a Authority) SignKeylessLegacy(tb testing.TB, subject name.Digest, identity, issuer string) {
	tb.Helper()
	payload := SimpleSigningPayload(subject, subject.DigestStr())
	e, err := a.VS.Sign(identity, issuer, payload)
	if err != nil {
		tb.Fatal(err)
	}
	sc, _ := e.SignatureContent()
	ann := a.legacyAnnotations(tb, e)
	ann[annSignature] = base64.StdEncoding.EncodeToString(sc.Signature())
	LegacyPush(tb, subject, ".sig", []mutate.Addendum{{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: ann,
	}})
}

// AttestKeylessLegacy pushes a keyless in-toto attestation in cosign's .att tag format.
func (a Authority) AttestKeylessLegacy(tb testing.TB, subject name.Digest, identity, issuer string, stmt []byte) {
	tb.Helper()
	e, err := a.VS.Attest(identity, issuer, stmt)
	if err != nil {
		tb.Fatal(err)
	}
	sc, _ := e.SignatureContent()
	env, err := json.Marshal(sc.EnvelopeContent().RawEnvelope())
	if err != nil {
		tb.Fatal(err)
	}
	ann := a.legacyAnnotations(tb, e)
	ann[annSignature] = ""
	LegacyPush(tb, subject, ".att", []mutate.Addendum{{
		Layer:       static.NewLayer(env, "application/vnd.dsse.envelope.v1+json"),
		Annotations: ann,
	}})
}

// legacyAnnotations are what cosign writes beside a keyless signature layer.
func (a Authority) legacyAnnotations(tb testing.TB, e verify.SignedEntity) map[string]string {
	tb.Helper()
	vc, _ := e.VerificationContent()
	certPEM, _ := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	chainPEM, _ := cryptoutils.MarshalCertificatesToPEM(a.VS.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority).Intermediates)
	entries, _ := e.TlogEntries()
	tle := entries[0].TransparencyLogEntry()
	// The log's promise (SET) over the entry, as Rekor returns it to cosign.
	set, err := a.VS.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime,
		LogIndex:       tle.LogIndex,
		LogID:          hex.EncodeToString(tle.GetLogId().GetKeyId()),
	})
	if err != nil {
		tb.Fatal(err)
	}
	rb := map[string]any{
		"SignedEntryTimestamp": set,
		"Payload": map[string]any{
			"body":           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
			"integratedTime": tle.IntegratedTime,
			"logIndex":       tle.LogIndex,
			"logID":          hex.EncodeToString(tle.GetLogId().GetKeyId()),
		},
	}
	rbJS, _ := json.Marshal(rb)
	ts, _ := e.Timestamps()
	tsJS, _ := json.Marshal(map[string][]byte{"SignedRFC3161Timestamp": ts[0]})
	return map[string]string{
		annCert:    string(certPEM),
		annChain:   string(chainPEM),
		annBundle:  string(rbJS),
		annRFC3161: string(tsJS),
	}
}
