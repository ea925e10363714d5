// Command vulngate reads `govulncheck -format json` on stdin and decides `make vuln`: a
// vulnerability the code reaches fails it — in a module (bump the module) or in the Go standard
// library (the binaries users run carry it: upgrade the toolchain, whose release the gate names)
// — unless the exceptions file gives it a written reason and a date until which it holds.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/version"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	exceptionsFile := flag.String("exceptions", "", "YAML file of accepted vulnerabilities (id, reason, until); see vuln-exceptions.yaml")
	flag.Parse()
	var exc []exception
	if *exceptionsFile != "" {
		var err error
		if exc, err = readExceptions(*exceptionsFile); err != nil {
			fmt.Fprintln(os.Stderr, "vulngate:", err)
			os.Exit(2)
		}
	}
	failed, err := gate(os.Stdin, os.Stdout, exc, time.Now())
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

// gate writes the report to out and says whether a vulnerability is reached that no exception
// in force (until after now) accepts.
func gate(in io.Reader, out io.Writer, exc []exception, now time.Time) (failed bool, err error) {
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
	var mods, std, accepted []vuln
	reasons := map[string]string{}
	for _, v := range reached {
		v.summary = summaries[v.id]
		if e, ok := findException(exc, v.id); ok && now.Before(e.Until.Time) {
			accepted = append(accepted, v)
			reasons[v.id] = fmt.Sprintf("%s (accepted until %s)", e.Reason, e.Until.Format(time.DateOnly))
			continue
		}
		if v.module == stdlib {
			std = append(std, v)
		} else {
			mods = append(mods, v)
		}
	}
	byID := func(a, b vuln) int { return strings.Compare(a.id, b.id) }
	slices.SortFunc(mods, byID)
	slices.SortFunc(std, byID)
	slices.SortFunc(accepted, byID)
	for _, v := range accepted {
		fmt.Fprintf(out, "accepted: %s %s: %s\n", v.id, v.symbol, reasons[v.id])
	}
	for _, e := range exc {
		if !now.Before(e.Until.Time) {
			fmt.Fprintf(out, "note: the exception for %s expired on %s; remove it from the exceptions file or renew it with a new reason\n", e.ID, e.Until.Format(time.DateOnly))
		}
	}
	if len(std) > 0 {
		fixedBy := ""
		for _, v := range std {
			fixedBy = newerGo(fixedBy, v.fixed)
		}
		fmt.Fprintf(out, "FAIL: %d Go standard library vulnerabilities reached with %s; upgrade the toolchain to Go %s or newer (go.mod's toolchain line; not a module bump):\n", len(std), goVersion, strings.TrimPrefix(fixedBy, "v"))
		for _, v := range std {
			fmt.Fprintf(out, "  %s %s (fixed in go%s): %s\n", v.id, v.symbol, strings.TrimPrefix(v.fixed, "v"), v.summary)
		}
	}
	if len(mods) > 0 {
		fmt.Fprintf(out, "FAIL: %d vulnerabilities reached in modules; bump them in go.mod:\n", len(mods))
		for _, v := range mods {
			fmt.Fprintf(out, "  %s %s@%s, fixed in %s, reached at %s: %s\n", v.id, v.module, v.version, v.fixed, v.symbol, v.summary)
		}
	}
	if len(std) > 0 || len(mods) > 0 {
		return true, nil
	}
	fmt.Fprintf(out, "no vulnerability reached with %s\n", goVersion)
	return false, nil
}

// newerGo returns the later of two Go versions as govulncheck writes them (v1.26.10).
func newerGo(a, b string) string {
	if a == "" || version.Compare("go"+strings.TrimPrefix(b, "v"), "go"+strings.TrimPrefix(a, "v")) > 0 {
		return b
	}
	return a
}
