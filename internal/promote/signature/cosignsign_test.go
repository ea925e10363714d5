package signature

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
)

const (
	testIdentity = "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"
	testIssuer   = "https://token.actions.githubusercontent.com"
	bundleV03    = signaturetest.BundleV03
)

// The signing kit, under the short names the tests use.
var (
	attach     = signaturetest.Attach
	legacyPush = signaturetest.LegacyPush
	statement  = signaturetest.Statement
	cosignSig  = signaturetest.SignatureStatement
	newKey     = signaturetest.NewKey
)

type bundleOpts = signaturetest.BundleOptions

// testRegistry is go-containerregistry's in-memory registry on 127.0.0.1 behind a handler that
// counts requests and can fail the signature requests with 500.
type testRegistry struct {
	host     string
	requests atomic.Int64
	failSigs atomic.Bool
}

func startRegistry(tb testing.TB, referrers bool) *testRegistry {
	tb.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if r.failSigs.Load() && (strings.Contains(req.URL.Path, "/referrers/") || strings.Contains(req.URL.Path, "/manifests/sha256-")) {
			http.Error(w, "backend unavailable", http.StatusInternalServerError)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	tb.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// opts are what the promoter passes: no retries, so a 500 answers at once.
func (r *testRegistry) opts() []remote.Option {
	return []remote.Option{remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Steps: 1})}
}

// pushImage pushes a random image as repo:tag and returns repo@digest.
func (r *testRegistry) pushImage(tb testing.TB, repo, tag string) name.Digest {
	tb.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		tb.Fatal(err)
	}
	ref, err := name.NewTag(r.host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		tb.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return ref.Context().Digest(d.String())
}
