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

func main() {
	// A render is a short burst of allocation in a process that then exits: collecting garbage
	// at 100 % heap growth spends a quarter of the CPU on memory nobody will reuse. The server
	// sets its own memory limit instead (serve.go). GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if err := newRootCommand(os.Stdout, os.Stderr, os.Getenv).Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "cmp-sidecar: %v\n", err)
		os.Exit(1)
	}
}
