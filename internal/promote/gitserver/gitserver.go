// Package gitserver serves bare Git repositories over smart HTTP on 127.0.0.1 by running
// Debian's `git http-backend` behind net/http/cgi. Tests use it as a real remote and the
// promoter's demo uses it as its GitOps repository; it needs nothing but the git binary.
package gitserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Request is one HTTP request the server answered, kept so tests can count pushes.
type Request struct {
	Method  string
	Repo    string // "gitops.git"
	Service string // "git-receive-pack" for a push, "git-upload-pack" for a fetch
	Status  int
}

// IsPush reports whether the request carried pack data to the server.
func (r Request) IsPush() bool { return r.Method == http.MethodPost && r.Service == "git-receive-pack" }

// Option configures a Server.
type Option func(*Server)

// WithBasicAuth requires HTTP basic auth with exactly these credentials.
func WithBasicAuth(user, password string) Option {
	return func(s *Server) { s.user, s.password = user, password }
}

// WithRequestHook calls fn before each request is handed to git http-backend. Tests use
// it to move a branch at an exact moment (for example just before a push is processed).
func WithRequestHook(fn func(*http.Request)) Option {
	return func(s *Server) { s.hook = fn }
}

// Server is a running smart-HTTP Git server.
type Server struct {
	root     string
	backend  string
	user     string
	password string
	hook     func(*http.Request)
	useTLS   bool
	caPEM    []byte

	ln   net.Listener
	srv  *http.Server
	done chan struct{}

	mu   sync.Mutex
	reqs []Request
}

// Start serves the bare repositories under root on a free port of 127.0.0.1 until ctx
// is done or Close is called.
func Start(ctx context.Context, root string, opts ...Option) (*Server, error) {
	out, err := exec.CommandContext(ctx, "git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("gitserver: the git binary is needed (git --exec-path: %w)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("gitserver: git http-backend not found: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("gitserver: %w", err)
	}
	s := &Server{root: root, backend: backend, done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gitserver: %w", err)
	}
	// Handshake failures are what TLS tests provoke; they are not worth a log line.
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	if s.useTLS {
		cert, caPEM, err := selfSigned()
		if err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("gitserver: %w", err)
		}
		s.caPEM = caPEM
		s.ln = tls.NewListener(s.ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	go func() { _ = s.srv.Serve(s.ln) }()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// TB is the part of testing.TB that StartTB needs; it keeps "testing" out of this
// package so non-test code can import it.
type TB interface {
	Helper()
	TempDir() string
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// StartTB starts a server in a temporary directory that is closed when the test ends.
func StartTB(tb TB, opts ...Option) *Server {
	tb.Helper()
	s, err := Start(context.Background(), tb.TempDir(), opts...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Close stops the server.
func (s *Server) Close() error {
	select {
	case <-s.done:
		return nil
	default:
		close(s.done)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// URL returns the clone URL of repo ("gitops.git").
func (s *Server) URL(repo string) string {
	scheme := "http://"
	if s.useTLS {
		scheme = "https://"
	}
	return scheme + s.ln.Addr().String() + "/" + strings.TrimPrefix(repo, "/")
}

// Dir returns the directory of the bare repository repo.
func (s *Server) Dir(repo string) string { return filepath.Join(s.root, filepath.FromSlash(repo)) }

// Requests returns a copy of the requests answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Pushes counts the pack uploads (git push requests) to repo, including those a hook
// then declined: the pack was sent either way.
func (s *Server) Pushes(repo string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.IsPush() && r.Repo == repo {
			n++
		}
	}
	return n
}

// NewBareRepo creates the bare repository name (e.g. "gitops.git") with branch main,
// pushes over HTTP enabled, and — when seedDir is not empty — one commit holding the
// files of seedDir. It returns the repository's directory.
func (s *Server) NewBareRepo(ctx context.Context, name, seedDir string) (string, error) {
	dir := s.Dir(name)
	if err := Git(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
		return "", err
	}
	if err := Git(ctx, dir, "config", "http.receivepack", "true"); err != nil {
		return "", err
	}
	if seedDir == "" {
		return dir, nil
	}
	return dir, SeedCommit(ctx, dir, "main", seedDir, "Seed repository")
}

// SeedCommit commits the files of dir on top of branch in the bare repository gitDir
// without a working tree (a temporary index is used).
func SeedCommit(ctx context.Context, gitDir, branch, dir, message string) error {
	idx, err := os.CreateTemp("", "gitserver-index-*")
	if err != nil {
		return err
	}
	idx.Close()
	os.Remove(idx.Name())
	defer os.Remove(idx.Name())
	env := []string{"GIT_INDEX_FILE=" + idx.Name(), "GIT_DIR=" + gitDir, "GIT_WORK_TREE=" + dir}
	if err := gitEnv(ctx, "", env, nil, "add", "--all", "."); err != nil {
		return err
	}
	var tree bytes.Buffer
	if err := gitEnv(ctx, "", env, &tree, "write-tree"); err != nil {
		return err
	}
	args := []string{"commit-tree", strings.TrimSpace(tree.String()), "-m", message}
	var parent bytes.Buffer
	if gitEnv(ctx, "", env, &parent, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch) == nil {
		args = append(args, "-p", strings.TrimSpace(parent.String()))
	}
	var commit bytes.Buffer
	if err := gitEnv(ctx, "", env, &commit, args...); err != nil {
		return err
	}
	return gitEnv(ctx, "", env, nil, "update-ref", "refs/heads/"+branch, strings.TrimSpace(commit.String()))
}

// InstallHook writes an executable server-side hook (e.g. "pre-receive") into repo.
func (s *Server) InstallHook(repo, hook, script string) error {
	path := filepath.Join(s.Dir(repo), "hooks", hook)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(script), 0o755)
}

// RemoveHook deletes a hook installed with InstallHook.
func (s *Server) RemoveHook(repo, hook string) error {
	err := os.Remove(filepath.Join(s.Dir(repo), "hooks", hook))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Git runs the git CLI in dir with a fixed identity and no user or system config, so
// results do not depend on the machine.
func Git(ctx context.Context, dir string, args ...string) error {
	return gitEnv(ctx, dir, nil, nil, args...)
}

// GitOutput is Git returning standard output.
func GitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	var out bytes.Buffer
	err := gitEnv(ctx, dir, nil, &out, args...)
	return out.String(), err
}

// Env is the environment Git and GitOutput run with.
func Env() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=gitserver", "GIT_AUTHOR_EMAIL=gitserver@example.com",
		"GIT_COMMITTER_NAME=gitserver", "GIT_COMMITTER_EMAIL=gitserver@example.com")
}

func gitEnv(ctx context.Context, dir string, env []string, stdout *bytes.Buffer, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(Env(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// ServeHTTP checks auth, runs the hook and hands the request to git http-backend.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() { s.record(r, rec.status) }()
	if s.user != "" || s.password != "" {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(s.password)) != 1 {
			rec.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
			http.Error(rec, "authentication required", http.StatusUnauthorized)
			return
		}
	}
	if s.hook != nil {
		s.hook(r)
	}
	h := &cgi.Handler{
		Path: s.backend,
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			"HOME=" + s.root,
		},
		InheritEnv: []string{"PATH"},
	}
	if u, _, ok := r.BasicAuth(); ok {
		h.Env = append(h.Env, "REMOTE_USER="+u)
	}
	h.ServeHTTP(rec, r)
}

func (s *Server) record(r *http.Request, status int) {
	service := r.URL.Query().Get("service")
	repo := strings.TrimPrefix(r.URL.Path, "/")
	for _, suffix := range []string{"/info/refs", "/git-receive-pack", "/git-upload-pack"} {
		if strings.HasSuffix(repo, suffix) {
			repo = strings.TrimSuffix(repo, suffix)
			if service == "" && suffix != "/info/refs" {
				service = suffix[1:]
			}
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Method: r.Method, Repo: repo, Service: service, Status: status})
	s.mu.Unlock()
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
