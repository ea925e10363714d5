package warehouse

import (
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/utils/clock"
)

// t0 is the build time tests count from.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testRegistry is go-containerregistry's in-memory registry on 127.0.0.1, behind
// an optional fault handler, counting the requests that reach it.
type testRegistry struct {
	srv  *httptest.Server
	host string
	// fault, when set, may answer a request itself (return true) instead of the registry.
	fault    atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	requests atomic.Int64
	mu       sync.Mutex
	paths    []string
}

func newTestRegistry(tb testing.TB) *testRegistry {
	tb.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.requests.Add(1)
		tr.mu.Lock()
		tr.paths = append(tr.paths, r.Method+" "+r.URL.Path)
		tr.mu.Unlock()
		if f := tr.fault.Load(); f != nil && (*f)(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	tb.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		tr.fault.Store(nil)
		return
	}
	tr.fault.Store(&f)
}

// resetCount zeroes the request counter and returns what it was.
func (tr *testRegistry) resetCount() int64 {
	tr.mu.Lock()
	tr.paths = nil
	tr.mu.Unlock()
	return tr.requests.Swap(0)
}

func (tr *testRegistry) requestPaths() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.paths...)
}

// image returns a small random image whose config says it was built at created.
func testImage(tb testing.TB, created time.Time) v1.Image {
	tb.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		tb.Fatal(err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: created})
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// push writes img under each tag of repo and returns its digest.
func (tr *testRegistry) push(tb testing.TB, repo string, img v1.Image, tags ...string) string {
	tb.Helper()
	for i, tag := range tags {
		ref, err := name.NewTag(tr.host+"/"+repo+":"+tag, name.WeakValidation)
		if err != nil {
			tb.Fatal(err)
		}
		if i == 0 {
			err = remote.Write(ref, img)
		} else {
			err = remote.Tag(ref, img)
		}
		if err != nil {
			tb.Fatalf("push %s: %v", ref, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return d.String()
}

// pushIndex writes a multi-platform index with one image per platform, built at
// the given times, and returns the index digest.
func (tr *testRegistry) pushIndex(tb testing.TB, repo, tag string, builds map[string]time.Time) string {
	tb.Helper()
	var adds []mutate.IndexAddendum
	for plat, created := range builds {
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			tb.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: testImage(tb, created), Descriptor: v1.Descriptor{Platform: p}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	ref, err := name.NewTag(tr.host+"/"+repo+":"+tag, name.WeakValidation)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		tb.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return d.String()
}

// fakeClock is a k8s.io/utils clock whose timers fire at once: it records every wait
// instead of sleeping, and time moves only by waits. (clocktesting.FakeClock would need a
// test to step it past each of many concurrent waits.)
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

var _ clock.Clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// NewTimer records d, moves the time by it and returns a timer that has fired.
func (c *fakeClock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	fired := make(chan time.Time, 1)
	fired <- c.now
	return firedTimer(fired)
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }
func (c *fakeClock) Sleep(d time.Duration)                  { <-c.After(d) }
func (c *fakeClock) Tick(d time.Duration) <-chan time.Time  { return c.After(d) }

type firedTimer chan time.Time

func (t firedTimer) C() <-chan time.Time      { return t }
func (t firedTimer) Stop() bool               { return false }
func (t firedTimer) Reset(time.Duration) bool { return false }

func (c *fakeClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

func (c *fakeClock) total() time.Duration {
	var sum time.Duration
	for _, d := range c.waits() {
		sum += d
	}
	return sum
}

// anonymous is a keychain that never reads the developer's ~/.docker.
var anonymous = authn.NewMultiKeychain()

// newTestWarehouse builds a Warehouse on a fake clock that logs to tb.
func newTestWarehouse(tb testing.TB, opts ...Option) (*Warehouse, *fakeClock) {
	tb.Helper()
	clock := newFakeClock()
	base := []Option{
		WithClock(clock),
		WithKeychain(anonymous),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	w, err := New(append(base, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return w, clock
}
