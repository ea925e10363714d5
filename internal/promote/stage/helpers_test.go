package stage

import (
	"context"
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

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// t0 is when fake clocks start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFakeClock() *clocktesting.FakeClock { return clocktesting.NewFakeClock(t0) }

// testRegistry is go-containerregistry's in-memory registry on 127.0.0.1. A
// failing path prefix answers 500 so one repository can break alone.
type testRegistry struct {
	host     string
	fail     atomic.Pointer[string]
	tagLists atomic.Int64 // tag-list requests, to see discovery deduplicated

	reqMu  sync.Mutex
	reqs   map[string]int // requests by kind (requestKind), for the request-economy tests
	byRepo map[string]int // requests by repository (team/frontend), pings left out
}

// repositoryRequests returns the requests per repository since the last call and starts over.
func (tr *testRegistry) repositoryRequests() map[string]int {
	tr.reqMu.Lock()
	defer tr.reqMu.Unlock()
	out := tr.byRepo
	tr.byRepo = map[string]int{}
	return out
}

// repositoryOf is the repository a registry API path names: /v2/team/frontend/tags/list → team/frontend.
func repositoryOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/tags/", "/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, sep); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// requestKind names a registry request the way the request-economy goal counts them.
func requestKind(r *http.Request) string {
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		return "ping"
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		return "tags/list"
	case strings.Contains(r.URL.Path, "/manifests/"):
		return "manifest " + r.Method
	}
	return r.Method + " other"
}

// requests returns the requests counted since the last call, by kind, and starts over.
func (tr *testRegistry) requests() map[string]int {
	tr.reqMu.Lock()
	defer tr.reqMu.Unlock()
	out := tr.reqs
	tr.reqs = map[string]int{}
	return out
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr := &testRegistry{reqs: map[string]int{}, byRepo: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/tags/list") {
			tr.tagLists.Add(1)
		}
		tr.reqMu.Lock()
		tr.reqs[requestKind(r)]++
		if repo := repositoryOf(r.URL.Path); repo != "" {
			tr.byRepo[repo]++
		}
		tr.reqMu.Unlock()
		if p := tr.fail.Load(); p != nil && strings.HasPrefix(r.URL.Path, *p) {
			http.Error(w, "broken on purpose", http.StatusInternalServerError)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

// breakRepo makes every request for repository repo (e.g. team/backend) fail with 500.
func (tr *testRegistry) breakRepo(repo string) {
	p := "/v2/" + repo + "/"
	tr.fail.Store(&p)
}

// breakPath makes every request whose path starts with prefix fail with 500.
func (tr *testRegistry) breakPath(prefix string) { tr.fail.Store(&prefix) }

func (tr *testRegistry) image(repo string) string { return tr.host + "/" + repo }

// push uploads a small random image as repo:tag.
func (tr *testRegistry) push(t testing.TB, repo string, tags ...string) {
	t.Helper()
	for _, tag := range tags {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.NewTag(tr.image(repo)+":"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("pushing %s: %v", ref, err)
		}
	}
}

// fixture is a Git server with the seed repository, a registry and a data dir.
type fixture struct {
	t       testing.TB
	git     *gitserver.Server
	url     string
	bare    string
	reg     *testRegistry
	dataDir string
	clock   *clocktesting.FakeClock
	store   Store
}

func newFixture(t testing.TB, opts ...gitserver.Option) *fixture {
	t.Helper()
	srv := gitserver.StartTB(t, opts...)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	return &fixture{
		t: t, git: srv, url: srv.URL("gitops.git"), bare: bare,
		reg: newTestRegistry(t), dataDir: dataDir, clock: newFakeClock(),
		store: NewFileStore(dataDir + "/state.json"),
	}
}

// spec returns a stage writing path/instance.yaml and watching team/<service>.
func (f *fixture) spec(name, dir, service string) Spec {
	return Spec{
		Name: name, Image: f.reg.image("team/" + service), Constraint: "^1.2",
		RepoURL: f.url, Branch: "main", File: dir + "/instance.yaml", AutoPromote: true,
	}
}

func (f *fixture) engine(specs []Spec, opts ...Option) *Engine {
	f.t.Helper()
	wh, err := warehouse.New(warehouse.WithRegistry(f.reg.host, warehouse.RegistryConfig{Insecure: true, RateLimit: -1}), warehouse.WithLogger(quiet()))
	if err != nil {
		f.t.Fatal(err)
	}
	base := []Option{
		WithWarehouse(wh),
		WithGit(f.dataDir+"/git", gitwrite.WithAuthor("kropipe", "kropipe@example.com"), gitwrite.WithLogger(quiet())),
		WithStore(f.store), WithClock(f.clock), WithLogger(quiet()),
	}
	e, err := New(specs, append(base, opts...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// subjects returns the commit subjects on main, newest first, without the seed.
func (f *fixture) subjects() []string {
	f.t.Helper()
	out, err := gitserver.GitOutput(context.Background(), f.bare, "log", "--format=%s", "main")
	if err != nil {
		f.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[:len(lines)-1]
}

// file returns a file's content on main.
func (f *fixture) file(path string) string {
	f.t.Helper()
	out, err := gitserver.GitOutput(context.Background(), f.bare, "show", "main:"+path)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustStatus(t *testing.T, e *Engine, name string) Status {
	t.Helper()
	st, ok := e.StatusOf(name)
	if !ok {
		t.Fatalf("no status for %s", name)
	}
	return st
}

func gitserverOutput(dir string, args ...string) (string, error) {
	return gitserver.GitOutput(context.Background(), dir, args...)
}
