package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy sits between the promoter and the registry on 127.0.0.1 and misbehaves
// as told: each request goes through the current fault, which may answer it itself.
type faultProxy struct {
	host  string
	rp    *httputil.ReverseProxy
	fault atomic.Pointer[fault]
	// release ends every hung request (closed when the test ends).
	release chan struct{}

	mu       sync.Mutex
	requests map[string]int // "list", "head", "get", "other" → count
	injected int
}

// fault answers r itself (true) or lets it through to the registry (false).
type fault func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool

func startProxy(t *testing.T, backend string) *faultProxy {
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{rp: httputil.NewSingleHostReverseProxy(u), requests: map[string]int{}, release: make(chan struct{})}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(p.release) }) // runs first: hung handlers return, Close can finish
	p.host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func kind(r *http.Request) string {
	switch {
	case strings.HasSuffix(r.URL.Path, "/tags/list"):
		return "list"
	case strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodHead:
		return "head"
	case strings.Contains(r.URL.Path, "/manifests/"):
		return "get"
	}
	return "other"
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests[kind(r)]++
	p.mu.Unlock()
	if f := p.fault.Load(); f != nil && (*f)(p, w, r) {
		p.mu.Lock()
		p.injected++
		p.mu.Unlock()
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *faultProxy) set(f fault) {
	if f == nil {
		p.fault.Store(nil)
		return
	}
	p.fault.Store(&f)
}

func (p *faultProxy) counts() (map[string]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := map[string]int{}
	for k, v := range p.requests {
		c[k] = v
	}
	return c, p.injected
}

// backend answers r from the registry into a recorder, for faults that change an answer.
func (p *faultProxy) backend(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	return rec
}

// onKind applies f to the first n requests of kind k (n < 0: all).
func onKind(k string, n int, f func(p *faultProxy, w http.ResponseWriter, r *http.Request)) fault {
	var left atomic.Int64
	left.Store(int64(n))
	return func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
		if kind(r) != k {
			return false
		}
		if n >= 0 && left.Add(-1) < 0 {
			return false
		}
		f(p, w, r)
		return true
	}
}

func statusCode(code int, header ...string) func(*faultProxy, http.ResponseWriter, *http.Request) {
	return func(_ *faultProxy, w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"fault %d"}]}`, code)
	}
}

// truncated sends the first half of the registry's answer. With a Content-Length the
// connection ends early; without, the body is just cut (broken JSON).
func truncated(withLength bool) func(*faultProxy, http.ResponseWriter, *http.Request) {
	return func(p *faultProxy, w http.ResponseWriter, r *http.Request) {
		rec := p.backend(r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Type", "application/json")
		if withLength {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		if withLength {
			// Hijack to cut the connection mid-body.
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
				}
			}
		}
	}
}

func notJSON(_ *faultProxy, w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "<html><body>Welcome to nginx!</body></html>")
}

// addTags lists tags besides the registry's own.
func addTags(tags ...string) func(*faultProxy, http.ResponseWriter, *http.Request) {
	return func(p *faultProxy, w http.ResponseWriter, r *http.Request) {
		rec := p.backend(r)
		var list struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		list.Tags = append(list.Tags, tags...)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	}
}

// wrongDigest answers manifest HEADs and GETs with a digest the registry does not serve.
func wrongDigest(p *faultProxy, w http.ResponseWriter, r *http.Request) {
	rec := p.backend(r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("e", 64))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// hung accepts the request and never answers (until the test ends).
func hung(p *faultProxy, w http.ResponseWriter, r *http.Request) {
	select {
	case <-p.release:
	case <-r.Context().Done():
	}
}

// slow answers after d.
func slow(d time.Duration) func(*faultProxy, http.ResponseWriter, *http.Request) {
	return func(p *faultProxy, w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-p.release:
		}
		p.rp.ServeHTTP(w, r)
	}
}
