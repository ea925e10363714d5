package warehouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// DefaultRetry is the back-off of one registry request: five tries (four retries), waiting
// 250ms-500ms, then 500ms-1s, 1s-2s and 2s-4s (Jitter 1 spreads each wait over [d, 2d), so
// stages that failed together do not retry together): about 7.5s in all before giving up,
// short enough that one poll of a broken registry does not hold up its stage for long, and
// the next poll tries again. A Retry-After the registry sends replaces the wait, not the count.
var DefaultRetry = wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 1, Steps: 4, Cap: 30 * time.Second}

// maxRetryAfter caps how long a 429/503 Retry-After is honoured inside one request; a
// registry asking for longer is reported as rate limiting instead of blocking the poll.
const maxRetryAfter = 2 * time.Minute

// registryTransport routes each request to the hostTransport of its host, so the
// rate limit and the back-off of one registry never delay another's requests.
type registryTransport struct {
	inner   http.RoundTripper
	clock   clock.Clock
	log     *slog.Logger
	observe func(registry string, code int)
	configs map[string]RegistryConfig
	retry   wait.Backoff
	timeout time.Duration

	mu    sync.Mutex
	hosts map[string]*hostTransport
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := t.forHost(req.URL.Host)
	if isPing(req) {
		return h.ping(req)
	}
	return h.RoundTrip(req)
}

// forgetPings drops every host's remembered ping answer, so the next session learns
// the registry's auth challenge anew (new credentials may meet a changed registry).
func (t *registryTransport) forgetPings() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.hosts {
		h.pingMu.Lock()
		h.pings = nil
		h.pingMu.Unlock()
	}
}

func (t *registryTransport) forHost(host string) *hostTransport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.hosts[host]; ok {
		return h
	}
	cfg := t.configs[host]
	limit := rate.Limit(cfg.RateLimit)
	switch {
	case cfg.RateLimit == 0:
		limit = DefaultRateLimit
	case cfg.RateLimit < 0:
		limit = rate.Inf
	}
	burst := int(limit)
	if burst < 1 || limit == rate.Inf {
		burst = 1
	}
	h := &hostTransport{
		host:    host,
		inner:   t.inner,
		clock:   t.clock,
		log:     t.log,
		observe: t.observe,
		limiter: rate.NewLimiter(limit, burst),
		retry:   t.retry,
		timeout: t.timeout,
	}
	t.hosts[host] = h
	return h
}

// hostTransport is one registry host's rate limit and retry policy.
type hostTransport struct {
	host    string
	inner   http.RoundTripper
	clock   clock.Clock
	log     *slog.Logger
	observe func(registry string, code int)
	limiter *rate.Limiter
	retry   wait.Backoff
	// timeout bounds each try, body included (0: none).
	timeout time.Duration

	// pings remembers the answer to GET /v2/ per scheme: see ping.
	pingMu sync.Mutex
	pings  map[string]*pingAnswer
	// pinging makes repositories opened together wait for one ping.
	pinging singleflight.Group
}

// pingAnswer is a remembered answer to GET /v2/ (the auth challenge).
type pingAnswer struct {
	status int
	header http.Header
	body   []byte
}

// maxPingBody bounds the remembered body of a ping answer; the challenge is in the headers.
const maxPingBody = 4 << 10

// isPing reports whether req is go-containerregistry's ping: an unauthenticated GET /v2/
// that asks the registry how it wants to be authenticated.
func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && req.URL.Path == "/v2/" && req.Header.Get("Authorization") == ""
}

// ping answers GET /v2/ from the host's remembered answer, asking the registry only the
// first time. go-containerregistry pings once per repository it opens a session for, so
// a promoter watching many repositories of one registry would otherwise ping it once per
// repository; the challenge belongs to the host, not the repository. Only the answers
// that state a challenge (200: none needed, 401: this one) are kept; any other answer
// or a failure is passed on and asked again next time.
func (h *hostTransport) ping(req *http.Request) (*http.Response, error) {
	h.pingMu.Lock()
	a, ok := h.pings[req.URL.Scheme]
	h.pingMu.Unlock()
	if ok {
		return a.response(req), nil
	}
	var passOn *http.Response
	v, err, _ := h.pinging.Do(req.URL.Scheme, func() (any, error) {
		resp, err := h.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			passOn = resp
			return nil, nil
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPingBody))
		if err != nil {
			return nil, err
		}
		a := &pingAnswer{status: resp.StatusCode, header: resp.Header.Clone(), body: body}
		h.pingMu.Lock()
		if h.pings == nil {
			h.pings = map[string]*pingAnswer{}
		}
		h.pings[req.URL.Scheme] = a
		h.pingMu.Unlock()
		return a, nil
	})
	if err != nil {
		return nil, err
	}
	if v == nil {
		if passOn != nil { // this request was the one sent
			return passOn, nil
		}
		// Another repository's ping got an answer that is not kept: ask on our own.
		return h.RoundTrip(req)
	}
	return v.(*pingAnswer).response(req), nil
}

func (a *pingAnswer) response(req *http.Request) *http.Response {
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)),
		StatusCode:    a.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        a.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(a.body)),
		ContentLength: int64(len(a.body)),
		Request:       req,
	}
}

func (h *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	backoff := h.retry // a copy: each request steps its own
	for attempt := 1; ; attempt++ {
		if err := h.wait(ctx); err != nil {
			return nil, err
		}
		try := req
		if attempt > 1 && req.Body != nil && req.GetBody != nil {
			// A RoundTripper must not change the caller's request: replay the body on a copy.
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			try = req.Clone(ctx)
			try.Body = body
		}
		resp, err := h.try(try)
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		if h.observe != nil {
			h.observe(h.host, code)
		}
		// A request whose body cannot be replayed gets one try.
		last := backoff.Steps <= 0 || (req.Body != nil && req.GetBody == nil)
		if err != nil {
			if last || ctx.Err() != nil || !transientNetError(err) {
				return nil, err
			}
			h.log.DebugContext(ctx, "registry request failed, retrying", "registry", h.host, "path", req.URL.Path, "attempt", attempt, "error", err)
			if err := h.sleep(ctx, backoff.Step()); err != nil {
				return nil, err
			}
			continue
		}
		if !retryableStatus(resp.StatusCode) || last {
			return resp, nil
		}
		wait := backoff.Step()
		if ra, ok := retryAfter(resp.Header.Get("Retry-After"), h.clock.Now()); ok {
			if ra > maxRetryAfter {
				// Hand the 429/503 to the caller: waiting minutes inside one request
				// would stall the stage's poll; the next poll asks again.
				return resp, nil
			}
			wait = ra
		}
		h.log.InfoContext(ctx, "registry asked to retry", "registry", h.host, "path", req.URL.Path, "status", resp.StatusCode, "attempt", attempt, "wait", wait)
		// Drain so the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err := h.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// sleep waits d on the clock, or returns ctx.Err() as soon as ctx is done.
func (h *hostTransport) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	t := h.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// try sends one request under the per-request timeout. The timeout stays armed
// until the body is closed, so a registry that sends headers and then stalls the
// body is cut off too.
func (h *hostTransport) try(req *http.Request) (*http.Response, error) {
	if h.timeout <= 0 {
		return h.inner.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeoutCause(req.Context(), h.timeout, errRequestTimeout{h.host, h.timeout})
	resp, err := h.inner.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timedOut := ctx.Err() != nil && req.Context().Err() == nil
		cancel()
		if timedOut {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, ctx: ctx, parent: req.Context(), cancel: cancel}
	return resp, nil
}

// errRequestTimeout is a registry request that took longer than the warehouse's
// request timeout. It is a net.Error with Timeout() true, like the transport's own.
type errRequestTimeout struct {
	host    string
	timeout time.Duration
}

func (e errRequestTimeout) Error() string {
	return fmt.Sprintf("registry %s did not answer within %s (request timeout)", e.host, e.timeout)
}
func (errRequestTimeout) Timeout() bool   { return true }
func (errRequestTimeout) Temporary() bool { return false }

// cancelOnClose releases a request's timeout when its body is closed, and names the
// timeout when reading the body hit it.
type cancelOnClose struct {
	io.ReadCloser
	ctx, parent context.Context
	cancel      context.CancelFunc
}

func (b *cancelOnClose) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() != nil && b.parent.Err() == nil {
		err = context.Cause(b.ctx)
	}
	return n, err
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// wait takes a token from the host's rate limiter, sleeping on the Clock so tests
// can see the wait.
func (h *hostTransport) wait(ctx context.Context) error {
	now := h.clock.Now()
	r := h.limiter.ReserveN(now, 1)
	if !r.OK() {
		return errors.New("rate limiter cannot grant a request")
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if err := h.sleep(ctx, d); err != nil {
		r.CancelAt(h.clock.Now())
		return err
	}
	return nil
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// transientNetError is a connection that broke mid-request. A refused connection
// or an unknown host is not retried: the registry is down or misnamed, and the
// next poll is soon enough to find out again.
func transientNetError(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
