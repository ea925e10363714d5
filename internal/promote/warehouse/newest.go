package warehouse

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// configReaders bounds the concurrent manifest and config reads of one first pass;
// the host's rate limit paces them anyway, this only keeps latency low.
const configReaders = 4

// maxVerify bounds how often the newest strategy re-ranks after finding its
// winner's tag moved since it was cached.
const maxVerify = 3

type buildsKey struct{ repo, platform string }

// buildCache is what the newest strategy knows about one repository on one
// platform. It holds only tags the registry listed last time, and the digests
// they point to, so it stays as small as the tag list itself.
type buildCache struct {
	mu        sync.Mutex
	tagDigest map[string]string    // tag → manifest or index digest when read
	built     map[string]buildInfo // digest → build time on the platform
}

type buildInfo struct {
	created time.Time
	// ok is false when the image has no manifest for the platform: it is not a candidate.
	ok bool
}

func (w *Warehouse) buildCacheFor(repo name.Repository, p v1.Platform) *buildCache {
	w.buildsMu.Lock()
	defer w.buildsMu.Unlock()
	k := buildsKey{repo.Name(), p.String()}
	bc, ok := w.builds[k]
	if !ok {
		bc = &buildCache{tagDigest: map[string]string{}, built: map[string]buildInfo{}}
		w.builds[k] = bc
	}
	return bc
}

// pickNewest returns the admitted tag with the latest config creation time, and
// its current digest. Only tags not seen before cost requests; the winner alone
// is re-checked with one HEAD so a moved tag is never returned with an old digest.
func (w *Warehouse) pickNewest(ctx context.Context, repo name.Repository, c *compiled, all, admitted []string, rep *Report) (string, string, error) {
	bc := w.buildCacheFor(repo, c.platform)
	bc.prune(all)
	for try := 0; ; try++ {
		if err := w.readBuilds(ctx, repo, c.platform, bc, admitted); err != nil {
			return "", "", err
		}
		best, digest := bc.newest(admitted, rep)
		if best == "" {
			return "", "", nil
		}
		cur, err := w.puller.Load().Head(ctx, repo.Tag(best))
		if err != nil {
			if isNotFound(err) && try < maxVerify {
				bc.forget(best)
				admitted = without(admitted, best)
				continue
			}
			return "", "", w.explain(repo, "read tag "+best, err)
		}
		// digest is the hash of the manifest bytes read into the cache; the HEAD only
		// says whether the tag still points there.
		if cur.Digest.String() == digest {
			return best, digest, nil
		}
		if try >= maxVerify {
			// The registry keeps reporting another digest than it serves: take the
			// hash of what it serves now.
			proven, err := w.provenDigest(ctx, repo, best, cur.Digest.String())
			if err != nil {
				return "", "", w.explain(repo, "read tag "+best, err)
			}
			return best, proven, nil
		}
		// The tag was pushed again since it was cached: read it anew and re-rank.
		bc.forget(best)
	}
}

// readBuilds reads the build time of every tag the cache does not know yet.
func (w *Warehouse) readBuilds(ctx context.Context, repo name.Repository, p v1.Platform, bc *buildCache, tags []string) error {
	bc.mu.Lock()
	var unknown []string
	for _, t := range tags {
		if _, ok := bc.tagDigest[t]; !ok {
			unknown = append(unknown, t)
		}
	}
	bc.mu.Unlock()
	if len(unknown) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(configReaders)
	for _, tag := range unknown {
		g.Go(func() error {
			desc, err := w.puller.Load().Get(gctx, repo.Tag(tag))
			if err != nil {
				if isNotFound(err) {
					return nil // deleted since listing: not a candidate this time
				}
				return w.explain(repo, "read tag "+tag, err)
			}
			// Hashed here rather than taken from the library, which trusts a schema 1
			// registry's Docker-Content-Digest: this digest may be written to Git.
			digest := manifestDigest(desc.Manifest)
			bc.mu.Lock()
			_, known := bc.built[digest]
			bc.mu.Unlock()
			var info buildInfo
			if !known {
				info, err = w.readBuild(gctx, repo, desc, p)
				if err != nil {
					return w.explain(repo, "read build time of tag "+tag, err)
				}
			}
			bc.mu.Lock()
			defer bc.mu.Unlock()
			bc.tagDigest[tag] = digest
			if !known {
				bc.built[digest] = info
			}
			return nil
		})
	}
	return g.Wait()
}

// readBuild reads the config creation time of the image desc names; for an index,
// of its image for platform p.
func (w *Warehouse) readBuild(ctx context.Context, repo name.Repository, desc *remote.Descriptor, p v1.Platform) (buildInfo, error) {
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return buildInfo{}, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return buildInfo{}, err
		}
		var child *v1.Descriptor
		for i := range im.Manifests {
			m := &im.Manifests[i]
			if m.Platform != nil && m.Platform.Satisfies(p) && !m.MediaType.IsIndex() {
				child = m
				break
			}
		}
		if child == nil {
			w.log.DebugContext(ctx, "image has no manifest for platform", "image", repo.Name(), "digest", desc.Digest.String(), "platform", p.String())
			return buildInfo{}, nil
		}
		desc, err = w.puller.Load().Get(ctx, repo.Digest(child.Digest.String()))
		if err != nil {
			return buildInfo{}, err
		}
	}
	img, err := desc.Image()
	if err != nil {
		return buildInfo{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		if registryFailure(err) {
			return buildInfo{}, fmt.Errorf("image config of %s: %w", desc.Digest, err)
		}
		// Not an image config (a Helm chart, an SBOM, a signature pushed as a tag):
		// the tag is no candidate, and one odd artifact must not stall the stage.
		w.log.DebugContext(ctx, "tag is not a container image; skipped", "image", repo.Name(), "digest", desc.Digest.String(), "error", err)
		return buildInfo{}, nil
	}
	return buildInfo{created: cf.Created.Time, ok: true}, nil
}

// newest ranks tags by build time (then by name, for a stable answer) and fills
// the report.
func (bc *buildCache) newest(tags []string, rep *Report) (tag, digest string) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	var bestAt time.Time
	rep.Candidates = 0
	for _, t := range tags {
		d, ok := bc.tagDigest[t]
		if !ok {
			continue
		}
		info := bc.built[d]
		if !info.ok {
			continue
		}
		rep.Candidates++
		if tag == "" || info.created.After(bestAt) || (info.created.Equal(bestAt) && t > tag) {
			tag, digest, bestAt = t, d, info.created
		}
	}
	rep.Highest = tag
	return tag, digest
}

// prune drops tags the registry no longer lists and digests no tag points to.
func (bc *buildCache) prune(listed []string) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	keep := make(map[string]bool, len(listed))
	for _, t := range listed {
		keep[t] = true
	}
	used := make(map[string]bool, len(bc.tagDigest))
	for t, d := range bc.tagDigest {
		if !keep[t] {
			delete(bc.tagDigest, t)
			continue
		}
		used[d] = true
	}
	for d := range bc.built {
		if !used[d] {
			delete(bc.built, d)
		}
	}
}

func (bc *buildCache) forget(tag string) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	delete(bc.tagDigest, tag)
}

func without(tags []string, drop string) []string {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if t != drop {
			out = append(out, t)
		}
	}
	return out
}
