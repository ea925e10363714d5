package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/render/server"
)

// bin holds cmp-sidecar and cmp-sidecar-renderer built from this tree, side by side as in the
// image.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cmp-sidecar-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "../cmp-sidecar-renderer")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cmp-sidecar and cmp-sidecar-renderer:", err)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// statSources stats every Go file the renderer is built from: go test caches a result by the
// files the tests touch (logged once m.Run has begun), and TestMain's build reads them in
// another process.
var statSources = sync.OnceFunc(func() {
	for _, root := range []string{"../cmp-sidecar-renderer", "../../internal", "../../go.mod", "../../go.sum"} {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				_, _ = os.Stat(p)
			}
			return nil
		})
	}
})

type result struct {
	stdout, stderr string
	code           int
}

// run executes a binary of bin in dir with exactly the environment env (plus PATH).
func run(t *testing.T, dir string, env []string, name string, args ...string) result {
	t.Helper()
	statSources()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// app is an application folder of the test repository with what Argo CD would send.
type app struct{ path, namespace string }

func (a app) env(extra ...string) []string {
	return append([]string{"ARGOCD_APP_NAME=" + strings.ReplaceAll(a.path, "/", "-"), "ARGOCD_APP_NAMESPACE=" + a.namespace,
		"ARGOCD_APP_SOURCE_PATH=" + a.path, "ARGOCD_APP_REVISION=0123abc"}, extra...)
}

// testRepo copies the example GitOps repository and adds applications that fail or warn, so
// every stream and exit code is compared.
func testRepo(t *testing.T) (root string, apps []app) {
	t.Helper()
	root = t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../../examples/gitops")); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{
		"develop/broken/instance.yaml":  "apiVersion: kro.run/v1alpha1\nkind: WebApp\nmetadata:\n  name: broken\nspec:\n  image: nginx\n  typo: 1\n",
		"develop/unknown/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Nothing\nmetadata:\n  name: n\n",
		"develop/empty/instance.yaml":   "# nothing yet\n",
	}
	for p, c := range extra {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"develop/frontend", "develop/backend", "staging/frontend", "staging/backend", "develop/broken", "develop/unknown", "develop/empty"} {
		ns, _, _ := strings.Cut(p, "/")
		apps = append(apps, app{p, ns})
	}
	return root, apps
}

// runServer runs `cmp-sidecar-renderer serve` on dir for the test and waits until it answers.
func runServer(t *testing.T, dir, root string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "cmp-sidecar-renderer"), "serve", "--dir", dir, "--root", root)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitForServer(t, dir)
}

// waitForServer polls the socket until a server accepts (it answers an empty request by
// hanging up), failing after 20 s.
func waitForServer(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", server.SocketPath(dir))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no render server listens in %s: %v", dir, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a socket another process creates
	}
}

// TestGenerate_ServerAndInProcessGiveTheSameBytes runs every application through the warm
// server (the renderer made unreachable, so only the server can answer) and in-process
// (KROPIPE_RENDER_SERVER=off): stdout, stderr and exit code must be identical, cold and warm.
func TestGenerate_ServerAndInProcessGiveTheSameBytes(t *testing.T) {
	root, apps := testRepo(t)
	sock := filepath.Join(t.TempDir(), "render")
	runServer(t, sock, root)
	for _, a := range apps {
		t.Run(a.path, func(t *testing.T) {
			dir := filepath.Join(root, a.path)
			want := run(t, dir, a.env(server.EnvMode+"=off"), "cmp-sidecar", "generate")
			for _, pass := range []string{"first call", "warm"} {
				got := run(t, dir, a.env(server.EnvDir+"="+sock, "KROPIPE_RENDERER=/nonexistent"), "cmp-sidecar", "generate")
				if got != want {
					t.Errorf("%s through the server:\n got %+v\nwant %+v", pass, got, want)
				}
			}
			if want.code == 0 && !strings.Contains(want.stdout, "kind:") && a.path != "develop/empty" {
				t.Errorf("in-process render printed no object: %+v", want)
			}
		})
	}
}

// TestGenerate_FallsBackWhenTheServerCannotAnswer: whatever is wrong with the server, generate
// renders in-process with the same bytes, and starts a server when none listens.
func TestGenerate_FallsBackWhenTheServerCannotAnswer(t *testing.T) {
	root, _ := testRepo(t)
	a := app{"develop/frontend", "develop"}
	dir := filepath.Join(root, a.path)
	want := run(t, dir, a.env(server.EnvMode+"=off"), "cmp-sidecar", "generate")
	if want.code != 0 {
		t.Fatalf("in-process render failed: %+v", want)
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, sock string)
		starts  bool   // a server is started for the next calls
		workdir string // the started server's root (default: the repository's parent)
	}{
		{"no server yet", func(*testing.T, string) {}, true, ""},
		{"started server does not serve the folder", func(*testing.T, string) {}, false, "elsewhere"},
		{"stale socket of a dead server", func(t *testing.T, sock string) {
			mkdir(t, sock, 0o700)
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: server.SocketPath(sock), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}, true, ""},
		{"server killed mid-answer", func(t *testing.T, sock string) {
			mkdir(t, sock, 0o700)
			ln, err := net.Listen("unix", server.SocketPath(sock))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					io.ReadFull(c, make([]byte, 4))
					c.Write([]byte("KROPIPE-RENDER/1\n\x00\x00")) // then dies
					c.Close()
				}
			}()
		}, false, ""},
		{"directory others can reach", func(t *testing.T, sock string) { mkdir(t, sock, 0o755) }, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "render")
			tt.prepare(t, sock)
			workdir := root
			if tt.workdir != "" {
				workdir = t.TempDir()
			}
			env := a.env(server.EnvDir+"="+sock, "ARGOCD_CMP_WORKDIR="+workdir)
			if got := run(t, dir, env, "cmp-sidecar", "generate"); got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			if !tt.starts {
				return
			}
			waitForServer(t, sock)
			got := run(t, dir, a.env(server.EnvDir+"="+sock, "KROPIPE_RENDERER=/nonexistent"), "cmp-sidecar", "generate")
			if got != want {
				t.Errorf("from the started server: got %+v\nwant %+v", got, want)
			}
			// The started server exits once its directory is gone (t.TempDir's cleanup).
		})
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// TestServe_TwoServersStartedTogetherLeaveOne: the second exits successfully at once; the
// first keeps serving.
func TestServe_TwoServersStartedTogetherLeaveOne(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "render")
	root := t.TempDir()
	var cmds []*exec.Cmd
	exited := make(chan error, 2)
	for range 2 {
		cmd := exec.Command(filepath.Join(bin, "cmp-sidecar-renderer"), "serve", "--dir", sock, "--root", root)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		go func() { exited <- cmd.Wait() }()
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
		}
	})
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the server that gave way exited with %v, want success", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("neither server gave way to the other")
	}
	waitForServer(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := server.Call(ctx, sock, server.Request{Dir: root}); err != nil {
		t.Errorf("the remaining server does not answer: %v", err)
	}
}

// TestClient_LinksNoKroNorKubernetes keeps cmp-sidecar's start-up small: every linked package's
// init runs before main.
func TestClient_LinksNoKroNorKubernetes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/kubernetes-sigs/kro", "github.com/google/cel-go", "github.com/kropipe/kropipe/internal/render\n"} {
			if strings.HasPrefix(pkg+"\n", banned) {
				t.Errorf("cmp-sidecar links %s", pkg)
			}
		}
	}
}

// TestRenderer_GCSettingsFromProcessStart: a renderer exec'd for one command starts with the
// collector off and a memory limit, and a render server started by generate with GOGC 400,
// package init included (so they are in the environment, not set by main), told to collect at
// server.SteadyGCPercent after its first answer; GOGC or GOMEMLIMIT set by the user win.
func TestRenderer_GCSettingsFromProcessStart(t *testing.T) {
	// A stand-in renderer that reports what the real one would run with: a server writes it to
	// $FAKE_SERVE_OUT and exits without listening, so generate then renders "in-process".
	fake := filepath.Join(t.TempDir(), "renderer")
	script := "#!/bin/sh\nsteady=\nfor a in \"$@\"; do case $a in --steady-gogc=*) steady=${a#--steady-gogc=};; esac; done\n" +
		"line=\"$1 GOGC=$GOGC GOMEMLIMIT=$GOMEMLIMIT steady=$steady\"\n" +
		"if [ \"$1\" = serve ]; then echo \"$line\" > \"$FAKE_SERVE_OUT\"; else echo \"$line\"; fi\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args      []string
		env       []string
		want      string
		wantServe string // "": no server started
	}{
		{[]string{"generate"}, []string{server.EnvMode + "=off"}, "generate GOGC=off GOMEMLIMIT=128MiB steady=", ""},
		{[]string{"render", "x"}, nil, "render GOGC=off GOMEMLIMIT=128MiB steady=", ""},
		{[]string{"serve"}, nil, "", "serve GOGC= GOMEMLIMIT= steady="}, // run directly: its own settings
		{[]string{"generate"}, nil, "generate GOGC=off GOMEMLIMIT=128MiB steady=", "serve GOGC=400 GOMEMLIMIT= steady=100"},
		{[]string{"generate"}, []string{"GOGC=200"}, "generate GOGC=200 GOMEMLIMIT=128MiB steady=", "serve GOGC=200 GOMEMLIMIT= steady="},
		{[]string{"generate"}, []string{server.EnvMode + "=off", "GOMEMLIMIT=1GiB"}, "generate GOGC=off GOMEMLIMIT=1GiB steady=", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append(tt.args, tt.env...), " "), func(t *testing.T) {
			tmp := t.TempDir()
			serveOut := filepath.Join(tmp, "serve")
			env := append([]string{"KROPIPE_RENDERER=" + fake, "FAKE_SERVE_OUT=" + serveOut,
				server.EnvDir + "=" + filepath.Join(tmp, "render")}, tt.env...)
			got := run(t, tmp, env, "cmp-sidecar", tt.args...)
			if strings.TrimSpace(got.stdout) != tt.want || got.code != 0 {
				t.Errorf("renderer saw %+v, want %q", got, tt.want)
			}
			served, _ := os.ReadFile(serveOut)
			if strings.TrimSpace(string(served)) != tt.wantServe {
				t.Errorf("server saw %q, want %q", served, tt.wantServe)
			}
		})
	}
}
