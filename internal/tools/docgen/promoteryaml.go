package main

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/config"
)

// sections group promoter.yaml's fields for the reference: each takes the fields whose
// path starts with its prefix and no later section's.
var sections = []struct{ title, prefix, intro string }{
	{"Top level", "", ""},
	{"git", "git.", "The repository every stage writes to, who the commits are by, and how to authenticate."},
	{"registries", "registries[].", "One entry per registry host that needs settings."},
	{"stages", "stages[].", "One entry per stage: which image, how its tag is chosen, where it is written, and what gates it."},
	{"groups", "groups[].", "Release groups; see [Release groups](../release-groups.md)."},
	{"Signature policies", "signaturePolicies.<name>.", "A policy under `signaturePolicies.<name>`, in a stage's `signature:` list (written in place) or in the cluster's `--signature-policies` file takes these fields; there `key`, `trustedRoot` and `trustStore` may name a Secret of the promoter's namespace as `secret:<name>/<key>`. See [Image signatures](../image-signatures.md)."},
}

// promoterYAMLMarkdown is docs/reference/promoter-yaml.md: a table per section.
func promoterYAMLMarkdown() []byte {
	var b bytes.Buffer
	b.WriteString(generatedNote("internal/promote/config/field_docs.go (Fields)"))
	b.WriteString(`# promoter.yaml reference

Local mode (` + "`promoter run --config promoter.yaml`" + `) reads its stages from this file; a complete
example is in [Local mode](../local-mode.md). Unknown fields (named with the closest known one),
unknown strategies, bad constraints or regular expressions, an upstream that does not exist or a
cycle of upstreams, two stages writing the same file and key, a file path outside the repository,
and a signature policy that cannot work are refused at start with the file, line, stage and field
named. Durations are Go durations (` + "`30s`, `10m`, `1h30m`" + `).
`)
	for i, s := range sections {
		var rows []config.FieldDoc
		for _, f := range config.Fields {
			if sectionOf(f.Path) == i {
				rows = append(rows, f)
			}
		}
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		if s.intro != "" {
			b.WriteString(s.intro + "\n\n")
		}
		b.WriteString("| Field | Type | Default | Example | Description |\n| --- | --- | --- | --- | --- |\n")
		for _, f := range rows {
			ex := ""
			if f.Example != "" {
				ex = "`" + f.Example + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.Path, cell(f.Type), cell(f.Default), cell(ex), cell(f.Description))
		}
	}
	return b.Bytes()
}

// sectionOf is the index of the last section whose prefix the path has.
func sectionOf(path string) int {
	at := 0
	for i, s := range sections {
		if s.prefix != "" && strings.HasPrefix(path, s.prefix) {
			at = i
		}
	}
	return at
}
