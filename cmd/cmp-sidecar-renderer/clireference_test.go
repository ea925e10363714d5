package main

import (
	"flag"
	"io"
	"testing"

	"github.com/kropipe/kropipe/internal/tools/clidoc"
)

var updateCLIReference = flag.Bool("update", false, "rewrite docs/reference/cli.md's cmp-sidecar part from the commands")

// docs/reference/cli.md shows every command and flag of cmp-sidecar as its help does.
func TestCLIReference_ShowsEveryCommandAndFlag(t *testing.T) {
	root := newRootCommand(io.Discard, io.Discard, func(string) string { return "" })
	md := clidoc.Markdown(root, map[string]string{
		// Named for ARGOCD_CMP_WORKDIR and the binary's path, so it differs per machine.
		"serve --dir": "`$TMPDIR/kropipe-render-<uid>-<hash>` (or `KROPIPE_RENDER_DIR`)",
	})
	if err := clidoc.Check("../../"+clidoc.Page, "cmp-sidecar-renderer", md, *updateCLIReference); err != nil {
		t.Fatal(err)
	}
}
