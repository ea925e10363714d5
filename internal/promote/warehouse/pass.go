package warehouse

import (
	"context"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// Pass is one look at the registries, shared by the discoveries of one promoter pass: a
// repository's tags are listed once and a tag is resolved once, however many stages and
// selections read them. A tag whose digest an earlier pass proved, and that the
// registry still lists, is not read again: an idle pass costs one tag list per
// repository. That digest is as of when it was proven, so a tag pushed again since
// (a moved tag) is not noticed here: Resolve a candidate right before writing it.
// The digest strategy always asks (one HEAD), since following a moving tag is its job.
//
// Start one per pass with NewPass and drop it at the pass's end: it keeps answering with
// what the registries said when it first asked.
type Pass struct {
	w *Warehouse
	// trustKnown lets semver and lexical winners take a digest proven by an earlier pass.
	trustKnown bool

	mu    sync.Mutex
	lists map[string]*once[[]string]           // repository → its tags
	tags  map[[2]string]*once[freight.Freight] // repository, tag → what it points to
}

// NewPass starts a pass; see Pass.
func (w *Warehouse) NewPass() *Pass {
	return &Pass{w: w, trustKnown: true, lists: map[string]*once[[]string]{}, tags: map[[2]string]*once[freight.Freight]{}}
}

// once is a value asked for once and shared by every caller, error included.
type once[T any] struct {
	do  sync.Once
	v   T
	err error
}

func (o *once[T]) get(f func() (T, error)) (T, error) {
	o.do.Do(func() { o.v, o.err = f() })
	return o.v, o.err
}

func onceFor[K comparable, T any](mu *sync.Mutex, m map[K]*once[T], k K) *once[T] {
	mu.Lock()
	defer mu.Unlock()
	o, ok := m[k]
	if !ok {
		o = &once[T]{}
		m[k] = o
	}
	return o
}

// listTags lists repo's tags once per pass, and forgets the known digests of tags the
// registry no longer lists.
func (p *Pass) listTags(ctx context.Context, repo name.Repository) ([]string, error) {
	return onceFor(&p.mu, p.lists, repo.Name()).get(func() ([]string, error) {
		tags, err := p.w.listTags(ctx, repo)
		if err == nil {
			p.w.known.keep(repo.Name(), tags)
		}
		return tags, err
	})
}

// resolve reads what tag points to now, once per pass.
func (p *Pass) resolve(ctx context.Context, image string, repo name.Repository, tag string) (freight.Freight, error) {
	f, err := onceFor(&p.mu, p.tags, [2]string{repo.Name(), tag}).get(func() (freight.Freight, error) {
		f, err := p.w.resolve(ctx, image, repo, tag)
		if err == nil {
			p.w.known.put(repo.Name(), tag, f.Digest)
		}
		return f, err
	})
	if err == nil {
		// The same repository may be written several ways (docker.io/x, index.docker.io/library/x):
		// the freight names it as this caller did.
		f.Image = image
	}
	return f, err
}

// Resolve is Warehouse.Resolve sharing the pass's requests: a tag this pass already read
// from the registry (its HEAD, and its manifest when unproven) is answered from that read,
// made moments ago; any other tag, including one whose digest only an earlier pass proved,
// is read now. The engine re-checks a candidate with it right before writing.
func (p *Pass) Resolve(ctx context.Context, image, tag string) (freight.Freight, error) {
	repo, err := p.w.tagRepository(image, tag)
	if err != nil {
		return freight.Freight{}, err
	}
	return p.resolve(ctx, image, repo, tag)
}

// Prefetch lists the tags of images' repositories (each once, at most parallel at a
// time) so that the pass's discoveries find them listed: the engine runs it while it
// fetches from Git. Errors are kept for the discoveries that need the list; Prefetch
// returns when every list is in or ctx is done.
func (p *Pass) Prefetch(ctx context.Context, parallel int, images ...string) {
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, image := range images {
		repo, err := p.w.repository(image)
		if err != nil || seen[repo.Name()] {
			continue
		}
		seen[repo.Name()] = true
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, _ = p.listTags(ctx, repo)
		}()
	}
	wg.Wait()
}

// resolveListed is resolve for a tag the pass's tag list holds: a digest proven by an
// earlier pass is taken without a request (see Pass).
func (p *Pass) resolveListed(ctx context.Context, image string, repo name.Repository, tag string) (freight.Freight, error) {
	if p.trustKnown {
		if d, ok := p.w.known.get(repo.Name(), tag); ok {
			return freight.Freight{Image: image, Tag: tag, Digest: d, DiscoveredAt: p.w.clock.Now()}, nil
		}
	}
	return p.resolve(ctx, image, repo, tag)
}

// knownDigests is, per repository, the digest each listed tag was last proven to point
// to. It holds only tags the registry listed last time, so it is as small as the tag lists.
type knownDigests struct {
	mu    sync.Mutex
	m     map[string]map[string]string
	dirty bool // changed since the last save
}

func (k *knownDigests) get(repo, tag string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d, ok := k.m[repo][tag]
	return d, ok
}

func (k *knownDigests) put(repo, tag, digest string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]map[string]string{}
	}
	if k.m[repo] == nil {
		k.m[repo] = map[string]string{}
	}
	if k.m[repo][tag] != digest {
		k.m[repo][tag], k.dirty = digest, true
	}
}

// keep forgets the tags of repo that are not in listed: a tag deleted and pushed again
// is read anew.
func (k *knownDigests) keep(repo string, listed []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	tags := k.m[repo]
	if len(tags) == 0 {
		return
	}
	in := make(map[string]bool, len(listed))
	for _, t := range listed {
		in[t] = true
	}
	for t := range tags {
		if !in[t] {
			delete(tags, t)
			k.dirty = true
		}
	}
}
