// Package registrytest runs go-containerregistry's in-memory OCI registry on 127.0.0.1 for the
// promoter's tests, and pushes images to it the way a CI pipeline would.
package registrytest

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Start serves a quiet in-memory registry until the test ends and returns its host:port.
func Start(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	tb.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push writes a small random image to host/repo under each tag.
func Push(tb testing.TB, host, repo string, tags ...string) {
	tb.Helper()
	for _, tag := range tags {
		img, err := random.Image(64, 1)
		if err != nil {
			tb.Fatal(err)
		}
		ref, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
		if err != nil {
			tb.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			tb.Fatalf("push %s: %v", ref, err)
		}
	}
}
