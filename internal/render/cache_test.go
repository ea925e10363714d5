package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// cachedRun is everything a render returns to Argo CD: objects, error and warnings.
type cachedRun struct{ out, err, warnings string }

// runFixtureBytes renders a conformance fixture's instance file (or compiles its RGDs) the way
// the plugin does, with or without a shared DefinitionCache.
func runFixtureBytes(f fixture, cache *DefinitionCache) cachedRun {
	var warnings strings.Builder
	opts := []Option{WithCRDPaths(f.crds...), WithRGDPaths(f.rgdPaths...), WithWarnings(&warnings), WithAllowEmpty(true)}
	if cache != nil {
		opts = append(opts, WithDefinitionCache(cache))
	}
	var r cachedRun
	e, err := New(f.root, opts...)
	if err == nil {
		if f.instance != "" {
			var out []byte
			out, err = e.Render(context.Background(), filepath.Join(f.root, f.instance))
			r.out = string(out)
		} else {
			var gvks []schema.GroupVersionKind
			for gvk := range e.sources {
				gvks = append(gvks, gvk)
			}
			sort.Slice(gvks, func(i, j int) bool { return gvks[i].String() < gvks[j].String() })
			var errs []string
			for _, gvk := range gvks {
				if _, err := e.Definition(gvk); err != nil {
					errs = append(errs, err.Error())
				}
			}
			r.out = strings.Join(errs, "\n")
		}
	}
	if err != nil {
		r.err = err.Error()
	}
	r.warnings = warnings.String()
	// kro's graph builder checks a resource's expressions in map order and reports the first that
	// fails, so which one an invalid RGD names changes from run to run, with or without cache.
	r.out, _, _ = strings.Cut(r.out, kroRandomError)
	r.err, _, _ = strings.Cut(r.err, kroRandomError)
	return r
}

const kroRandomError = ": failed to compile template expression"

// TestDefinitionCache_SameBytesForEveryKroFixture renders every fixture the conformance suite
// walks without a cache, then twice through one shared cache (a miss, then a hit, as in the
// render server): objects, errors and warnings must be byte-identical.
func TestDefinitionCache_SameBytesForEveryKroFixture(t *testing.T) {
	module := filepath.Dir(filepath.Dir(kroExamples(t)))
	fixtures := append(append(chainsawFixtures(t, module), upgradeFixtures(t, module)...), exampleFixtures(t, module)...)
	cache := NewDefinitionCache(0)
	for _, f := range fixtures {
		fresh := runFixtureBytes(f, nil)
		for _, pass := range []string{"cold cache", "warm cache"} {
			if got := runFixtureBytes(f, cache); got != fresh {
				t.Errorf("%s, %s: differs from a render without cache:\n got %+v\nwant %+v", f.name, pass, got, fresh)
			}
		}
	}
	if s := cache.Stats(); s.Hits == 0 || s.Entries == 0 {
		t.Errorf("cache stats %+v: the fixtures never hit the cache", s)
	}
}

// copyRepo copies the example GitOps repository to a new folder, moving its RGD file to rgdFile.
func copyRepo(t *testing.T, rgdFile string, edit func(path, content string) string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{}
	err := filepath.WalkDir(examplesRepo, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(examplesRepo, p)
		if rel == filepath.Join("rgds", "webapp.yaml") {
			rel = rgdFile
		}
		files[rel] = edit(rel, string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, root, files)
	return root
}

// TestDefinitionCache_TwoReposConcurrently renders two repositories holding the same RGD at
// different paths, with different instances, concurrently through one cache (run with -race):
// each answer equals the repository's own render without cache, and an error names the
// requesting repository's RGD file, never the other's.
func TestDefinitionCache_TwoReposConcurrently(t *testing.T) {
	keep := func(_, c string) string { return c }
	repoA := copyRepo(t, "rgds/webapp.yaml", keep)
	repoB := copyRepo(t, "platform/web.yaml", func(rel, c string) string {
		if rel == filepath.Join("develop", "frontend", "instance.yaml") {
			return strings.ReplaceAll(c, "1.2.1", "9.9.9")
		}
		return c
	})
	// A third app in B with a wrong instance version: its error names B's RGD file.
	writeFiles(t, repoB, map[string]string{"develop/broken/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: WebApp\nmetadata:\n  name: broken\nspec:\n  image: nginx\n  unknownField: 1\n"})

	render := func(root, app string, cache *DefinitionCache) cachedRun {
		var w strings.Builder
		opts := []Option{WithNamespace("develop"), WithWarnings(&w)}
		if cache != nil {
			opts = append(opts, WithDefinitionCache(cache))
		}
		e, err := New(root, opts...)
		if err != nil {
			return cachedRun{err: err.Error()}
		}
		out, err := e.Render(context.Background(), app)
		r := cachedRun{out: string(out), warnings: w.String()}
		if err != nil {
			r.err = err.Error()
		}
		return r
	}
	type job struct{ root, app string }
	jobs := []job{{repoA, "develop/frontend"}, {repoB, "develop/frontend"}, {repoA, "develop/backend"}, {repoB, "develop/broken"}}
	want := map[job]cachedRun{}
	for _, j := range jobs {
		want[j] = render(j.root, j.app, nil)
	}
	if !strings.Contains(want[jobs[1]].out, "9.9.9") || strings.Contains(want[jobs[0]].out, "9.9.9") {
		t.Fatal("the two repositories' frontends should differ in their image tag")
	}
	if e := want[jobs[3]].err; !strings.Contains(e, filepath.Join("develop", "broken", "instance.yaml")) {
		t.Fatalf("broken instance: error %q should name its file", e)
	}

	cache := NewDefinitionCache(0)
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := range 8 {
		for _, j := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got := render(j.root, j.app, cache); got != want[j] {
					errs <- fmt.Sprintf("round %d, %s in %s: got %+v, want %+v", i, j.app, j.root, got, want[j])
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if s := cache.Stats(); s.Entries != 1 || s.Hits == 0 {
		t.Errorf("cache stats %+v: want one shared WebApp entry, hit by later renders", s)
	}
}

// TestDefinitionCache_EvictsLeastRecentlyUsedBeyondBudget fills a small cache: entries are
// charged what their compilation allocated and the oldest go first.
func TestDefinitionCache_EvictsLeastRecentlyUsedBeyondBudget(t *testing.T) {
	c := NewDefinitionCache(100)
	d := &Definition{}
	c.add(cacheKey{1}, d, 40)
	c.add(cacheKey{2}, d, 40)
	if _, ok := c.get(cacheKey{1}, true); !ok { // 1 is now the most recently used
		t.Fatal("entry 1 missing")
	}
	c.add(cacheKey{3}, d, 40)
	if _, ok := c.get(cacheKey{2}, true); ok {
		t.Error("entry 2, least recently used, should have been evicted")
	}
	for _, k := range []cacheKey{{1}, {3}} {
		if _, ok := c.get(k, true); !ok {
			t.Errorf("entry %d evicted, want kept", k[0])
		}
	}
	c.add(cacheKey{4}, d, 101)
	if s := c.Stats(); s.Entries != 2 || s.Bytes != 80 {
		t.Errorf("stats %+v: want 2 entries, 80 bytes (an entry above the budget is not kept)", s)
	}
}

// TestDefinitionKey_ChangesWithEveryInput: an RGD edit, another CRD, another Kubernetes version
// or another cost limit is another compilation.
func TestDefinitionKey_ChangesWithEveryInput(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(examplesRepo, "rgds", "webapp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments("rgds/webapp.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	rgd, err := decodeRGD(docs[0])
	if err != nil {
		t.Fatal(err)
	}
	edited := rgd.DeepCopy()
	edited.Spec.Resources[0].ID += "x"
	withCRD := chainDigest(cacheKey{}, map[string]string{"kind": "CustomResourceDefinition"})
	base, _ := definitionKey(rgd, "v1.34.4", cacheKey{}, DefaultCostLimit)
	again, _ := definitionKey(rgd.DeepCopy(), "v1.34.4", cacheKey{}, DefaultCostLimit)
	if base != again {
		t.Fatal("the same inputs give different keys")
	}
	for name, k := range map[string]func() (cacheKey, error){
		"edited RGD":   func() (cacheKey, error) { return definitionKey(edited, "v1.34.4", cacheKey{}, DefaultCostLimit) },
		"another CRD":  func() (cacheKey, error) { return definitionKey(rgd, "v1.34.4", withCRD, DefaultCostLimit) },
		"kube version": func() (cacheKey, error) { return definitionKey(rgd, "v1.33.1", cacheKey{}, DefaultCostLimit) },
		"cost limit":   func() (cacheKey, error) { return definitionKey(rgd, "v1.34.4", cacheKey{}, 0) },
	} {
		got, err := k()
		if err != nil {
			t.Fatal(err)
		}
		if got == base {
			t.Errorf("%s: same key as the original", name)
		}
	}
}

// TestDefinitionCache_MemoizedFilesDecodeAlike: a file decoded again from the memo gives the very
// documents a fresh decoding gives (under the requesting name), each call its own objects, and
// a file that fails keeps failing.
func TestDefinitionCache_MemoizedFilesDecodeAlike(t *testing.T) {
	files := map[string]string{
		"numbers.yaml": "a: 1\nb: 1.5\nc: -2e3\nd: 0x1F\ne: ~\nf: [yes, no, 'on']\ng: {h: \"007\"}\n---\n# only a comment\n---\nx: &anchor {y: 1}\nz: *anchor\n",
		"dup.yaml":     "a: 1\na: 2\n",
	}
	err := filepath.WalkDir(examplesRepo, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		files[p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := NewDefinitionCache(0)
	for name, content := range files {
		want, wantErr := splitDocuments(name, []byte(content))
		for _, pass := range []string{"first", "memoized"} {
			got, err := cache.splitDocuments("other/"+name, []byte(content))
			if wantErr != nil {
				if err == nil || !strings.Contains(err.Error(), "other/"+name) {
					t.Errorf("%s, %s: error %v, want one naming other/%s like %v", name, pass, err, name, wantErr)
				}
				continue
			}
			if err != nil || len(got) != len(want) {
				t.Fatalf("%s, %s: %d documents, %v; want %d", name, pass, len(got), err, len(want))
			}
			for i := range want {
				w := want[i]
				w.file = "other/" + name
				if !reflect.DeepEqual(got[i], w) {
					t.Errorf("%s, %s, document %d:\n got %#v\nwant %#v", name, pass, i, got[i], w)
				}
			}
			if len(got) > 0 {
				got[0].obj.Object["changed"] = true // must not reach the next call
			}
		}
	}
	if len(cache.files) == 0 {
		t.Error("nothing was memoized")
	}
}
