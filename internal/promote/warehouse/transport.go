package warehouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Retry policy for one registry request. Five tries with a 500ms base back-off
// wait about 7.5s in all before giving up, short enough that one poll of a broken
// registry does not hold up its stage for long, and the next poll tries again.
const (
	defaultAttempts = 5
	defaultBackoff  = 500 * time.Millisecond
	maxBackoff      = 30 * time.Second
	// maxRetryAfter caps how long a 429/503 Retry-After is honoured inside one
	// request; a registry asking for longer is reported as rate limiting instead
	// of blocking the poll.
	maxRetryAfter = 2 * time.Minute
)

// registryTransport routes each request to the hostTransport of its host, so the
// rate limit and the back-off of one registry never delay another's requests.
type registryTransport struct {
	inner    http.RoundTripper
	clock    Clock
	log      *slog.Logger
	observe  func(registry string, code int)
	configs  map[string]RegistryConfig
	attempts int
	backoff  time.Duration
	timeout  time.Duration

	mu    sync.Mutex
	hosts map[string]*hostTransport
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.forHost(req.URL.Host).RoundTrip(req)
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
		host:     host,
		inner:    t.inner,
		clock:    t.clock,
		log:      t.log,
		observe:  t.observe,
		limiter:  rate.NewLimiter(limit, burst),
		attempts: t.attempts,
		backoff:  t.backoff,
		timeout:  t.timeout,
	}
	t.hosts[host] = h
	return h
}

// hostTransport is one registry host's rate limit and retry policy.
type hostTransport struct {
	host     string
	inner    http.RoundTripper
	clock    Clock
	log      *slog.Logger
	observe  func(registry string, code int)
	limiter  *rate.Limiter
	attempts int
	backoff  time.Duration
	// timeout bounds each try, body included (0: none).
	timeout time.Duration
}

func (h *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
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
		last := attempt >= h.attempts || (req.Body != nil && req.GetBody == nil)
		if err != nil {
			if last || ctx.Err() != nil || !transientNetError(err) {
				return nil, err
			}
			h.log.DebugContext(ctx, "registry request failed, retrying", "registry", h.host, "path", req.URL.Path, "attempt", attempt, "error", err)
			if err := h.clock.Sleep(ctx, h.delay(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		if !retryableStatus(resp.StatusCode) || last {
			return resp, nil
		}
		wait := h.delay(attempt)
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
		if err := h.clock.Sleep(ctx, wait); err != nil {
			return nil, err
		}
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
	if err := h.clock.Sleep(ctx, d); err != nil {
		r.CancelAt(h.clock.Now())
		return err
	}
	return nil
}

// delay is exponential back-off with jitter in [b/2, b): concurrent stages that
// failed together do not retry together.
func (h *hostTransport) delay(attempt int) time.Duration {
	b := h.backoff << (attempt - 1)
	if b > maxBackoff || b <= 0 {
		b = maxBackoff
	}
	return b/2 + rand.N(b/2+1)
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
