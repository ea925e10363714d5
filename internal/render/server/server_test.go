package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func echo(_ context.Context, req Request) Answer {
	return Answer{Code: 3, Stdout: []byte(req.Dir), Stderr: []byte(req.Env[0])}
}

// serve runs a server on a new private directory until the test ends.
func serve(t *testing.T, opts ...Option) (dir string, s *Server) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "sock")
	s, err := Listen(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, echo) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return dir, s
}

func call(dir, wd string) (Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Call(ctx, dir, Request{Dir: wd, Env: []string{"ARGOCD_APP_NAME=a"}})
}

func TestCall_AnswerIsWhole(t *testing.T) {
	dir, _ := serve(t)
	wd := t.TempDir()
	a, err := call(dir, wd)
	if err != nil {
		t.Fatal(err)
	}
	if a.Code != 3 || string(a.Stdout) != wd || string(a.Stderr) != "ARGOCD_APP_NAME=a" {
		t.Errorf("answer = %d %q %q", a.Code, a.Stdout, a.Stderr)
	}
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v (%v), want 0700", info.Mode().Perm(), err)
	}
}

// TestServe_RefusesWithoutAnswer: a peer of another user (SO_PEERCRED) and a working directory
// outside the root get no answer; the client reports it as incomplete and renders itself.
func TestServe_RefusesWithoutAnswer(t *testing.T) {
	t.Run("peer of another user", func(t *testing.T) {
		dir, _ := serve(t, func(s *Server) error { s.uid = os.Getuid() + 1; return nil })
		if _, err := call(dir, t.TempDir()); !errors.Is(err, ErrIncomplete) {
			t.Errorf("err = %v, want ErrIncomplete", err)
		}
	})
	t.Run("working directory outside the root", func(t *testing.T) {
		root := t.TempDir()
		dir, _ := serve(t, WithRoot(root))
		if _, err := call(dir, filepath.Join(root)); err != nil {
			t.Fatalf("inside the root: %v", err)
		}
		outside := t.TempDir()
		if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
		for _, wd := range []string{outside, filepath.Join(root, "link"), "relative"} {
			if _, err := call(dir, wd); !errors.Is(err, ErrIncomplete) {
				t.Errorf("%s: err = %v, want ErrIncomplete", wd, err)
			}
		}
	})
}

func TestListen_OneServerPerDirectoryAndStaleSocket(t *testing.T) {
	dir, _ := serve(t)
	if _, err := Listen(dir); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Listen: err = %v, want ErrRunning", err)
	}

	// A socket file whose server died: nobody listens, the lock is free.
	stale := filepath.Join(t.TempDir(), "stale")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(stale), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := call(stale, t.TempDir()); !errors.Is(err, ErrNoServer) {
		t.Fatalf("stale socket: err = %v, want ErrNoServer", err)
	}
	s, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	go s.Serve(context.Background(), echo)
	if _, err := call(stale, t.TempDir()); err != nil {
		t.Errorf("after replacing the stale socket: %v", err)
	}
	// Removing the directory (the cmp-server's temporary folder cleaned up) stops the server.
	os.RemoveAll(stale)
}

func TestCall_RefusesDirectoryOthersCanReach(t *testing.T) {
	for name, prepare := range map[string]func(string) error{
		"group and world open": func(d string) error { return os.Mkdir(d, 0o755) },
		"symlink":              func(d string) error { return os.Symlink(os.TempDir(), d) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sock")
			if err := prepare(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := call(dir, t.TempDir()); !errors.Is(err, ErrNotPrivate) {
				t.Errorf("Call: err = %v, want ErrNotPrivate", err)
			}
			if _, err := Listen(dir); !errors.Is(err, ErrNotPrivate) {
				t.Errorf("Listen: err = %v, want ErrNotPrivate", err)
			}
		})
	}
}

func TestReadAnswer_CutShortIsIncomplete(t *testing.T) {
	var whole bytes.Buffer
	if err := writeAnswer(&whole, Answer{Stdout: []byte("---\nkind: A\n"), Stderr: []byte("warning\n")}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 5, len(magic) + 10, whole.Len() - 1} {
		if _, err := readAnswer(bytes.NewReader(whole.Bytes()[:n])); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%d of %d bytes: err = %v, want ErrIncomplete", n, whole.Len(), err)
		}
	}
	a, err := readAnswer(bytes.NewReader(whole.Bytes()))
	if err != nil || string(a.Stdout) != "---\nkind: A\n" || string(a.Stderr) != "warning\n" {
		t.Errorf("whole answer: %+v, %v", a, err)
	}
}

func TestForwardedEnv_OnlyWhatGenerateReads(t *testing.T) {
	got := ForwardedEnv([]string{"ARGOCD_APP_NAME=a", "HOME=/root", "ARGOCD_ENV_RGD_PATHS=rgds", "PARAM_SYNC_WAVES=false",
		"KUBE_VERSION=1.34", "KUBE_API_VERSIONS=v1", "KROPIPE_RENDER_DIR=/x", "PATH=/bin"})
	want := "ARGOCD_APP_NAME=a ARGOCD_ENV_RGD_PATHS=rgds PARAM_SYNC_WAVES=false KUBE_VERSION=1.34 KUBE_API_VERSIONS=v1"
	if s := joinSpace(got); s != want {
		t.Errorf("ForwardedEnv = %s, want %s", s, want)
	}
}

func joinSpace(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(v)
	}
	return b.String()
}

// TestDir_OnePerCmpServerAndRendererBinary: two cmp-servers (working roots) or two renderer
// binaries never share a server; the same pair always finds its own.
func TestDir_OnePerCmpServerAndRendererBinary(t *testing.T) {
	bin := t.TempDir()
	renderer := filepath.Join(bin, "cmp-sidecar-renderer")
	if err := os.WriteFile(renderer, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	a := Dir(env("ARGOCD_CMP_WORKDIR", "/work/a"), renderer)
	if again := Dir(env("ARGOCD_CMP_WORKDIR", "/work/a"), renderer); again != a {
		t.Errorf("same inputs: %s then %s", a, again)
	}
	if b := Dir(env("ARGOCD_CMP_WORKDIR", "/work/b"), renderer); b == a {
		t.Error("another cmp-server working root shares the directory")
	}
	if err := os.WriteFile(renderer, []byte("version 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if c := Dir(env("ARGOCD_CMP_WORKDIR", "/work/a"), renderer); c == a {
		t.Error("a replaced renderer binary shares the directory")
	}
	if d := Dir(env(EnvDir, "/run/x"), renderer); d != "/run/x" {
		t.Errorf("%s set: Dir = %s", EnvDir, d)
	}
}

// TestServe_StopsWhenItsSocketOrRootGoes: a server started by generate must not outlive the
// cmp-server's folders (removed with a pod's emptyDir, or by a test's cleanup).
func TestServe_StopsWhenItsSocketOrRootGoes(t *testing.T) {
	for name, remove := range map[string]func(dir, root string) error{
		"socket directory removed": func(dir, _ string) error { return os.RemoveAll(dir) },
		"root removed":             func(_, root string) error { return os.RemoveAll(root) },
	} {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "sock")
			s, err := Listen(dir, WithRoot(root), func(s *Server) error { s.watchEvery = 10 * time.Millisecond; return nil })
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error)
			go func() { done <- s.Serve(context.Background(), echo) }()
			if _, err := call(dir, root); err != nil {
				t.Fatal(err)
			}
			if err := remove(dir, root); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server still runs")
			}
		})
	}
}
