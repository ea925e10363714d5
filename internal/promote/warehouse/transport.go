package warehouse

import (
	"context"
	"errors"
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
		resp, err := h.inner.RoundTrip(try)
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
