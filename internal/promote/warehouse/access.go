package warehouse

import (
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The accessors below let another reader of the same registries (the signature verifiers)
// go through the warehouse's rate limits, retries, credentials and insecure hosts, so a
// signature request counts against the same per-host budget as discovery's.

// Transport is the warehouse's rate-limited, retrying transport.
func (w *Warehouse) Transport() http.RoundTripper { return w.rt }

// Keychain resolves credentials with the warehouse's keychain of the moment: one rotated
// with SetKeychain is used from then on.
func (w *Warehouse) Keychain() authn.Keychain { return currentKeychain{w} }

type currentKeychain struct{ w *Warehouse }

func (k currentKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	return (*k.w.keychain.Load()).Resolve(r)
}

// Insecure reports whether registry (host:port as name.Registry.RegistryStr says) is
// configured insecure: reached over plain HTTP.
func (w *Warehouse) Insecure(registry string) bool { return w.registries[registry].Insecure }

// RemoteOptions are the options the warehouse's own requests use: its transport, its
// keychain, no retries of go-containerregistry's own (the transport retries).
func (w *Warehouse) RemoteOptions() []remote.Option {
	return []remote.Option{
		remote.WithTransport(w.rt),
		remote.WithAuthFromKeychain(w.Keychain()),
		remote.WithUserAgent("kropipe-promoter"),
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(func(error) bool { return false }),
	}
}

// DigestReference is image@digest, marked insecure when its registry is.
func (w *Warehouse) DigestReference(image, digest string) (name.Digest, error) {
	repo, err := w.repository(image)
	if err != nil {
		return name.Digest{}, err
	}
	d, err := name.NewDigest(repo.Name()+"@"+digest, name.WeakValidation)
	if err != nil {
		return name.Digest{}, fmt.Errorf("image %s@%s: %w", image, digest, err)
	}
	if w.Insecure(repo.RegistryStr()) {
		d, err = name.NewDigest(repo.Name()+"@"+digest, name.WeakValidation, name.Insecure)
	}
	return d, err
}
