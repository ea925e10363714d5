package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// GitServer serves the bare repositories under Root over smart HTTP through Debian git's own
// git http-backend, the same protocol Argo CD's repo-server speaks to a real Git host.
type GitServer struct {
	Root string // folder of bare repositories, <name>.git
	URL  string // http://127.0.0.1:<port>

	srv *http.Server
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
	g := &GitServer{Root: root, URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
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

// Checkout is a working clone of a served repository.
type Checkout struct {
	Dir string
}

// Clone clones repository name into dir over HTTP.
func (g *GitServer) Clone(ctx context.Context, name, dir string) (*Checkout, error) {
	if _, err := runGit(ctx, "", "clone", "--quiet", g.RepoURL(name), dir); err != nil {
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

// runGit runs git with a fixed identity and without the user's or the system's configuration,
// so the harness behaves the same on every machine.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	full := append([]string{"-c", "user.name=kropipe-e2e", "-c", "user.email=e2e@kropipe.invalid", "-c", "commit.gpgsign=false"}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
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
