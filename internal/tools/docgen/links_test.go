package main

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
)

// mdFile is one parsed page: its links and the anchors its headings make.
type mdFile struct {
	links   []link
	anchors map[string]bool
}

type link struct {
	dest string
	line int
}

func parseMarkdown(t *testing.T, src []byte) mdFile {
	t.Helper()
	md := goldmark.New(goldmark.WithExtensions(extension.GFM))
	doc := md.Parser().Parse(text.NewReader(src))
	f := mdFile{anchors: map[string]bool{}}
	seen := map[string]int{}
	err := ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Heading:
			id := anchor(plainText(n, src))
			if k := seen[id]; k > 0 {
				f.anchors[fmt.Sprintf("%s-%d", id, k)] = true
			} else {
				f.anchors[id] = true
			}
			seen[id]++
		case *ast.Link:
			f.links = append(f.links, link{string(n.Destination), lineOf(n, src)})
		case *ast.Image:
			f.links = append(f.links, link{string(n.Destination), lineOf(n, src)})
		}
		return ast.WalkContinue, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// plainText is a heading's text as GitHub reads it for the anchor: code spans' and
// emphasis' content kept, their markers dropped.
func plainText(n ast.Node, src []byte) string {
	var b strings.Builder
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Text:
			b.Write(c.Segment.Value(src))
			if c.SoftLineBreak() {
				b.WriteByte(' ')
			}
		case *ast.String:
			b.Write(c.Value)
		default:
			b.WriteString(plainText(c, src))
		}
	}
	return b.String()
}

// lineOf is the line of the block holding n, for messages.
func lineOf(n ast.Node, src []byte) int {
	for p := n; p != nil; p = p.Parent() {
		if p.Type() == ast.TypeBlock && p.Lines().Len() > 0 {
			return 1 + strings.Count(string(src[:p.Lines().At(0).Start]), "\n")
		}
	}
	return 0
}

// docPages are README.md and every Markdown file under docs/, relative to the root.
func docPages(t *testing.T) []string {
	t.Helper()
	pages := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(root, p)
			pages = append(pages, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pages
}

// linkChecker checks links between the files of fsys (the repository).
type linkChecker struct {
	t       *testing.T
	fsys    fs.FS
	pending map[string]bool
	parsed  map[string]mdFile
}

func newLinkChecker(t *testing.T, fsys fs.FS, pending []string) *linkChecker {
	c := &linkChecker{t: t, fsys: fsys, pending: map[string]bool{}, parsed: map[string]mdFile{}}
	for _, p := range pending {
		c.pending[p] = true
	}
	return c
}

func (c *linkChecker) page(rel string) (mdFile, error) {
	if f, ok := c.parsed[rel]; ok {
		return f, nil
	}
	src, err := fs.ReadFile(c.fsys, rel)
	if err != nil {
		return mdFile{}, err
	}
	f := parseMarkdown(c.t, src)
	c.parsed[rel] = f
	return f, nil
}

// Every relative link of README.md and docs/ names a file of the repository and, into a
// Markdown page, one of its headings (GitHub's anchor rules).
func TestDocs_RelativeLinksAndAnchorsResolve(t *testing.T) {
	pages := docPages(t)
	if len(pages) < 10 {
		t.Fatalf("found %d pages; the walk is broken", len(pages))
	}
	c := newLinkChecker(t, os.DirFS(root), nil)
	for _, rel := range pages {
		f, err := c.page(rel)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range f.links {
			if msg := c.check(rel, l.dest); msg != "" {
				t.Errorf("%s:%d: link %s: %s", rel, l.line, l.dest, msg)
			}
		}
	}
}

// check says what is wrong with dest, a link on page from; "" when nothing is.
func (c *linkChecker) check(from, dest string) string {
	u, err := url.Parse(dest)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	if u.Scheme != "" || u.Host != "" {
		return "" // an external link: not checked offline
	}
	target := from
	if u.Path != "" {
		if strings.HasPrefix(u.Path, "/") {
			target = path.Clean(strings.TrimPrefix(u.Path, "/"))
		} else {
			target = path.Join(path.Dir(from), u.Path)
		}
		if target == ".." || strings.HasPrefix(target, "../") {
			return "leaves the repository"
		}
	}
	info, err := fs.Stat(c.fsys, target)
	switch {
	case err != nil && c.pending[target]:
		return "" // added by another branch
	case err != nil:
		return fmt.Sprintf("%s does not exist", target)
	case u.Fragment == "":
		return ""
	case info.IsDir() || !strings.HasSuffix(target, ".md"):
		return fmt.Sprintf("an anchor (#%s) into %s, which is not a Markdown page", u.Fragment, target)
	}
	f, err := c.page(target)
	if err != nil {
		return err.Error()
	}
	if !f.anchors[u.Fragment] {
		return fmt.Sprintf("%s has no heading with the anchor #%s", target, u.Fragment)
	}
	return ""
}

// The checker itself: it finds what it must, and GitHub's numbering of repeated headings.
func TestLinkChecker_FindsBrokenLinks(t *testing.T) {
	fsys := fstest.MapFS{
		"README.md": {Data: []byte("# Project\n")},
		"Makefile":  {Data: []byte("all:\n")},
		"docs/a.md": {Data: []byte("# Title\n\n## Same\n\n## Same\n\n[x](b.md#other) [y](#same-1) [z](../README.md)\n")},
		"docs/b.md": {Data: []byte("# Other\n")},
	}
	c := newLinkChecker(t, fsys, []string{"docs/http-api.md"})
	a, err := c.page("docs/a.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.links) != 3 || !a.anchors["same"] || !a.anchors["same-1"] || a.anchors["same-2"] {
		t.Fatalf("parsed %+v", a)
	}
	for _, tc := range []struct {
		dest, wantPart string
	}{
		{"#same-1", ""},
		{"b.md#other", ""},
		{"#nowhere", "no heading with the anchor #nowhere"},
		{"b.md#title", "docs/b.md has no heading with the anchor #title"},
		{"https://example.com/x#y", ""},
		{"../README.md", ""},
		{"/README.md#project", ""},
		{"missing.md", "docs/missing.md does not exist"},
		{"http-api.md", ""}, // pending
		{"http-api.md#anything", ""},
		{"../../outside.md", "leaves the repository"},
		{"../Makefile#x", "not a Markdown page"},
	} {
		got := c.check("docs/a.md", tc.dest)
		if (tc.wantPart == "") != (got == "") || !strings.Contains(got, tc.wantPart) {
			t.Errorf("check(%q) = %q, want %q", tc.dest, got, tc.wantPart)
		}
	}
}
