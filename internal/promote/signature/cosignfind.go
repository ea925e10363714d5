package signature

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
)

// Where cosign keeps signatures and attestations, and what it calls their parts.
const (
	// bundleArtifactType prefixes the artifactType of a referrer holding a sigstore bundle
	// (application/vnd.dev.sigstore.bundle.v0.3+json, …bundle+json;version=0.3).
	bundleArtifactType = "application/vnd.dev.sigstore.bundle"
	emptyConfigType    = "application/vnd.oci.empty.v1+json"

	annSignature = "dev.cosignproject.cosign/signature"
	annCert      = "dev.sigstore.cosign/certificate"
	annChain     = "dev.sigstore.cosign/chain"
	annBundle    = "dev.sigstore.cosign/bundle"
	annRFC3161   = "dev.sigstore.cosign/rfc3161timestamp"

	// maxBlob bounds what is read of one signature layer or bundle.
	maxBlob = 4 << 20
)

// finder reads an image's signatures and attestations from its registry, each kind once per
// Verify.
type finder struct {
	ref  name.Digest
	opts []remote.Option

	bundles    []foundBundle
	bundlesErr error
	bundlesOK  bool
	legacy     map[string][]legacyLayer // tag suffix (".sig", ".att") → layers
}

type foundBundle struct {
	b    *bundle.Bundle
	from string
}

// legacyLayer is one layer of a sha256-<hex>.sig or .att image: its blob (a simple-signing
// payload or a DSSE envelope) and annotations.
type legacyLayer struct {
	blob []byte
	ann  map[string]string
	from string
}

// referrerBundles lists the image's referrers (the referrers API, or the sha256-<hex> tag when
// the registry has none) and reads each sigstore bundle among them.
func (f *finder) referrerBundles(ctx context.Context) ([]foundBundle, error) {
	if f.bundlesOK {
		return f.bundles, f.bundlesErr
	}
	f.bundles, f.bundlesErr = f.readReferrerBundles(ctx)
	f.bundlesOK = true
	return f.bundles, f.bundlesErr
}

func (f *finder) readReferrerBundles(ctx context.Context) ([]foundBundle, error) {
	idx, err := remote.Referrers(f.ref, f.opts...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing the referrers of %s: %w", f.ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s: %w", f.ref, err)
	}
	var out []foundBundle
	for _, d := range im.Manifests {
		// Some registries (go-containerregistry's own) report the config's media type, the
		// OCI empty one, instead of the manifest's artifactType: read those to see.
		maybe := d.ArtifactType == "" || d.ArtifactType == emptyConfigType
		if !strings.HasPrefix(d.ArtifactType, bundleArtifactType) && !maybe {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		where := f.ref.Context().Digest(d.Digest.String())
		img, err := remote.Image(where, f.opts...)
		if err != nil {
			return nil, fmt.Errorf("reading signature %s: %w", where, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("reading signature %s: %w", where, err)
		}
		if maybe && !strings.HasPrefix(m.ArtifactType, bundleArtifactType) {
			continue
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("reading signature %s: %w", where, err)
		}
		for _, l := range layers {
			blob, err := readLayer(l)
			if err != nil {
				return nil, fmt.Errorf("reading signature %s: %w", where, err)
			}
			var b bundle.Bundle
			if err := b.UnmarshalJSON(blob); err != nil {
				// Not a bundle this verifier can read: it counts as no signature, and a
				// valid one elsewhere still verifies.
				continue
			}
			out = append(out, foundBundle{b: &b, from: "referrer " + d.Digest.String()})
		}
	}
	return out, nil
}

// legacyLayers reads cosign's sha256-<hex><suffix> tag (".sig" signatures, ".att"
// attestations); a missing tag is no layers.
func (f *finder) legacyLayers(ctx context.Context, suffix string) ([]legacyLayer, error) {
	if ls, ok := f.legacy[suffix]; ok {
		return ls, nil
	}
	tag := f.ref.Context().Tag(strings.Replace(f.ref.DigestStr(), ":", "-", 1) + suffix)
	ls, err := readLegacy(ctx, tag, f.opts)
	if err != nil {
		return nil, err
	}
	if f.legacy == nil {
		f.legacy = map[string][]legacyLayer{}
	}
	f.legacy[suffix] = ls
	return ls, nil
}

func readLegacy(ctx context.Context, tag name.Tag, opts []remote.Option) ([]legacyLayer, error) {
	img, err := remote.Image(tag, opts...)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading signature tag %s: %w", tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading signature tag %s: %w", tag, err)
	}
	var out []legacyLayer
	for _, d := range m.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading signature tag %s: %w", tag, err)
		}
		blob, err := readLayer(l)
		if err != nil {
			return nil, fmt.Errorf("reading signature tag %s layer %s: %w", tag, d.Digest, err)
		}
		out = append(out, legacyLayer{blob: blob, ann: d.Annotations, from: "tag " + tag.TagStr()})
	}
	return out, nil
}

func readLayer(l v1.Layer) ([]byte, error) {
	// Signature layers are stored as they are (JSON, not gzip): the blob is the content.
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxBlob+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBlob {
		return nil, fmt.Errorf("larger than %d bytes", maxBlob)
	}
	return b, nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// rekorBundle is cosign's dev.sigstore.cosign/bundle annotation: a Rekor entry and the log's
// signed promise (SET) that it is included.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

// tlogEntry turns the annotation into the transparency-log entry sigstore-go verifies.
func (rb rekorBundle) entry() (*protorekor.TransparencyLogEntry, error) {
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("rekor bundle body: %w", err)
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("rekor bundle log id: %w", err)
	}
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kv); err != nil {
		return nil, fmt.Errorf("rekor bundle body: %w", err)
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          rb.Payload.LogIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
		IntegratedTime:    rb.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: rb.SignedEntryTimestamp},
		CanonicalizedBody: body,
	}, nil
}
