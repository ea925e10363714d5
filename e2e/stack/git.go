package stack

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// GitServer serves the bare repositories under Root over smart HTTP through Debian git's own
// git http-backend, the same protocol Argo CD's repo-server speaks to a real Git host.
type GitServer struct {
	Root string // folder of bare repositories, <name>.git
	URL  string // http://127.0.0.1:<port>

	srv *http.Server

	mu             sync.Mutex
	user, password string // required from every client once set (RequireBasicAuth)
}

// StartGitServer serves root on a free loopback port until Close.
func StartGitServer(root string) (*GitServer, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("git server: git --exec-path: %w (install Debian's git)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if !fileOK(backend) {
		return nil, fmt.Errorf("git server: %s missing (install Debian's git)", backend)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	g := &GitServer{Root: root, URL: "http://" + ln.Addr().String()}
	g.srv = &http.Server{Handler: g.authenticate(h), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

// RequireBasicAuth makes the server answer 401 to every request without these credentials, as
// a private Git host does: clients (Argo CD, the promoter) must then find them in Argo CD's
// repository Secrets. The harness's own clones send them.
func (g *GitServer) RequireBasicAuth(user, password string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.user, g.password = user, password
}

func (g *GitServer) credentials() (user, password string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.user, g.password
}

func (g *GitServer) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, password := g.credentials(); user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="kropipe-e2e"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// harnessURL is RepoURL with the credentials, if the server requires them.
func (g *GitServer) harnessURL(name string) string {
	user, password := g.credentials()
	if user == "" {
		return g.RepoURL(name)
	}
	u, _ := url.Parse(g.RepoURL(name))
	u.User = url.UserPassword(user, password)
	return u.String()
}

// Close stops serving.
func (g *GitServer) Close() error { return g.srv.Close() }

// RepoURL is the clone URL of repository name.
func (g *GitServer) RepoURL(name string) string { return g.URL + "/" + name + ".git" }

// CreateRepo makes an empty bare repository name (branch main) that accepts pushes over HTTP.
func (g *GitServer) CreateRepo(ctx context.Context, name string) error {
	dir := filepath.Join(g.Root, name+".git")
	if _, err := runGit(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
		return err
	}
	// Anonymous push is refused by default; this server only ever listens on loopback.
	_, err := runGit(ctx, dir, "config", "http.receivepack", "true")
	return err
}

// RefusePushes makes repository name decline every push, as a Git host does for a frozen or
// protected branch: its pre-receive hook prints message and fails, so a client sees what git
// reports for a declined push ("pre-receive hook declined", "remote: <message>"). Fetches
// and clones still work. AcceptPushes ends it.
func (g *GitServer) RefusePushes(name, message string) error {
	if strings.Contains(message, "\n") {
		return fmt.Errorf("git server: the refusal of %s must be one line, got %q", name, message)
	}
	hook := "#!/bin/sh\ncat >/dev/null\ncat >&2 <<'KROPIPE_E2E_EOF'\n" + message + "\nKROPIPE_E2E_EOF\nexit 1\n"
	path := g.preReceive(name)
	// Written beside the hook and renamed over it: git never runs a half-written script.
	if err := os.WriteFile(path+".new", []byte(hook), 0o755); err != nil {
		return fmt.Errorf("git server: refuse pushes to %s: %w", name, err)
	}
	return os.Rename(path+".new", path)
}

// AcceptPushes lets repository name accept pushes again after RefusePushes.
func (g *GitServer) AcceptPushes(name string) error {
	if err := os.Remove(g.preReceive(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("git server: accept pushes to %s: %w", name, err)
	}
	return nil
}

func (g *GitServer) preReceive(name string) string {
	return filepath.Join(g.Root, name+".git", "hooks", "pre-receive")
}

// Checkout is a working clone of a served repository.
type Checkout struct {
	Dir string
}

// Clone clones repository name into dir over HTTP.
func (g *GitServer) Clone(ctx context.Context, name, dir string) (*Checkout, error) {
	if _, err := runGit(ctx, "", "clone", "--quiet", g.harnessURL(name), dir); err != nil {
		return nil, err
	}
	// An empty repository clones without a branch; name it so the first push creates main.
	if _, err := runGit(ctx, dir, "checkout", "--quiet", "-B", "main"); err != nil {
		return nil, err
	}
	return &Checkout{Dir: dir}, nil
}

// CopyTree copies the files under src into rel inside the checkout.
func (c *Checkout) CopyTree(src, rel string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, path)
		dst := filepath.Join(c.Dir, rel, r)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

// WriteFile writes data to rel inside the checkout.
func (c *Checkout) WriteFile(rel string, data []byte) error {
	p := filepath.Join(c.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// ReadFile reads rel inside the checkout.
func (c *Checkout) ReadFile(rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.Dir, rel))
}

// CommitAndPush commits every change and pushes main, returning the new commit's SHA.
func (c *Checkout) CommitAndPush(ctx context.Context, msg string) (string, error) {
	if _, err := runGit(ctx, c.Dir, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := runGit(ctx, c.Dir, "commit", "--quiet", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	if _, err := runGit(ctx, c.Dir, "push", "--quiet", "origin", "HEAD:main"); err != nil {
		return "", err
	}
	sha, err := runGit(ctx, c.Dir, "rev-parse", "HEAD")
	return strings.TrimSpace(sha), err
}

// Git runs a git command in the checkout (the harness's identity, no user configuration) and
// returns its standard output.
func (c *Checkout) Git(ctx context.Context, args ...string) (string, error) {
	return runGit(ctx, c.Dir, args...)
}

// Pull makes the checkout's main what the server's main is now.
func (c *Checkout) Pull(ctx context.Context) error {
	if _, err := runGit(ctx, c.Dir, "fetch", "--quiet", "origin", "main"); err != nil {
		return err
	}
	_, err := runGit(ctx, c.Dir, "reset", "--quiet", "--hard", "origin/main")
	return err
}

// runGit runs git with a fixed identity and without the user's or the system's configuration,
// so the harness behaves the same on every machine.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	return runGitEnv(ctx, dir, nil, args...)
}

// runGitEnv is runGit with env added to git's environment: for what must stay out of command
// lines and errors (credentials).
func runGitEnv(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	full := append([]string{"-c", "user.name=kropipe-e2e", "-c", "user.email=e2e@kropipe.invalid", "-c", "commit.gpgsign=false"}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}
