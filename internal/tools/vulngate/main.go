// Command vulngate reads `govulncheck -format json` on stdin and decides `make vuln`: a
// vulnerability the code reaches in a module fails it (bump the module); one in the Go
// standard library is printed as a warning naming the Go release that fixes it, since only a
// new toolchain fixes those and a machine may not be able to get it yet.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"io"
	"os"
	"slices"
	"strings"
)

func main() {
	failed, err := gate(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// message is one object of govulncheck's JSON stream (protocol v1); only what the gate reads.
type message struct {
	Config *struct {
		GoVersion string `json:"go_version"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

// stdlib is govulncheck's module name for the Go standard library (and toolchain).
const stdlib = "stdlib"

// vuln is one vulnerability the code calls.
type vuln struct {
	id, module, version, fixed, symbol, summary string
}

// gate writes the report to out and says whether a module vulnerability is reached.
func gate(in io.Reader, out io.Writer) (failed bool, err error) {
	dec := json.NewDecoder(in)
	var (
		goVersion string
		sawConfig bool
		summaries = map[string]string{}
		reached   = map[string]vuln{} // by OSV id and module
	)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return false, fmt.Errorf("reading govulncheck's JSON: %w", err)
		}
		switch {
		case m.Config != nil:
			sawConfig, goVersion = true, m.Config.GoVersion
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			// Only a trace that starts at a function is code the program calls; package and
			// module findings are imported or required but not reached.
			f, top := m.Finding, m.Finding.Trace[0]
			if top.Function == "" {
				continue
			}
			key := f.OSV + " " + top.Module
			if _, ok := reached[key]; !ok {
				reached[key] = vuln{id: f.OSV, module: top.Module, version: top.Version, fixed: f.FixedVersion, symbol: top.Package + "." + top.Function}
			}
		}
	}
	if !sawConfig {
		return false, errors.New("no govulncheck report on stdin (did govulncheck fail to load the packages?)")
	}
	var mods, std []vuln
	for _, v := range reached {
		v.summary = summaries[v.id]
		if v.module == stdlib {
			std = append(std, v)
		} else {
			mods = append(mods, v)
		}
	}
	byID := func(a, b vuln) int { return strings.Compare(a.id, b.id) }
	slices.SortFunc(mods, byID)
	slices.SortFunc(std, byID)
	if len(std) > 0 {
		fixedBy := ""
		for _, v := range std {
			fixedBy = newerGo(fixedBy, v.fixed)
		}
		fmt.Fprintf(out, "WARNING: %d Go standard library vulnerabilities reached with %s; fixed by Go %s (a toolchain upgrade, not a module bump):\n", len(std), goVersion, strings.TrimPrefix(fixedBy, "v"))
		for _, v := range std {
			fmt.Fprintf(out, "  %s %s (fixed in go%s): %s\n", v.id, v.symbol, strings.TrimPrefix(v.fixed, "v"), v.summary)
		}
	}
	if len(mods) > 0 {
		fmt.Fprintf(out, "FAIL: %d vulnerabilities reached in modules; bump them in go.mod:\n", len(mods))
		for _, v := range mods {
			fmt.Fprintf(out, "  %s %s@%s, fixed in %s, reached at %s: %s\n", v.id, v.module, v.version, v.fixed, v.symbol, v.summary)
		}
		return true, nil
	}
	fmt.Fprintln(out, "no module vulnerability reached")
	return false, nil
}

// newerGo returns the later of two Go versions as govulncheck writes them (v1.26.10).
func newerGo(a, b string) string {
	if a == "" || version.Compare("go"+strings.TrimPrefix(b, "v"), "go"+strings.TrimPrefix(a, "v")) > 0 {
		return b
	}
	return a
}
