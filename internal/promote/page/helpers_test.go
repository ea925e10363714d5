package page_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/addrtest"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/local"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// promoter is `promoter run` in this process: a real engine on a git http-backend server
// and an in-memory OCI registry, served by local.Serve (the API, the page, the pass loop).
type promoter struct {
	git      *gitserver.Server
	registry string
	engine   *stage.Engine
	url      string // http://127.0.0.1:PORT
}

// startPromoter serves develop-frontend (automatic) → staging-frontend (approval needed) →
// prod-frontend (10m soak) on team/frontend 1.2.1 and 1.2.2, every file at 1.2.1, and
// develop-backend → staging-backend on team/backend 2.0.0 and 2.1.0; it returns once
// staging-frontend waits for the approval of 1.2.2 and staging-backend runs 2.1.0.
func startPromoter(t *testing.T, token string) *promoter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := gitserver.StartTB(t)
	if _, err := srv.NewBareRepo(ctx, "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	registrytest.Push(t, host, "team/backend", "2.0.0", "2.1.0")
	wh, err := warehouse.New(warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true}), warehouse.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	image := host + "/team/frontend"
	e, err := stage.New([]stage.Spec{
		{Name: "develop-frontend", Image: image, Constraint: "^1.2", RepoURL: srv.URL("gitops.git"), File: "develop/frontend/instance.yaml", AutoPromote: true},
		{Name: "staging-frontend", Image: image, Upstream: "develop-frontend", RepoURL: srv.URL("gitops.git"), File: "staging/frontend/instance.yaml", AutoPromote: false},
		{Name: "prod-frontend", Image: image, Upstream: "staging-frontend", Soak: 10 * time.Minute, RepoURL: srv.URL("gitops.git"), File: "prod/frontend/instance.yaml", AutoPromote: true},
		{Name: "develop-backend", Image: host + "/team/backend", Constraint: "^2", RepoURL: srv.URL("gitops.git"), File: "develop/backend/instance.yaml", AutoPromote: true},
		{Name: "staging-backend", Image: host + "/team/backend", Upstream: "develop-backend", RepoURL: srv.URL("gitops.git"), File: "staging/backend/instance.yaml", AutoPromote: true},
	}, stage.WithWarehouse(wh), stage.WithGit(t.TempDir()), stage.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	addr := addrtest.Free(t)
	done := make(chan error, 1)
	go func() {
		// A long interval: passes come from the first one, registry notifications and actions.
		done <- local.Serve(ctx, ctx, e, local.ServeConfig{Addr: addr, Token: token, Interval: time.Hour, PassTimeout: time.Minute, Logger: quiet()})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("promoter run: %v", err)
		}
	})
	p := &promoter{git: srv, registry: host, engine: e, url: "http://" + addr}
	p.waitFor(t, "the first pass", func() bool {
		st, _ := e.StatusOf("develop-frontend")
		return e.Passes() > 0 && st.CurrentTag == "1.2.2"
	})
	// The pass after develop took 1.2.2 finds staging waiting for its approval.
	p.engine.Notify(image)
	p.waitFor(t, "staging waiting for approval", func() bool {
		st, _ := e.StatusOf("staging-frontend")
		return st.Reason == "waiting for approval of 1.2.2"
	})
	// A notification passes over its repository's stages only: staging-backend takes 2.1.0
	// when told about team/backend, so no later pass commits it in the middle of a test.
	p.engine.Notify(host + "/team/backend")
	p.waitFor(t, "staging-backend at 2.1.0", func() bool {
		st, _ := e.StatusOf("staging-backend")
		return st.CurrentTag == "2.1.0"
	})
	return p
}

// waitFor waits for cond, which the engine's announcements make worth asking again.
func (p *promoter) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	changed, stop, err := p.engine.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	timeout := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-changed: // subscribed before the first look: no change is missed
		case <-timeout:
			t.Fatalf("waiting for %s: timed out", what)
		}
	}
}

// lastSubject is the subject of the newest commit on the Git server's main branch.
func (p *promoter) lastSubject(t *testing.T) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), p.git.Dir("gitops.git"), "log", "-1", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// visitor is a browser without JavaScript: a cookie jar, no redirects followed.
type visitor struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newVisitor(t *testing.T, base string) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (v *visitor) get(path string) (int, string) {
	v.t.Helper()
	resp, err := v.c.Get(v.base + path)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post sends a form as a page of this server does (Origin and Sec-Fetch-Site as a
// browser sets them), unless header overrides them.
func (v *visitor) post(path string, form url.Values, header map[string]string) (int, string, http.Header) {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, v.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", v.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, val := range header {
		if val == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, val)
	}
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var formTokenRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formToken reads the form token from a page.
func formToken(t *testing.T, html string) string {
	t.Helper()
	m := formTokenRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatal(errors.New("the page has no form token"))
	}
	return m[1]
}

// currentValue finds a card's current value: the link to its freight page and the value.
var currentValue = regexp.MustCompile(`<a class="current" title="value in Git" href="([^"]+)">([^<]+)</a>`)
