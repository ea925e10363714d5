// Package clidoc writes a cobra command tree as Markdown for docs/reference/cli.md and
// keeps that page's generated parts honest: each command's test renders its tree and
// compares it with the part of the page between its markers (or rewrites it with -update).
package clidoc

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Page is the CLI reference, relative to the repository root.
const Page = "docs/reference/cli.md"

// Markdown writes every visible command under root (root included when it has flags of its
// own), depth first in cobra's order: a heading per command, its usage, its help text and a
// table of its flags. Inherited flags are shown once, on the command that defines them.
// machineDefaults replaces a flag's default that depends on the machine ("serve --dir") with
// words, so the page is the same wherever it is generated.
func Markdown(root *cobra.Command, machineDefaults map[string]string) []byte {
	var b bytes.Buffer
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c != root || c.LocalNonPersistentFlags().HasAvailableFlags() || c.PersistentFlags().HasAvailableFlags() {
			command(&b, c, machineDefaults)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return b.Bytes()
}

func command(b *bytes.Buffer, c *cobra.Command, machineDefaults map[string]string) {
	fmt.Fprintf(b, "### %s\n\n```text\n%s\n```\n\n", c.CommandPath(), strings.TrimSuffix(c.UseLine(), " [flags]"))
	help := strings.TrimSpace(c.Long)
	if help == "" {
		help = c.Short
	}
	fmt.Fprintf(b, "%s\n", escape(help))
	var flags []*pflag.Flag
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && f.Name != "help" {
			flags = append(flags, f)
		}
	})
	if len(flags) == 0 {
		b.WriteString("\n")
		return
	}
	b.WriteString("\n| Flag | Type | Default | Description |\n| --- | --- | --- | --- |\n")
	for _, f := range flags {
		name := "`--" + f.Name + "`"
		if f.Shorthand != "" {
			name += " (`-" + f.Shorthand + "`)"
		}
		typ, usage := pflag.UnquoteUsage(f)
		if typ == "" {
			typ = "bool"
		}
		def := f.DefValue
		if d, ok := machineDefaults[c.Name()+" --"+f.Name]; ok {
			def = d
		} else if isZero(f) {
			def = ""
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", name, typ, def, cell(usage))
	}
	b.WriteString("\n")
}

// isZero says whether a flag's default is its type's zero value, which help leaves out.
func isZero(f *pflag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "[]", "0s":
		return true
	}
	return false
}

// escape keeps help text literal in Markdown: no emphasis from PARAM_*, no HTML from <name>.
func escape(s string) string {
	return strings.NewReplacer("*", `\*`, "<", "&lt;", ">", "&gt;").Replace(s)
}

func cell(s string) string {
	return strings.ReplaceAll(escape(s), "|", `\|`)
}

// markers delimit the generated part named name in the page.
func markers(name string) (begin, end string) {
	return "<!-- BEGIN GENERATED " + name + ": go test ./cmd/" + name + " -run TestCLIReference -update -->\n",
		"<!-- END GENERATED " + name + " -->\n"
}

// Check compares the page's part for name (the command's directory under cmd/) with want;
// with update it rewrites that part instead. pagePath is the page seen from the test.
func Check(pagePath, name string, want []byte, update bool) error {
	page, err := os.ReadFile(pagePath)
	if err != nil {
		return err
	}
	begin, end := markers(name)
	i, j := bytes.Index(page, []byte(begin)), bytes.Index(page, []byte(end))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no part between %q and %q; add both lines where the %s commands belong, then run with -update", Page, strings.TrimSpace(begin), strings.TrimSpace(end), name)
	}
	got := page[i+len(begin) : j]
	if bytes.Equal(got, want) {
		return nil
	}
	if !update {
		return fmt.Errorf("%s's %s part differs from the commands' help; run go test ./cmd/%s -run TestCLIReference -update and commit the page", Page, name, name)
	}
	out := append(append(append([]byte{}, page[:i+len(begin)]...), want...), page[j:]...)
	return os.WriteFile(pagePath, out, 0o644)
}
