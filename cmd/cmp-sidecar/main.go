// Command cmp-sidecar is kropipe's Argo CD Config Management Plugin (plugin.yaml runs
// `cmp-sidecar generate`). It is a small front: generate asks the warm render server of the
// sidecar for the answer, and everything else — and generate whenever the server cannot answer —
// runs cmp-sidecar-renderer, the binary that links kro, in this process's place.
//
// It links no kro or Kubernetes package on purpose: Go runs every linked package's init before
// main, and those cost more than a warm render.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kropipe/kropipe/internal/render/server"
)

const (
	rendererName = "cmp-sidecar-renderer"
	// envRenderer names the renderer binary explicitly (default: next to cmp-sidecar, else PATH).
	envRenderer = "KROPIPE_RENDERER"
	// answerTimeout is how long generate waits for the server before rendering itself: far above
	// a cold compile on a loaded node, far below Argo CD's plugin timeout.
	answerTimeout = 30 * time.Second
	// startTimeout bounds the wait for a server this call started to listen.
	startTimeout = 5 * time.Second
)

// oneShotGC is the garbage collector setting of a renderer that runs one command and exits:
// no collection until the heap nears the limit. A render of one app allocates ~25 MB, init
// included, all of it freed by exit; collecting it cost a fifth of the process's CPU, most of it
// scanning the large binary's globals during package init — which is why it is set here, in the
// environment, and not by the renderer's main, which runs after init. cmp-sidecar-renderer's
// main applies the same values when it is run directly; the render server keeps its own.
var oneShotGC = map[string]string{"GOGC": "off", "GOMEMLIMIT": "128MiB"}

func main() {
	args := os.Args[1:]
	renderer, err := findRenderer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cmp-sidecar: %v\n", err)
		os.Exit(1)
	}
	if len(args) == 1 && args[0] == "generate" && os.Getenv(server.EnvMode) != "off" {
		if a, ok := askServer(renderer); ok {
			os.Stdout.Write(a.Stdout)
			os.Stderr.Write(a.Stderr)
			os.Exit(a.Code)
		}
	}
	// Exec, not a child: the renderer's streams, exit code and signals are this process's own,
	// exactly as when cmp-sidecar was a single binary.
	env := os.Environ()
	if len(args) == 0 || args[0] != "serve" { // the server is long-lived and keeps its own
		for name, value := range oneShotGC {
			if os.Getenv(name) == "" {
				env = append(env, name+"="+value)
			}
		}
	}
	err = syscall.Exec(renderer, append([]string{renderer}, args...), env)
	fmt.Fprintf(os.Stderr, "cmp-sidecar: run %s: %v\n", renderer, err)
	os.Exit(1)
}

// askServer sends the application folder and Argo CD's environment to the render server. It
// reports false whenever the answer is not a whole one, so the caller renders in-process; when
// no server listens, it starts one for the next calls.
func askServer(renderer string) (server.Answer, bool) {
	wd, err := os.Getwd()
	if err != nil {
		return server.Answer{}, false
	}
	dir := server.Dir(os.Getenv, renderer)
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	req := server.Request{Dir: wd, Env: server.ForwardedEnv(os.Environ())}
	a, err := server.Call(ctx, dir, req)
	if errors.Is(err, server.ErrNoServer) && startServer(renderer, dir) {
		// Asking the new server costs what rendering here would, once: rendering here as well
		// would run two cold renders at once, and a hundred apps refreshed together after the
		// sidecar started would each render in-process at the same time.
		a, err = server.Call(ctx, dir, req)
	}
	return a, err == nil
}

// startServer starts `cmp-sidecar-renderer serve` in its own session, detached from this call's
// streams and process group, so argocd-cmp-server neither waits for it nor kills it with this
// call, and waits (at most startTimeout) until it listens. Of several started at once one keeps
// the socket and the others exit (serve.go's lock); their callers then ask the one that stayed.
// It reports whether a server may now listen.
func startServer(renderer, dir string) bool {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return false
	}
	defer null.Close()
	ready, readyW, err := os.Pipe()
	if err != nil {
		return false
	}
	defer ready.Close()
	env := os.Environ()
	args := []string{renderer, "serve", "--dir=" + dir, "--ready-fd=3"}
	if os.Getenv("GOGC") == "" {
		env = append(env, fmt.Sprintf("GOGC=%d", server.GCPercent)) // from init on; see GCPercent
		args = append(args, fmt.Sprintf("--steady-gogc=%d", server.SteadyGCPercent))
	}
	p, err := os.StartProcess(renderer, args, &os.ProcAttr{
		Dir:   string(filepath.Separator),
		Env:   env,
		Files: []*os.File{null, null, null, readyW},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	readyW.Close()
	if err != nil {
		return false
	}
	_ = p.Release()
	// The server writes a line once it listens; it closes the pipe without one when another
	// server holds the directory, or when it fails.
	_ = ready.SetReadDeadline(time.Now().Add(startTimeout))
	var b [1]byte
	n, err := ready.Read(b[:])
	return n == 1 || errors.Is(err, io.EOF)
}

// findRenderer looks for cmp-sidecar-renderer where the image installs it: next to this binary
// (symlinks followed), else on PATH.
func findRenderer() (string, error) {
	if p := os.Getenv(envRenderer); p != "" {
		return p, nil // tests point it at nothing to prove the server answered
	}
	var next string
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		next = filepath.Join(filepath.Dir(self), rendererName)
		if info, err := os.Stat(next); err == nil && !info.IsDir() {
			return next, nil
		}
	}
	if p, err := exec.LookPath(rendererName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s is not installed next to cmp-sidecar (%s) nor on PATH: "+
		"install both binaries of the image (go build ./cmd/cmp-sidecar ./cmd/cmp-sidecar-renderer)", rendererName, next)
}
