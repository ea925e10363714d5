package warehouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// explain turns a registry client error into one that names the image, the
// registry and what the user can do. The original error stays wrapped (errors.As
// finds *transport.Error); its URLs are already redacted by the library and it
// never carries request headers, so no credential reaches the message.
func (w *Warehouse) explain(repo name.Repository, action string, err error) error {
	reg := repo.RegistryStr()
	img := repo.Name()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s of %s: %w", action, img, err)
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		code := terr.StatusCode
		status := fmt.Sprintf("%d %s", code, http.StatusText(code))
		switch {
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return fmt.Errorf("%s of %s: registry %s refused access (%s): check the credentials for %s in the Docker config file or pull secret: %w", action, img, reg, status, reg, err)
		case code == http.StatusNotFound:
			return fmt.Errorf("%s of %s: repository not found in registry %s (%s): check the image name: %w", action, img, reg, status, err)
		case code == http.StatusTooManyRequests:
			return fmt.Errorf("%s of %s: registry %s is rate limiting (%s): lower registries[].rateLimit for %s or poll less often; the next poll tries again: %w", action, img, reg, status, reg, err)
		case code >= 500:
			return fmt.Errorf("%s of %s: registry %s failed (%s) and kept failing on retry: the registry is unhealthy; the next poll tries again: %w", action, img, reg, status, err)
		default:
			return fmt.Errorf("%s of %s: registry %s answered %s: %w", action, img, reg, status, err)
		}
	}
	var slow errRequestTimeout
	if errors.As(err, &slow) {
		return fmt.Errorf("%s of %s: registry %s did not answer within %s: it is hung or overloaded; its stages wait, the next poll tries again: %w", action, img, reg, slow.timeout, err)
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s of %s: registry %s sent a malformed response (%v): it does not answer as an OCI registry; check the host and port", action, img, reg, err)
	}
	var nerr net.Error
	var oerr *net.OpError
	if errors.As(err, &oerr) || errors.As(err, &nerr) {
		return fmt.Errorf("%s of %s: registry %s is unreachable: %w: check the host, that the registry is running, and registries[].insecure for plain-HTTP registries", action, img, reg, err)
	}
	return fmt.Errorf("%s of %s (registry %s): %w", action, img, reg, err)
}

func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode {
			return true
		}
	}
	return false
}

// registryFailure reports whether err came from talking to the registry (and so
// should fail the poll) rather than from the content it served.
func registryFailure(err error) bool {
	var terr *transport.Error
	var nerr net.Error
	var oerr *net.OpError
	return errors.As(err, &terr) || errors.As(err, &nerr) || errors.As(err, &oerr) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
