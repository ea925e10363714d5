// Command registry is the CNCF distribution registry (what Debian ships as docker-registry) at
// the version pinned in go.mod, built from the module proxy so the e2e stack needs no package
// installed as root. Unlike the module's own cmd/registry it links only the filesystem storage
// driver: the S3, GCS and Azure drivers would more than double the cold build for nothing the
// tests use.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
