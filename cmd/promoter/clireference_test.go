package main

import (
	"flag"
	"io"
	"testing"

	"github.com/kropipe/kropipe/internal/tools/clidoc"
)

var updateCLIReference = flag.Bool("update", false, "rewrite docs/reference/cli.md's promoter part from the commands")

// docs/reference/cli.md shows every command and flag of promoter as its help does.
func TestCLIReference_ShowsEveryCommandAndFlag(t *testing.T) {
	root := newRootCommand(io.Discard, io.Discard, func(string) string { return "" })
	md := clidoc.Markdown(root, nil)
	if err := clidoc.Check("../../"+clidoc.Page, "promoter", md, *updateCLIReference); err != nil {
		t.Fatal(err)
	}
}
