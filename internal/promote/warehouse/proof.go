package warehouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
)

// maxProofs bounds the proof cache (an entry is ~200 bytes); past it the cache starts
// over, which costs one manifest read per tag on the next poll and nothing else. It holds
// a pass over 10,000 repositories (issue 16's scale) several times over.
const maxProofs = 100_000

// proofs remembers, per repository and tag, the digest a registry reported for it and
// the sha256 of the manifest bytes the warehouse read when it saw that report. A digest
// is only ever handed out from here: a registry whose HEAD answers a wrong
// Docker-Content-Digest cannot get it written to Git or into a commit trailer, and a
// steady state (same tag, same reported digest) costs no request beyond the HEAD.
type proofs struct {
	mu sync.Mutex
	m  map[proofKey]string
}

type proofKey struct{ repo, tag, reported string }

func (p *proofs) get(k proofKey) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.m[k]
	return d, ok
}

func (p *proofs) put(k proofKey, digest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil || len(p.m) >= maxProofs {
		p.m = map[proofKey]string{}
	}
	p.m[k] = digest
}

// provenDigest returns the sha256 of the manifest tag points to, read by the
// warehouse itself. reported is the Docker-Content-Digest the registry gave in its
// HEAD answer: when it was proven before, no request is made. Otherwise the manifest
// is fetched and hashed. A report that disagrees with the bytes is logged once and the
// bytes win: many registries get the header wrong for tags (go-containerregistry
// stopped checking it for that reason), and the hash is what a pull by digest checks.
// Only agreeing reports are remembered: a tag that moved between the HEAD and the GET
// must not tie the old report to the new bytes, so a lying registry costs one manifest
// read per poll.
func (w *Warehouse) provenDigest(ctx context.Context, repo name.Repository, tag, reported string) (string, error) {
	k := proofKey{repo.Name(), tag, reported}
	if d, ok := w.proofs.get(k); ok {
		return d, nil
	}
	desc, err := w.puller.Load().Get(ctx, repo.Tag(tag))
	if err != nil {
		return "", err
	}
	digest := manifestDigest(desc.Manifest)
	if reported != digest {
		w.warnOnce(ctx, "digest\x00"+k.repo+"\x00"+tag+"\x00"+reported, "registry reported a digest its manifest does not have; using the manifest's own", "image", repo.Name(), "tag", tag, "reported", reported, "manifest", digest)
		return digest, nil
	}
	w.proofs.put(k, digest)
	return digest, nil
}

// readDigest reads the manifest tag points to and returns its sha256, remembered as the
// proof of that digest: a later HEAD reporting it costs no manifest read. A registry that
// reports another digest for the same bytes fails to match this proof and pays a manifest
// read per look, as in provenDigest.
func (w *Warehouse) readDigest(ctx context.Context, repo name.Repository, tag string) (string, error) {
	desc, err := w.puller.Load().Get(ctx, repo.Tag(tag))
	if err != nil {
		return "", err
	}
	digest := manifestDigest(desc.Manifest)
	w.proofs.put(proofKey{repo.Name(), tag, digest}, digest)
	return digest, nil
}

// manifestDigest is the sha256 of the manifest bytes desc was read from.
func manifestDigest(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return "sha256:" + hex.EncodeToString(sum[:])
}
