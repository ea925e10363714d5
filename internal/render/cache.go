package render

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"runtime/metrics"
	"sync"

	"github.com/kubernetes-sigs/kro/api/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// cacheFormat changes whenever what goes into a cache key, or what a compiled Definition holds,
// changes meaning, so a key never matches a Definition built by other rules.
const cacheFormat = "kropipe-render-definition/1"

// DefaultCacheBytes bounds a DefinitionCache made with a size of 0. The example WebApp RGD
// charges 9 MiB (the bytes allocated while compiling it, schemas loaded on the way included: an
// upper bound of what it keeps — BenchmarkRender_ExampleFrontendServer reports it; measured after
// a GC, ten revisions of it retain ~2.2 MiB each), so this holds at least thirteen such RGDs
// and at most ~30 MiB of them while the render server stays inside its 128 MiB heap limit.
const DefaultCacheBytes = 128 << 20

// DefinitionCache keeps compiled ResourceGraphDefinitions across Engines, so a long-lived
// render server compiles an RGD once for every repository and revision that holds it.
//
// A Definition is found by a hash of everything its compilation read — the RGD as decoded, the
// Kubernetes snapshot, every CRD in the Engine's schema set when it compiled, the cost limit
// and the cache format — never by a path or a time, so two repositories holding the same RGD
// share it, and a changed RGD or CRD is a different entry. Definitions are immutable once
// compiled; a hit is copied with the requesting file's name, so one request never sees another's
// paths. Least recently used entries are dropped beyond the byte budget. It is safe for
// concurrent use.
type DefinitionCache struct {
	max int64

	mu      sync.Mutex
	used    int64
	order   *list.List // of *cacheEntry, most recently used first
	entries map[cacheKey]*list.Element
	hits    int64
	misses  int64

	// compiling lets one compilation run at a time: a hundred apps refreshed together after a
	// commit to rgds/ compile their shared RGD once (the others wait and then hit), memory peaks
	// at one compilation, and the bytes charged for it are not inflated by others.
	compiling sync.Mutex

	// files memoizes splitDocuments by a file's bytes (see splitDocuments below).
	filesMu   sync.Mutex
	files     map[cacheKey][]memoDocument
	filesUsed int64
}

// filesMemoBytes bounds the memo of decoded files. The files of one repository are a few dozen
// KiB; when the bound is reached the memo starts afresh, simpler than an LRU for this size.
const filesMemoBytes = 16 << 20

// memoDocument is one decoded document of a memoized file: its YAML and its object as JSON.
type memoDocument struct {
	index     int
	raw, json []byte
}

type cacheKey [sha256.Size]byte

type cacheEntry struct {
	key  cacheKey
	def  *Definition
	size int64
}

// CacheStats describes a DefinitionCache, for the render server's health answer and benchmarks.
type CacheStats struct {
	Entries      int
	Bytes, Limit int64
	Hits, Misses int64
}

// NewDefinitionCache makes a cache holding at most maxBytes of compiled Definitions
// (DefaultCacheBytes when 0).
func NewDefinitionCache(maxBytes int64) *DefinitionCache {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	return &DefinitionCache{max: maxBytes, order: list.New(), entries: map[cacheKey]*list.Element{}}
}

// Stats returns the current figures.
func (c *DefinitionCache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: len(c.entries), Bytes: c.used, Limit: c.max, Hits: c.hits, Misses: c.misses}
}

// get finds a Definition; countMiss is false for the look before waiting to compile, which is
// followed by a second look.
func (c *DefinitionCache) get(k cacheKey, countMiss bool) (*Definition, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		if countMiss {
			c.misses++
		}
		return nil, false
	}
	c.hits++
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).def, true
}

func (c *DefinitionCache) add(k cacheKey, d *Definition, size int64) {
	if size > c.max {
		return // would evict everything and still not fit
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; ok {
		return // compiled concurrently by another request
	}
	c.entries[k] = c.order.PushFront(&cacheEntry{key: k, def: d, size: size})
	c.used += size
	for c.used > c.max {
		last := c.order.Back()
		e := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.entries, e.key)
		c.used -= e.size
	}
}

// splitDocuments is the package's splitDocuments memoized by the file's bytes: a render server
// reads the same RGD and instance files on every request, and their duplicate-key check and
// YAML→JSON conversion cost more than rendering the instance. Each call still decodes its own
// objects, from the JSON kept, so no request holds an object another one can change; the file's
// name comes from the caller. Files that fail are not kept: their error is made afresh.
func (c *DefinitionCache) splitDocuments(rel string, data []byte) ([]document, error) {
	if c == nil {
		return splitDocuments(rel, data)
	}
	k := cacheKey(sha256.Sum256(data))
	c.filesMu.Lock()
	memo, ok := c.files[k]
	c.filesMu.Unlock()
	if ok {
		docs := make([]document, len(memo))
		for i, m := range memo {
			var obj map[string]interface{}
			if err := json.Unmarshal(m.json, &obj); err != nil {
				return splitDocuments(rel, data) // unreachable: the JSON was marshalled from such a map
			}
			docs[i] = document{file: rel, index: m.index, raw: m.raw, obj: &unstructured.Unstructured{Object: obj}}
		}
		return docs, nil
	}
	docs, err := splitDocuments(rel, data)
	if err != nil {
		return nil, err
	}
	memo = make([]memoDocument, len(docs))
	size := int64(len(data))
	for i, d := range docs {
		// JSON round-trips what YAML decoding gives (strings, float64, bools, nil, maps, slices)
		// exactly: the same decoding sigs.k8s.io/yaml ends with.
		j, err := json.Marshal(d.obj.Object)
		if err != nil {
			return docs, nil
		}
		memo[i] = memoDocument{index: d.index, raw: d.raw, json: j}
		size += int64(len(d.raw) + len(j))
	}
	c.filesMu.Lock()
	defer c.filesMu.Unlock()
	if c.files == nil || c.filesUsed+size > filesMemoBytes {
		c.files, c.filesUsed = map[cacheKey][]memoDocument{}, 0
	}
	if size <= filesMemoBytes {
		c.files[k] = memo
		c.filesUsed += size
	}
	return docs, nil
}

// definitionKey hashes the inputs of one compilation. setDigest stands for the CRDs of the
// schema set; the snapshot is named by its Kubernetes version.
func definitionKey(rgd *v1alpha1.ResourceGraphDefinition, kubeVersion string, setDigest cacheKey, costLimit uint64) (cacheKey, error) {
	body, err := json.Marshal(rgd) // struct fields in order, map keys sorted: deterministic
	if err != nil {
		return cacheKey{}, err
	}
	h := sha256.New()
	for _, part := range []string{cacheFormat, kubeVersion, string(setDigest[:]), string(body)} {
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(part)))) // length-prefixed: no ambiguous joins
		h.Write([]byte(part))
	}
	h.Write(binary.LittleEndian.AppendUint64(nil, costLimit))
	var k cacheKey
	h.Sum(k[:0])
	return k, nil
}

// chainDigest folds one more CRD added to a schema set into the set's digest.
func chainDigest(prev cacheKey, crd any) cacheKey {
	body, err := json.Marshal(crd)
	if err != nil {
		// Unreachable for API types; a digest nobody else can produce keeps the cache correct.
		body = []byte(err.Error())
	}
	h := sha256.New()
	h.Write(prev[:])
	h.Write(body)
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// allocatedBytes reads the process's cumulative heap allocations without stopping the world. The
// difference around a compilation is what a cache entry is charged: an upper bound of what the
// Definition keeps (concurrent compilations only make it larger).
func allocatedBytes() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// replayWarnings makes a cached Definition warn, through the requesting Engine's schema set, about
// the kinds its compilation would have warned about: template kinds with no schema or no REST
// mapping. Both checks are cheap for such kinds; the set says each once, as a compilation would.
func (e *Engine) replayWarnings(kinds []schema.GroupVersionKind) {
	mapper := e.set.RESTMapper()
	for _, gvk := range kinds {
		if !e.set.Known(gvk) {
			_, _ = e.set.ResolveSchema(gvk)
		}
		_, _ = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
}
