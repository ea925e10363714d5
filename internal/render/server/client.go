package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"time"
)

// forwardedPrefixes and forwardedNames are the variables `generate` reads from Argo CD: the
// server sees exactly what an in-process render would.
var (
	forwardedPrefixes = []string{"ARGOCD_APP_", "ARGOCD_ENV_", "PARAM_"}
	forwardedNames    = []string{"KUBE_VERSION", "KUBE_API_VERSIONS"}
)

// ForwardedEnv keeps the NAME=value pairs of environ that generate reads.
func ForwardedEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		keep := false
		for _, p := range forwardedPrefixes {
			keep = keep || strings.HasPrefix(name, p)
		}
		for _, n := range forwardedNames {
			keep = keep || name == n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// DialTimeout bounds connecting to the socket: a live server accepts at once.
const DialTimeout = 500 * time.Millisecond

// ErrNoServer is returned by Call when no server listens in the directory: no socket, or one
// left by a server that died. Starting one is then worth it.
var ErrNoServer = errors.New("no render server listens")

// Call sends one request to the server of the private directory dir and waits for its whole
// answer until ctx ends. Any error — no socket, a stale one, a directory another user could
// reach, a server of another version, a server killed while rendering — means the caller should
// render in-process; an Answer with a non-zero Code is a real render failure.
func Call(ctx context.Context, dir string, req Request) (Answer, error) {
	if err := checkPrivate(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Answer{}, fmt.Errorf("%w: %w", ErrNoServer, err)
		}
		return Answer{}, err
	}
	d := net.Dialer{Timeout: DialTimeout}
	c, err := d.DialContext(ctx, "unix", SocketPath(dir))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return Answer{}, fmt.Errorf("%w: %w", ErrNoServer, err)
	}
	if err != nil {
		return Answer{}, err
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(deadline); err != nil {
			return Answer{}, err
		}
	}
	if err := writeRequest(c, req); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrIncomplete, err) // it hung up first
	}
	return readAnswer(c)
}
