package stack

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// FaultProxy forwards every request to a server (a forge, a registry) and, while told to,
// answers the matching ones itself with an error status instead: the server "down for a
// while" as a client sees it through a load balancer. It is the e2e counterpart of
// internal/promote/faults' registry proxy (a test file of the product module, which e2e does
// not import), reduced to what the e2e tests need: a status for a time or for n requests.
type FaultProxy struct {
	URL string // http://127.0.0.1:<port>: use it in place of the server's URL

	srv *http.Server
	rp  *httputil.ReverseProxy

	mu       sync.Mutex
	fail     *failure
	passed   int
	injected int
}

type failure struct {
	status int
	match  func(*http.Request) bool
	left   int       // requests still to fail; < 0: no count
	until  time.Time // zero: no deadline
}

// StartFaultProxy starts a proxy on a free loopback port in front of target (a URL such as
// Gitea.URL). It passes everything through until Fail. Close stops it.
func StartFaultProxy(target string) (*FaultProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("fault proxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{URL: "http://" + ln.Addr().String(), rp: httputil.NewSingleHostReverseProxy(u)}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// GiteaAPI matches requests to Gitea's REST API (not Git over HTTP): for Fail.
func GiteaAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// Fail makes the proxy answer the requests match accepts (nil: every request) with status
// and a JSON error body, until Heal. See FailFor and FailNext for a failure that ends itself.
func (p *FaultProxy) Fail(status int, match func(*http.Request) bool) {
	p.set(&failure{status: status, match: match, left: -1})
}

// FailFor is Fail for d: the server comes back by itself, as after a deploy.
func (p *FaultProxy) FailFor(d time.Duration, status int, match func(*http.Request) bool) {
	p.set(&failure{status: status, match: match, left: -1, until: time.Now().Add(d)})
}

// FailNext is Fail for the next n matching requests only.
func (p *FaultProxy) FailNext(n, status int, match func(*http.Request) bool) {
	p.set(&failure{status: status, match: match, left: n})
}

// Heal passes every request through again.
func (p *FaultProxy) Heal() { p.set(nil) }

func (p *FaultProxy) set(f *failure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = f
}

// Counts says how many requests went through to the server and how many the proxy failed.
func (p *FaultProxy) Counts() (passed, injected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passed, p.injected
}

// Close stops the proxy.
func (p *FaultProxy) Close() error { return p.srv.Close() }

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status := p.decide(r); status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"message":"fault proxy: %d %s"}`, status, http.StatusText(status))
		return
	}
	p.rp.ServeHTTP(w, r)
}

// decide is the status to fail r with, 0 to pass it through.
func (p *FaultProxy) decide(r *http.Request) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fail
	switch {
	case f == nil, f.match != nil && !f.match(r):
	case !f.until.IsZero() && time.Now().After(f.until):
		p.fail = nil
	case f.left == 0:
		p.fail = nil
	default:
		if f.left > 0 {
			f.left--
		}
		p.injected++
		return f.status
	}
	p.passed++
	return 0
}
