package promoter_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/notaryproject/notation-go"
	notationverifier "github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"

	"github.com/kropipe/kropipe/e2e/imagesign"
	"github.com/kropipe/kropipe/e2e/stack"
)

// The e2e signing helpers against the stack's real registry (CNCF distribution v3.1.2, which
// has no referrers API): each signature lands where cosign and notation look for it — the
// sha256-<hex>.sig tag; the referrers of the digest, which go-containerregistry and oras-go
// read from the referrers tag schema (sha256-<hex>) when the API answers 404 — and verifies
// with the libraries kropipe uses, so a stage that refuses it refuses a valid signature.
func TestImageSign_SignaturesLandWhereCosignAndNotationLook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const identity, issuer = "https://github.com/org/frontend/.github/workflows/release.yml@refs/tags/v1.2.2", "https://token.actions.githubusercontent.com"
	digest := pushedDigest(t, "imagesign/frontend", "1.2.2")

	// The stack's distribution has no referrers API: the helpers must use the tag schema.
	resp, err := http.Get(fmt.Sprintf("http://%s/v2/%s/referrers/%s", st.RegistryAddr, digest.RepositoryStr(), digest.DigestStr()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	referrersAPI := resp.StatusCode
	t.Logf("GET /v2/…/referrers/<digest> on the stack's distribution %s: %s", stack.RegistryVersion, resp.Status)

	t.Run("cosign key, legacy .sig tag", func(t *testing.T) {
		key, err := imagesign.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		tag, err := key.Sign(ctx, digest)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Replace(digest.DigestStr(), ":", "-", 1) + ".sig"; tag.TagStr() != want {
			t.Fatalf("signature tag %s, want %s", tag.TagStr(), want)
		}
		img, err := remote.Image(imagesign.SigTag(digest), remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("cosign looks at %s: %v", imagesign.SigTag(digest), err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 1 || m.Layers[0].MediaType != imagesign.SimpleSigningMediaType {
			t.Fatalf("the .sig image's layers: %+v, want one %s", m.Layers, imagesign.SimpleSigningMediaType)
		}
		layers, _ := img.Layers()
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := io.ReadAll(rc)
		rc.Close()
		var ss struct {
			Critical struct {
				Image struct {
					Digest string `json:"docker-manifest-digest"`
				} `json:"image"`
				Type string `json:"type"`
			} `json:"critical"`
		}
		if err := json.Unmarshal(payload, &ss); err != nil || ss.Critical.Image.Digest != digest.DigestStr() || ss.Critical.Type != "cosign container image signature" {
			t.Fatalf("payload %s (%v): want a cosign container image signature of %s", payload, err, digest.DigestStr())
		}
		sig, err := base64.StdEncoding.DecodeString(m.Layers[0].Annotations[imagesign.SignatureAnnotation])
		if err != nil {
			t.Fatal(err)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(key.PublicPEM)
		if err != nil {
			t.Fatal(err)
		}
		v, err := sigsig.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)); err != nil {
			t.Fatalf("the signature does not verify with the public key: %v", err)
		}
		id, _ := key.ID()
		t.Logf("%s: signed by %s", tag, id)
	})

	t.Run("cosign keyless, sigstore bundle referrer", func(t *testing.T) {
		vs, err := imagesign.NewSigstore()
		if err != nil {
			t.Fatal(err)
		}
		ref, err := vs.Sign(ctx, digest, identity, issuer)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Referrers(digest, remote.WithContext(ctx), remote.WithFilter("artifactType", imagesign.BundleMediaType))
		if err != nil {
			t.Fatalf("list referrers of %s: %v", digest, err)
		}
		im, _ := idx.IndexManifest()
		if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != ref.DigestStr() {
			t.Fatalf("referrers of %s with artifactType %s: %+v, want %s", digest, imagesign.BundleMediaType, im.Manifests, ref.DigestStr())
		}
		// Where the referrers live on a registry without the API: the sha256-<hex> index.
		fallback := digest.Context().Tag(strings.Replace(digest.DigestStr(), ":", "-", 1))
		if _, err := remote.Index(fallback, remote.WithContext(ctx)); referrersAPI == http.StatusNotFound && err != nil {
			t.Errorf("the registry has no referrers API, but no referrers tag schema index %s: %v", fallback, err)
		}
		img, err := remote.Image(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(rc)
		rc.Close()
		var b bundle.Bundle
		if err := b.UnmarshalJSON(raw); err != nil {
			t.Fatalf("the referrer's layer is no sigstore bundle: %v", err)
		}
		tr, err := root.NewTrustedRootFromJSON(vs.TrustedRoot)
		if err != nil {
			t.Fatalf("trusted_root.json: %v", err)
		}
		v, err := verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithSignedTimestamps(1))
		if err != nil {
			t.Fatal(err)
		}
		certID, err := verify.NewShortCertificateIdentity(issuer, "", identity, "")
		if err != nil {
			t.Fatal(err)
		}
		h := strings.TrimPrefix(digest.DigestStr(), "sha256:")
		hb, _ := hex.DecodeString(h)
		res, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", hb), verify.WithCertificateIdentity(certID)))
		if err != nil {
			t.Fatalf("the bundle does not verify against the virtual Sigstore's trusted root (tlog and timestamp required): %v", err)
		}
		t.Logf("%s: bundle signed by %s (issuer %s)", ref, res.Signature.Certificate.SubjectAlternativeName, res.Signature.Certificate.Issuer)
	})

	t.Run("Notation, generated CA", func(t *testing.T) {
		ca, err := imagesign.NewNotationCA("kropipe e2e")
		if err != nil {
			t.Fatal(err)
		}
		desc, err := ca.Sign(ctx, digest, true)
		if err != nil {
			t.Fatal(err)
		}
		if desc.ArtifactType != imagesign.NotationMediaType {
			t.Errorf("Notation signature artifactType %q, want %q", desc.ArtifactType, imagesign.NotationMediaType)
		}
		repo, err := imagesign.NotationRepository(digest.Context(), true)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM(ca.TrustStore)
		if err != nil {
			t.Fatal(err)
		}
		doc := &trustpolicy.Document{Version: "1.0", TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  "e2e",
			RegistryScopes:        []string{digest.Context().String()},
			SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: trustpolicy.LevelStrict.Name},
			TrustStores:           []string{"ca:e2e"},
			TrustedIdentities:     []string{ca.Subject},
		}}}
		v, err := notationverifier.NewWithOptions(doc, memTrustStore(certs), nil, notationverifier.VerifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, outcomes, err := notation.Verify(ctx, v, repo, notation.VerifyOptions{ArtifactReference: digest.String(), MaxSignatureAttempts: 10})
		if err != nil {
			t.Fatalf("notation verify %s (trust store: the CA, identity %q): %v", digest, ca.Subject, err)
		}
		t.Logf("%s: Notation signature %s by %s", digest, desc.Digest, outcomes[0].EnvelopeContent.SignerInfo.CertificateChain[0].Subject)
	})
}

// pushedDigest pushes repo:tag to the stack's registry and returns its digest reference.
func pushedDigest(t testing.TB, repo, tag string) name.Digest {
	t.Helper()
	pushImage(t, st.RegistryAddr, repo, tag)
	ref, err := name.NewTag(st.RegistryAddr+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return ref.Context().Digest(desc.Digest.String())
}

// memTrustStore is a Notation CA trust store in memory.
type memTrustStore []*x509.Certificate

func (s memTrustStore) GetCertificates(_ context.Context, _ truststore.Type, _ string) ([]*x509.Certificate, error) {
	return s, nil
}
