package signature

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/sigstore/sigstore-go/pkg/util"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"k8s.io/utils/clock"
)

// PublicGoodTUF is the public-good Sigstore TUF repository, where Sigstore clients read the
// current trusted_root.json (`--sigstore-tuf-url`'s default).
const PublicGoodTUF = tuf.DefaultMirror

// trustedRootTarget is the TUF target holding the Sigstore trusted root.
const trustedRootTarget = "trusted_root.json"

// PublicGoodRoot is where keyless policies without a trustedRoot get the public-good Sigstore
// trusted root. The embedded copy ages: Fulcio, Rekor (Rekor v2's log2025-1 among them) and
// timestamp authority keys added after sigstore-go v1.3.0 are missing from it. So the root is
// read as Sigstore clients read it, as the trusted_root.json target of the public-good TUF
// repository, verified by TUF metadata chained from sigstore-go's embedded TUF root; at first
// use and again at most once per refresh interval. When TUF fails (no network, a refused
// update) the last copy TUF delivered, kept in the cache directory, is used, and without one
// the embedded root; why is logged once per failure reason.
type PublicGoodRoot struct {
	url      string
	cacheDir string
	tufRoot  []byte
	timeout  time.Duration
	every    time.Duration
	clock    clock.PassiveClock
	log      *slog.Logger

	mu      sync.Mutex
	cur     *root.TrustedRoot
	ref     string    // how messages name cur
	tried   time.Time // last TUF attempt; zero before the first
	tufOK   bool      // cur came from TUF (this run or its cached copy)
	lastWhy string    // the failure last logged, not to log it every pass
}

// PublicGoodOption configures NewPublicGoodRoot.
type PublicGoodOption func(*PublicGoodRoot) error

// WithTUFRoot sets the TUF root.json the repository's metadata is verified from (default
// sigstore-go's embedded public-good TUF root; tests give their repository's).
func WithTUFRoot(js []byte) PublicGoodOption {
	return func(s *PublicGoodRoot) error {
		if len(js) == 0 {
			return errors.New("TUF root.json is empty")
		}
		s.tufRoot = js
		return nil
	}
}

// WithTUFTimeout bounds one TUF update, all its requests together (default 30 seconds): a
// promoter without Internet access waits that long once per refresh interval, then verifies
// with the fallback.
func WithTUFTimeout(d time.Duration) PublicGoodOption {
	return func(s *PublicGoodRoot) error {
		if d <= 0 {
			return fmt.Errorf("TUF timeout %s is not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithTUFRefresh is how often the TUF repository is asked again (default 24 hours; Sigstore
// announces key changes well ahead).
func WithTUFRefresh(d time.Duration) PublicGoodOption {
	return func(s *PublicGoodRoot) error {
		if d <= 0 {
			return fmt.Errorf("TUF refresh interval %s is not positive", d)
		}
		s.every = d
		return nil
	}
}

// WithTUFClock sets the clock the refresh interval is measured with (tests use a fake one).
func WithTUFClock(clk clock.PassiveClock) PublicGoodOption {
	return func(s *PublicGoodRoot) error {
		s.clock = clk
		return nil
	}
}

// WithTUFLogger sets where a failed update and the fallback taken are logged (default
// slog.Default()).
func WithTUFLogger(l *slog.Logger) PublicGoodOption {
	return func(s *PublicGoodRoot) error {
		s.log = l
		return nil
	}
}

// NewPublicGoodRoot reads the trusted root from the TUF repository at url, keeping its TUF
// metadata and the last trusted root it delivered under cacheDir (e.g. --data-dir/sigstore-tuf).
// An empty url never asks the network: the embedded root is used.
func NewPublicGoodRoot(url, cacheDir string, opts ...PublicGoodOption) (*PublicGoodRoot, error) {
	s := &PublicGoodRoot{
		url:      url,
		cacheDir: cacheDir,
		tufRoot:  tuf.DefaultRoot(),
		timeout:  30 * time.Second,
		every:    24 * time.Hour,
		clock:    clock.RealClock{},
		log:      slog.Default(),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if url != "" && cacheDir == "" {
		return nil, fmt.Errorf("sigstore TUF repository %s: no cache directory given", url)
	}
	return s, nil
}

// embeddedRef names the embedded root in messages.
const embeddedRef = "the public-good Sigstore trusted root embedded in kropipe (sigstore-go v1.3.0)"

// TrustedRoot returns the current public-good root and how messages name it. It asks TUF at
// first use and once the refresh interval has passed since the last attempt, successful or
// not; the error is only for an embedded root that does not parse.
func (s *PublicGoodRoot) TrustedRoot() (*root.TrustedRoot, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url == "" {
		tr, err := publicGood()
		return tr, embeddedRef + " (TUF updates off)", err
	}
	if s.cur != nil && s.clock.Since(s.tried) < s.every {
		return s.cur, s.ref, nil
	}
	s.tried = s.clock.Now()
	tr, err := s.fetch()
	if err == nil {
		s.cur, s.tufOK, s.lastWhy = tr, true, ""
		s.ref = "the public-good Sigstore trusted root from TUF " + s.url
		return s.cur, s.ref, nil
	}
	why := err.Error()
	if s.cur != nil && s.tufOK {
		// A root TUF delivered earlier in this run beats anything older.
		s.logOnce(why, "keeping the trusted root TUF delivered earlier")
		return s.cur, s.ref, nil
	}
	if tr, err := s.lastGood(); err == nil {
		s.cur, s.tufOK = tr, true
		s.ref = "the public-good Sigstore trusted root last delivered by TUF " + s.url + " (cached in " + s.lastGoodPath() + ")"
		s.logOnce(why, "using the trusted root TUF delivered last, cached in "+s.lastGoodPath())
		return s.cur, s.ref, nil
	}
	tr, perr := publicGood()
	if perr != nil {
		return nil, "", perr
	}
	s.cur, s.tufOK = tr, false
	s.ref = embeddedRef + " (TUF " + s.url + " failed: " + why + ")"
	s.logOnce(why, "using the trusted root embedded in kropipe (sigstore-go v1.3.0), which lacks keys added since, such as Rekor v2's")
	return s.cur, s.ref, nil
}

func (s *PublicGoodRoot) logOnce(why, fallback string) {
	if why == s.lastWhy {
		return
	}
	s.lastWhy = why
	s.log.Warn("sigstore TUF update failed; keyless signatures under policies without a trustedRoot are verified with a fallback",
		"url", s.url, "err", why, "fallback", fallback, "retry", s.every.String())
}

// fetch runs one TUF update and reads the trusted root target; the root it delivers is kept
// as the last good copy.
func (s *PublicGoodRoot) fetch() (*root.TrustedRoot, error) {
	// One deadline for all the update's requests: a slow repository costs one timeout per
	// update, not one per file.
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	f := fetcher.NewDefaultFetcher() // one try per file: the next refresh is the retry
	f.SetHTTPClient(deadlineClient{ctx: ctx})
	f.SetHTTPUserAgent(util.ConstructUserAgent())
	opts := tuf.DefaultOptions().
		WithRoot(s.tufRoot).
		WithCachePath(filepath.Join(s.cacheDir, "tuf")).
		WithRepositoryBaseURL(s.url).
		WithFetcher(f)
	c, err := tuf.New(opts)
	if err != nil {
		return nil, err
	}
	js, err := c.GetTarget(trustedRootTarget)
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRootFromJSON(js)
	if err != nil {
		return nil, fmt.Errorf("TUF target %s: %w", trustedRootTarget, err)
	}
	if err := writeFileAtomic(s.lastGoodPath(), js); err != nil {
		s.log.Warn("could not keep the sigstore trusted root TUF delivered", "path", s.lastGoodPath(), "err", err)
	}
	return tr, nil
}

// deadlineClient sends every request of one update under its context.
type deadlineClient struct{ ctx context.Context }

func (d deadlineClient) Do(req *http.Request) (*http.Response, error) {
	return http.DefaultClient.Do(req.WithContext(d.ctx))
}

// lastGoodPath is the last trusted root TUF delivered, one per repository: another URL's is
// not this one's.
func (s *PublicGoodRoot) lastGoodPath() string {
	return filepath.Join(s.cacheDir, tuf.URLToPath(s.url)+"."+trustedRootTarget)
}

// lastGood reads the trusted root TUF delivered last (verified by TUF when it was written).
func (s *PublicGoodRoot) lastGood() (*root.TrustedRoot, error) {
	js, err := os.ReadFile(s.lastGoodPath())
	if err != nil {
		return nil, err
	}
	return root.NewTrustedRootFromJSON(js)
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".trusted_root-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
