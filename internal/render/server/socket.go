package server

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Env variables the sidecar container may set. Argo CD passes an Application only ARGOCD_ENV_*
// variables, so a repository cannot point generate at another socket or turn the server off.
const (
	// EnvDir names the private directory holding the socket (default: DefaultDir()).
	EnvDir = "KROPIPE_RENDER_DIR"
	// EnvMode is "off" to render every call in-process and never start a server.
	EnvMode = "KROPIPE_RENDER_SERVER"
)

// GCPercent is the render server's garbage collector setting (GOGC) unless its environment sets
// one: it lives long, so it collects, but at 400 % heap growth, since its first answer is a cold
// compile the caller waits for and its memory limit, not heap growth, is what bounds it. The
// client that starts a server puts it in the server's environment, so package init runs with it
// too.
const GCPercent = 400

// SteadyGCPercent is the render server's GOGC after its first answer, when cmp-sidecar chose
// GCPercent: renders allocate little and keep less (a compiled RGD retains ~2 MiB), so heap
// growth of 400 % only fattened the sidecar's memory (BenchmarkRefresh100Apps).
const SteadyGCPercent = 100

const (
	socketName = "render.sock"
	lockName   = "serve.lock"
)

// Dir returns the socket directory the environment names (EnvDir), else a private directory of
// the current user under the system temporary folder — the sidecar's own emptyDir /tmp, which
// the repo-server container cannot see — named for the cmp-server's working root and the
// renderer binary (path, size, modification time). So a server only ever answers the
// cmp-server it was started for, with the code the caller would run in-process: a replaced
// binary gets a new server, and two Argo CD stacks on one machine never share one.
func Dir(getenv func(string) string, renderer string) string {
	if d := getenv(EnvDir); d != "" {
		return d
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", getenv("ARGOCD_CMP_WORKDIR"), renderer)
	if info, err := os.Stat(renderer); err == nil {
		fmt.Fprintf(h, "\x00%d\x00%d", info.Size(), info.ModTime().UnixNano())
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("kropipe-render-%d-%x", os.Getuid(), h.Sum(nil)[:6]))
}

// SocketPath is the socket inside dir.
func SocketPath(dir string) string { return filepath.Join(dir, socketName) }

// ErrNotPrivate is returned when the socket directory could be reached or changed by another user.
var ErrNotPrivate = errors.New("is not a private directory of this user")

// privateDir makes dir (mode 0700) or checks that an existing one is a real directory, owned by
// this user and closed to everyone else. A directory someone else prepared could hold their
// socket, which would receive the repositories' files.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("render server directory %s: %w", dir, err)
	}
	return checkPrivate(dir)
}

func checkPrivate(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("render server directory %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("render server directory %s %w: it is not a directory (a symlink?)", dir, ErrNotPrivate)
	case int(st.Uid) != os.Getuid():
		return fmt.Errorf("render server directory %s %w: it belongs to uid %d", dir, ErrNotPrivate, st.Uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("render server directory %s %w: mode %#o lets others in; it must be 0700", dir, ErrNotPrivate, st.Mode&0o777)
	}
	return nil
}

// peerUID is the user id of the process at the other end of a Unix socket connection, as the
// kernel recorded it at connect (SO_PEERCRED): it cannot be forged by the peer.
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}
