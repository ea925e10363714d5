// Command cmp-sidecar-renderer is the rendering half of kropipe's Argo CD Config Management
// Plugin: it renders Kro instances into the Kubernetes objects they stand for, offline, inside
// the repo-server — once per call (`generate`, `render`) or as a long-lived render server
// (`serve`) that `cmp-sidecar generate` asks first. It links kro and Kubernetes; cmp-sidecar,
// the small front the plugin runs, does not.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
)

// oneShotMemoryLimit is where a one-shot command starts collecting garbage: it collects none
// below it (GC off), since a render is a short burst of allocation in a process that then
// exits. cmp-sidecar sets the same in the environment before it execs this binary
// (cmp-sidecar's oneShotGC), so that package init runs without collections too. The render
// server sets its own (serve.go). GOGC and GOMEMLIMIT in the environment win.
const oneShotMemoryLimit = 128 << 20

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(-1)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(oneShotMemoryLimit)
	}
	if err := newRootCommand(os.Stdout, os.Stderr, os.Getenv).Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "cmp-sidecar: %v\n", err)
		os.Exit(1)
	}
}
