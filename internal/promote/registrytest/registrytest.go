// Package registrytest runs go-containerregistry's in-memory OCI registry on 127.0.0.1 for the
// promoter's tests, and pushes images to it the way a CI pipeline would.
package registrytest

import (
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
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
	push(tb, host, repo, tags)
}

func push(tb testing.TB, host, repo string, tags []string, opts ...remote.Option) {
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
		if err := remote.Write(ref, img, opts...); err != nil {
			tb.Fatalf("push %s: %v", ref, err)
		}
	}
}

// Private is a registry that answers 401 to any request without its basic-auth
// credentials, as a private registry does. Its password can change mid-test (a
// rotation).
type Private struct {
	Host string
	User string

	mu       sync.Mutex
	password string
}

// StartPrivate serves an in-memory registry behind basic auth until the test ends.
func StartPrivate(tb testing.TB, user, password string) *Private {
	tb.Helper()
	p := &Private{User: user, password: password}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, pw, ok := r.BasicAuth()
		if !ok || u != p.User || pw != p.Password() {
			w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// Password is the one the registry accepts now.
func (p *Private) Password() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.password
}

// SetPassword changes the accepted password; the old one is refused from now on.
func (p *Private) SetPassword(password string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.password = password
}

// Push writes images as Push does, with the current credentials.
func (p *Private) Push(tb testing.TB, repo string, tags ...string) {
	tb.Helper()
	push(tb, p.Host, repo, tags, remote.WithAuth(&authn.Basic{Username: p.User, Password: p.Password()}))
}

// DockerConfigJSON is the .dockerconfigjson of an image pull Secret holding the
// current credentials.
func (p *Private) DockerConfigJSON() []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(p.User + ":" + p.Password()))
	return []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, p.Host, auth))
}
