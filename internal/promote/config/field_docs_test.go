package config

import (
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// keysRead finds every field name the parser's code reads: the string given to
// p.str/boolean/number/duration/list/strings/material and every m["name"] lookup.
func keysRead(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	readers := map[string]bool{"str": true, "boolean": true, "number": true, "duration": true, "list": true, "strings": true, "material": true}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := goparser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		lit := func(e ast.Expr) {
			if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
				s, _ := strconv.Unquote(b.Value)
				out[s] = true
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && readers[sel.Sel.Name] && len(n.Args) >= 2 {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "p" {
						lit(n.Args[1])
					}
				}
			case *ast.IndexExpr:
				// The parser's field maps: top, m, and cm, pm, vm, … for nested ones.
				if id, ok := n.X.(*ast.Ident); ok && (id.Name == "top" || len(id.Name) <= 2 && strings.HasSuffix(id.Name, "m")) {
					lit(n.Index)
				}
			}
			return true
		})
	}
	return out
}

// leaf is a path's last name: "stages[].verify.command" → "command".
func leaf(path string) string {
	path = strings.TrimSuffix(path, "[]")
	if i := strings.LastIndexAny(path, "."); i >= 0 {
		return strings.TrimSuffix(path[i+1:], "[]")
	}
	return path
}

// Every field the parser reads is in Fields (and so accepted and documented), every
// documented field is read, and every documented field's parent is documented.
func TestFields_TableMatchesTheParser(t *testing.T) {
	read := keysRead(t)
	if len(read) < 40 {
		t.Fatalf("found %d keys read; the scan is broken", len(read))
	}
	paths := map[string]bool{}
	leaves := map[string]bool{}
	for _, f := range Fields {
		if paths[f.Path] {
			t.Errorf("%s is documented twice", f.Path)
		}
		paths[f.Path] = true
		leaves[leaf(f.Path)] = true
		if f.Type == "" || f.Description == "" {
			t.Errorf("%s: give its Type and Description in Fields", f.Path)
		}
		if f.Example == "" && f.Type != "mapping" && f.Type != "list of mappings" {
			t.Errorf("%s: give an Example in Fields", f.Path)
		}
	}
	for _, f := range Fields {
		parent := f.Path[:max(0, strings.LastIndex(f.Path, "."))]
		if parent == "" || parent == policyPath {
			continue
		}
		if !paths[strings.TrimSuffix(parent, "[]")] {
			t.Errorf("%s: its parent %s is not documented", f.Path, parent)
		}
	}
	for k := range read {
		if !leaves[k] {
			t.Errorf("the parser reads %q, which Fields (field_docs.go) does not document: promoter.yaml refuses it", k)
		}
	}
	for l := range leaves {
		if !read[l] {
			t.Errorf("Fields documents %q, which the parser never reads", l)
		}
	}
}

// The documented defaults are what the parser fills in.
func TestFields_DefaultsAreTheParsers(t *testing.T) {
	doc := map[string]string{}
	for _, f := range Fields {
		doc[f.Path] = f.Default
	}
	cfg, err := Parse([]byte(`git: {url: https://git.example.com/gitops.git}
registries: [{host: registry.example.com}]
stages:
  - {name: a, image: registry.example.com/a, verify: {command: [true]}}
  - {name: b, image: registry.example.com/b, file: b.yaml, write: pull-request}
groups: [{name: g, members: [a]}]
`), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Stages[0], cfg.Stages[1]
	for _, tc := range []struct {
		path string
		got  any
	}{
		{"git.branch", cfg.Git.Branch},
		{"git.author.name", cfg.Git.Author.Name},
		{"git.author.email", cfg.Git.Author.Email},
		{"git.credentials.env", cfg.Git.Credentials.Env},
		{"registries[].insecure", cfg.Registries[0].Insecure},
		{"registries[].rateLimit", warehouse.DefaultRateLimit}, // 0 in the file means the warehouse's default
		{"stages[].strategy", a.Strategy},
		{"stages[].file", a.File},
		{"stages[].key", a.Key},
		{"stages[].autoPromote", a.AutoPromote},
		{"stages[].write", a.Write},
		{"stages[].commitVia", "git"}, // "" and git are the same
		{"stages[].verify.timeout", strings.TrimSuffix(a.Verify.Timeout.String(), "0s")},
		{"stages[].pullRequest.branch", b.PullRequest.Branch},
		{"stages[].pullRequest.merge", b.PullRequest.Merge},
		{"stages[].pullRequest.method", b.PullRequest.Method},
		{"stages[].platform", warehouse.DefaultPlatform},
		{"groups[].requireAll", cfg.Groups[0].RequireAll},
	} {
		if want := fmt.Sprint(tc.got); doc[tc.path] != want {
			t.Errorf("%s: documented default %q, the parser's %q", tc.path, doc[tc.path], want)
		}
	}
	if cfg.Registries[0].RateLimit != 0 {
		t.Errorf("a registry without rateLimit reads %v, want 0 (the warehouse's default)", cfg.Registries[0].RateLimit)
	}
}
