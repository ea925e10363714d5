// Command docgen writes the generated references of the documentation,
// docs/reference/annotations.md and docs/reference/promoter-yaml.md, from the tables the
// code itself validates with (argocd.Annotations, config.Fields). Its tests fail when a
// checked-in file differs from its output, and on a broken link anywhere in the docs.
//
// Run it with `make generate` (go generate ./...), or from the repository root:
//
//	go run ./internal/tools/docgen
//
// The same go generate rewrites the command sections of docs/reference/cli.md from the cobra
// trees (internal/tools/clidoc), through the tests of cmd/promoter and cmd/cmp-sidecar-renderer.
package main

//go:generate go run . -root ../../..
//go:generate go test -count=1 -run TestCLIReference ../../../cmd/promoter ../../../cmd/cmp-sidecar-renderer -update

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// outputs are the generated files, relative to the repository root, and their makers.
var outputs = []struct {
	path string
	make func() []byte
}{
	{"docs/reference/annotations.md", annotationsMarkdown},
	{"docs/reference/promoter-yaml.md", promoterYAMLMarkdown},
}

func main() {
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	for _, o := range outputs {
		path := filepath.Join(*root, o.path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "docgen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, o.make(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "docgen:", err)
			os.Exit(1)
		}
	}
}
