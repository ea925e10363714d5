// Package imagesign signs images on the e2e stack's registry the way a release pipeline does,
// with real keys and real signatures: cosign with a key (the legacy sha256-<hex>.sig tag),
// cosign keyless (a sigstore bundle from sigstore-go's virtual Fulcio, Rekor and timestamp
// authority, attached as an OCI referrer), and Notation (notation-go with a generated CA).
//
// e2e cannot import the product's signaturetest kit (an internal package), so this package
// makes the same artifacts with the same libraries, at the versions the product's go.mod pins.
package imagesign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
)

// Media types and annotations as cosign writes them.
const (
	// SimpleSigningMediaType is the layer of a legacy .sig image: the signed payload.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation carries the base64 signature over that layer.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// BundleMediaType is the artifactType (and layer media type) of a sigstore bundle referrer,
	// as cosign sign --new-bundle-format attaches it.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// CosignSignPredicate is the in-toto predicate type of a bundle-format image signature.
	CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
)

// SigTag is where cosign looks for a legacy signature of digest: sha256-<hex>.sig in its
// repository.
func SigTag(digest name.Digest) name.Tag {
	return digest.Context().Tag(strings.Replace(digest.DigestStr(), ":", "-", 1) + ".sig")
}

// Key is an ECDSA P-256 key pair, what `cosign generate-key-pair` makes.
type Key struct {
	signer sigsig.Signer
	// PublicPEM is the public key as a policy (a Secret, cosign.pub) holds it.
	PublicPEM []byte
}

// NewKey generates a key pair.
func NewKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := sigsig.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return nil, err
	}
	return &Key{signer: s, PublicPEM: pub}, nil
}

// ID is the key as kropipe's Kropipe-Signed-By trailer names it: "key SHA256:" and the hex
// SHA-256 of its DER SubjectPublicKeyInfo (`openssl pkey -pubin -outform DER | sha256sum`).
func (k *Key) ID() (string, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(k.PublicPEM)
	if err != nil {
		return "", err
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "key SHA256:" + hex.EncodeToString(sum[:]), nil
}

// Sign signs digest as `cosign sign --key` does without a transparency log upload: the
// simple-signing payload as the layer of an OCI image tagged sha256-<hex>.sig, its signature in
// the layer's dev.cosignproject.cosign/signature annotation. It returns the tag.
func (k *Key) Sign(ctx context.Context, digest name.Digest, opts ...remote.Option) (name.Tag, error) {
	payload := SimpleSigningPayload(digest)
	sig, err := k.signer.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return name.Tag{}, fmt.Errorf("sign %s: %w", digest, err)
	}
	tag := SigTag(digest)
	img, err := mutate.Append(cosignEmpty(), mutate.Addendum{
		Layer:       static.NewLayer(payload, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return name.Tag{}, err
	}
	if err := remote.Write(tag, img, append([]remote.Option{remote.WithContext(ctx)}, opts...)...); err != nil {
		return name.Tag{}, fmt.Errorf("push cosign signature %s: %w", tag, err)
	}
	return tag, nil
}

// cosignEmpty is the image cosign builds its .sig manifests on: OCI media types.
func cosignEmpty() v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}

// SimpleSigningPayload is what cosign signs for an image (the "cosign container image
// signature" of the containers/image simple signing format).
func SimpleSigningPayload(digest name.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`,
		digest.Context().String(), digest.DigestStr())
}

// SignatureStatement is what cosign sign --new-bundle-format signs for an image: an in-toto
// statement over the digest with the cosign sign predicate.
func SignatureStatement(digest name.Digest) []byte {
	b, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": digest.Context().String(), "digest": map[string]string{"sha256": strings.TrimPrefix(digest.DigestStr(), "sha256:")}}},
		"predicateType": CosignSignPredicate,
		"predicate":     map[string]any{},
	})
	return b
}

// rawManifest is a manifest pushed as the bytes given.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// Attach pushes blob as an OCI artifact whose subject is digest, as cosign
// --new-bundle-format does: an image manifest with artifactType, an empty config and blob as its
// only layer. A registry with the referrers API indexes it; on one without (distribution
// v3.1.2), go-containerregistry adds it to the referrers tag schema's index, sha256-<hex>. It
// returns the artifact's digest.
func Attach(ctx context.Context, digest name.Digest, artifactType string, blob []byte, opts ...remote.Option) (name.Digest, error) {
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	repo := digest.Context()
	layer := static.NewLayer(blob, types.MediaType(artifactType))
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	for _, l := range []v1.Layer{layer, cfg} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("push %s blob to %s: %w", artifactType, repo, err)
		}
	}
	desc, err := remote.Head(digest, opts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("subject %s: %w", digest, err)
	}
	ld, _ := layer.Digest()
	cd, _ := cfg.Digest()
	raw, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  artifactType,
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd.String(), "size": 2},
		"layers":        []any{map[string]any{"mediaType": artifactType, "digest": ld.String(), "size": len(blob)}},
		"subject":       map[string]any{"mediaType": desc.MediaType, "digest": desc.Digest.String(), "size": desc.Size},
		"annotations":   map[string]string{"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339)},
	})
	if err != nil {
		return name.Digest{}, err
	}
	sum := sha256.Sum256(raw)
	ref := repo.Digest("sha256:" + hex.EncodeToString(sum[:]))
	if err := remote.Put(ref, rawManifest{raw, types.OCIManifestSchema1}, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s referrer of %s: %w", artifactType, digest, err)
	}
	return ref, nil
}
