package server

import (
	"context"
	"errors"
	"fmt"

	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning is returned by Listen when another server holds the directory's lock: two servers
// started together (two first generate calls) leave exactly one running.
var ErrRunning = errors.New("a render server is already running")

// Handler renders one request. It must not keep or share anything of the request.
type Handler func(ctx context.Context, req Request) Answer

// Server accepts requests on the socket of a private directory.
type Server struct {
	dir    string
	root   string
	ln     *net.UnixListener
	lock   *os.File
	socket os.FileInfo // the socket file this server made, to notice it being removed or replaced

	maxInFlight int
	idle        time.Duration
	uid         int           // the only user served: this process's own
	watchEvery  time.Duration // how often idleness, the socket and the root are checked
}

// Option configures Listen.
type Option func(*Server) error

// WithRoot confines requests to working directories inside root (after symlinks): the
// cmp-server's working root, where it extracts the repositories.
func WithRoot(root string) Option {
	return func(s *Server) error {
		real, err := filepath.EvalSymlinks(root)
		if err != nil {
			return fmt.Errorf("render server root %s: %w", root, err)
		}
		s.root = real
		return nil
	}
}

// WithIdleExit stops the server after d without a request (0: never), so a server spawned by a
// generate call does not outlive its use.
func WithIdleExit(d time.Duration) Option {
	return func(s *Server) error { s.idle = d; return nil }
}

// WithMaxInFlight bounds the requests rendered at once (default 4); others wait their turn, so
// a refresh of a hundred applications does not hold a hundred renders in memory.
func WithMaxInFlight(n int) Option {
	return func(s *Server) error {
		if n < 1 {
			return fmt.Errorf("render server: max in-flight %d must be at least 1", n)
		}
		s.maxInFlight = n
		return nil
	}
}

// Listen takes the directory's lock and listens on its socket. A socket file left by a dead
// server (its lock is free) is removed first.
func Listen(dir string, opts ...Option) (*Server, error) {
	s := &Server{dir: dir, root: string(filepath.Separator), maxInFlight: 4, uid: os.Getuid(), watchEvery: 5 * time.Second}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if err := privateDir(dir); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("render server lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("render server lock: %w", err)
	}
	sock := SocketPath(dir)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("stale render server socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		lock.Close()
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // a successor may already own the path when this one closes
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		lock.Close()
		return nil, err
	}
	info, err := os.Lstat(sock)
	if err != nil {
		ln.Close()
		lock.Close()
		return nil, err
	}
	s.ln, s.lock, s.socket = ln, lock, info
	return s, nil
}

// Serve answers requests until ctx ends, the server is idle for its idle time, its socket file
// is removed or replaced (its directory was cleaned up), or its root is removed. It closes the
// listener and lock.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.lock.Close()
	defer s.ln.Close()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lastUsed = time.Now()
		busy     int
	)
	slots := make(chan struct{}, s.maxInFlight)
	go func() {
		tick := time.NewTicker(s.watchEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				s.ln.Close()
				return
			case <-tick.C:
			}
			mu.Lock()
			idle := busy == 0 && s.idle > 0 && time.Since(lastUsed) > s.idle
			mu.Unlock()
			info, err := os.Lstat(SocketPath(s.dir))
			gone := err != nil || !os.SameFile(info, s.socket)
			if _, err := os.Stat(s.root); err != nil {
				gone = true // the cmp-server's working root was removed: nothing left to serve
			}
			if idle || gone {
				cancel()
			}
		}
	}()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		busy++
		lastUsed = time.Now()
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				busy--
				lastUsed = time.Now()
				mu.Unlock()
			}()
			defer c.Close()
			slots <- struct{}{}
			defer func() { <-slots }()
			s.answer(ctx, c, h)
		}()
	}
}

// answer serves one connection. A peer of another user, or a request it cannot use, gets no
// answer at all: the client then renders in-process, and learns nothing.
func (s *Server) answer(ctx context.Context, c *net.UnixConn, h Handler) {
	if uid, err := peerUID(c); err != nil || uid != s.uid {
		return
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return
	}
	req, err := readRequest(c)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if err := s.checkDir(req.Dir); err != nil {
		return
	}
	var a Answer
	func() {
		defer func() {
			if recover() != nil {
				err = errors.New("render panicked") // no answer: the client renders in-process
			}
		}()
		a = h(ctx, req)
	}()
	if err == nil {
		_ = writeAnswer(c, a)
	}
}

// checkDir refuses a working directory outside the root: the server reads only what the
// cmp-server extracted.
func (s *Server) checkDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("working directory %q is not absolute", dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(s.root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("working directory %s is outside the render server's root %s", dir, s.root)
	}
	return nil
}
