package warehouse

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/utils/clock"
)

// DefaultRateLimit is the requests per second allowed to one registry host when
// RegistryConfig.RateLimit is zero, in bursts of as many. It is below the per-second
// request quotas registries publish (ECR's per-API quotas run to hundreds a second;
// Docker Hub and GHCR publish no per-second figure: Docker Hub counts manifest GETs
// per hour, which the warehouse makes only for tags it has not proven) and lets one
// replica pass over 10,000 repositories with a new tag each in under 5 minutes (a tag
// list and a manifest GET each). A 429 or 503 is honoured (Retry-After) either way.
const DefaultRateLimit = 100

// defaultPageSize asks for up to 1,000 tags a page: ECR rejects more.
const defaultPageSize = 1000

// RegistryConfig is how the warehouse talks to one registry host.
type RegistryConfig struct {
	// Insecure lets the registry be reached over plain HTTP when HTTPS fails.
	// It does not skip certificate checks: for a self-signed HTTPS registry, pass
	// a transport that trusts its CA with WithTransport.
	Insecure bool
	// RateLimit is the requests per second to this host, with bursts of as many:
	// 0 means DefaultRateLimit, a negative value means no limit. Every request
	// counts: within a Pass a repository costs one tag-list page per 1,000 tags
	// whatever its stages, and a tag a HEAD (and a manifest GET) only the first time
	// it wins; the host's auth challenge is asked once.
	RateLimit float64
}

// Option configures a Warehouse.
type Option func(*options)

type options struct {
	keychain       authn.Keychain
	transport      http.RoundTripper
	registries     map[string]RegistryConfig
	log            *slog.Logger
	clock          clock.Clock
	observe        func(registry string, code int)
	pageSize       int
	requestTimeout time.Duration
	onInvalidTag   func(image, tag string)
	digestFile     string
}

// DefaultRequestTimeout bounds one registry request (each try of it), body
// included: a registry that accepts the connection and never answers fails the
// request after it, not the promoter for ever.
const DefaultRequestTimeout = 30 * time.Second

// WithRequestTimeout bounds each registry request, headers and body, each retry
// on its own (default DefaultRequestTimeout; 0 or less keeps the default). A timed
// out request is not retried: the next poll asks again.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.requestTimeout = d
		}
	}
}

// WithDigestFile keeps the digests the warehouse proved (each listed tag's sha256, hashed
// from the manifest it read) in path across restarts, written after each pass
// (Pass.Done): `promoter run --once` from cron then costs one tag list per repository
// when nothing is new, instead of reading every manifest again. A missing or unreadable
// file only costs those reads once.
func WithDigestFile(path string) Option {
	return func(o *options) { o.digestFile = path }
}

// WithInvalidTags calls observe once for every listed tag that is not a valid tag
// name, per image (the warehouse logs it once too), e.g. to count them.
func WithInvalidTags(observe func(image, tag string)) Option {
	return func(o *options) { o.onInvalidTag = observe }
}

// WithKeychain sets where registry credentials come from (default
// authn.DefaultKeychain, the Docker config file). Combine sources with
// authn.NewMultiKeychain, e.g. KeychainFromPullSecrets then KeychainFromDockerConfig.
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) { o.keychain = kc }
}

// WithRegistry configures one registry host, written as in image references
// (127.0.0.1:5000, ghcr.io; docker.io means Docker Hub). Later calls for the
// same host win.
func WithRegistry(host string, cfg RegistryConfig) Option {
	return func(o *options) { o.registries[registryKey(host)] = cfg }
}

// WithTransport sets the HTTP transport under the warehouse's rate limiting and
// retries (default remote.DefaultTransport).
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) { o.transport = t }
}

// WithLogger sets the logger (default slog.Default()). Requests are logged with
// registry, path and status, never with credentials.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithClock replaces the wall clock; tests use it to observe retry and rate-limit
// waits without sleeping.
func WithClock(c clock.Clock) Option {
	return func(o *options) { o.clock = c }
}

// WithMetrics calls observe after every HTTP response from a registry (code 0
// when no response came back), e.g. to count requests by registry and status.
// It must be fast and safe for concurrent use.
func WithMetrics(observe func(registry string, code int)) Option {
	return func(o *options) { o.observe = observe }
}

// WithPageSize sets how many tags one tag-list request asks for (default 1000).
func WithPageSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.pageSize = n
		}
	}
}

// registryKey normalises a host the way image references are resolved, so
// "docker.io" configures the host requests really go to.
func registryKey(host string) string {
	if r, err := name.NewRegistry(host, name.WeakValidation); err == nil {
		return r.RegistryStr()
	}
	return host
}
