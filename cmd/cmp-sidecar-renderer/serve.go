package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kropipe/kropipe/internal/render"
	"github.com/kropipe/kropipe/internal/render/server"
)

// serverMemoryLimit keeps the render server's heap, cache included, well inside the sidecar's
// memory limit, which argocd-cmp-server and the extracted repositories in /tmp share; GOMEMLIMIT
// in the environment wins. Unlike a one-shot command the server collects garbage: at
// server.GCPercent until its first answer (a cold compile the caller waits for), then at
// --steady-gogc, which cmp-sidecar passes when GOGC was its choice and not the user's.
const serverMemoryLimit = 128 << 20

func newServeCommand(stderr io.Writer, getenv func(string) string) *cobra.Command {
	var (
		dir, root  string
		idle       time.Duration
		cacheBytes int64
		inFlight   int
		readyFD    int
		steadyGOGC int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the render server that `cmp-sidecar generate` asks first",
		Long: "Listen on a Unix socket in a private directory (mode 0700, this user only) and render\n" +
			"`generate` requests with compiled RGDs kept warm, by a content hash of their inputs.\n" +
			"cmp-sidecar generate starts it on first use; when another server holds the directory\n" +
			"this one exits at once, successfully.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if getenv("GOGC") == "" {
				debug.SetGCPercent(server.GCPercent)
			}
			if getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(serverMemoryLimit)
			}
			var ready *os.File
			if readyFD > 0 {
				ready = os.NewFile(uintptr(readyFD), "ready")
				defer ready.Close() // unwritten: the starter stops waiting
			}
			srv, err := server.Listen(dir, server.WithRoot(root), server.WithIdleExit(idle), server.WithMaxInFlight(inFlight))
			if errors.Is(err, server.ErrRunning) {
				return nil
			}
			if err != nil {
				return err
			}
			if ready != nil {
				fmt.Fprintln(ready, "listening")
				ready.Close()
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cache := render.NewDefinitionCache(cacheBytes)
			var steady sync.Once
			return srv.Serve(ctx, func(ctx context.Context, req server.Request) server.Answer {
				defer steady.Do(func() {
					if steadyGOGC > 0 {
						debug.SetGCPercent(steadyGOGC)
					}
				})
				return answer(ctx, req, cache)
			})
		},
	}
	workRoot := getenv("ARGOCD_CMP_WORKDIR") // where argocd-cmp-server extracts repositories
	if workRoot == "" {
		workRoot = os.TempDir()
	}
	f := cmd.Flags()
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		self = "cmp-sidecar-renderer"
	}
	f.StringVar(&dir, "dir", server.Dir(getenv, self), "private directory of the socket (env "+server.EnvDir+"; default: named for ARGOCD_CMP_WORKDIR and this binary, as cmp-sidecar names it)")
	f.StringVar(&root, "root", workRoot, "only working directories inside it are rendered (argocd-cmp-server's ARGOCD_CMP_WORKDIR, else the temporary folder)")
	f.DurationVar(&idle, "idle-exit", 30*time.Minute, "exit after this long without a request (0: never)")
	f.IntVar(&steadyGOGC, "steady-gogc", 0, "GOGC from the first answer on (0: keep the start's); cmp-sidecar passes "+
		strconv.Itoa(server.SteadyGCPercent)+" when GOGC is unset")
	f.Int64Var(&cacheBytes, "cache-bytes", render.DefaultCacheBytes, "budget of compiled RGDs kept, charged by the bytes their compilation allocated")
	f.IntVar(&inFlight, "max-in-flight", 4, "requests rendered at once; others wait")
	f.IntVar(&readyFD, "ready-fd", 0, "file descriptor to write a line to once listening (set by cmp-sidecar generate when it starts the server)")
	return cmd
}

// answer runs generate for one request exactly as the command would in the request's folder,
// with its environment and the shared cache of compiled RGDs, and returns what the process
// would have printed. A panic gives no answer: the client renders in-process.
func answer(ctx context.Context, req server.Request, cache *render.DefinitionCache) (a server.Answer) {
	env := map[string]string{}
	for _, kv := range req.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	getenv := func(k string) string { return env[k] }
	var stdout, stderr bytes.Buffer
	if err := generate(ctx, req.Dir, getenv, &stdout, &stderr, render.WithDefinitionCache(cache)); err != nil {
		stdout.Reset()
		fmt.Fprintf(&stderr, "cmp-sidecar: %v\n", err)
		return server.Answer{Code: 1, Stdout: nil, Stderr: stderr.Bytes()}
	}
	return server.Answer{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
}
