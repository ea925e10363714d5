// Command cmp-sidecar is kropipe's Argo CD Config Management Plugin: it renders Kro instances
// into the Kubernetes objects they stand for, offline, inside the repo-server.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr, os.Getenv).Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "cmp-sidecar: %v\n", err)
		os.Exit(1)
	}
}
