package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/config"
)

// yamlBlocks are the fenced ```yaml blocks of a page, with their lines.
func yamlBlocks(t *testing.T, src []byte) (blocks []string, lines []int) {
	t.Helper()
	doc := goldmark.New(goldmark.WithExtensions(extension.GFM)).Parser().Parse(text.NewReader(src))
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		fb, ok := n.(*ast.FencedCodeBlock)
		if !entering || !ok || string(fb.Language(src)) != "yaml" {
			return ast.WalkContinue, nil
		}
		var b strings.Builder
		for i := 0; i < fb.Lines().Len(); i++ {
			seg := fb.Lines().At(i)
			b.Write(seg.Value(src))
		}
		blocks = append(blocks, b.String())
		lines = append(lines, lineOf(fb, src))
		return ast.WalkContinue, nil
	})
	return blocks, lines
}

// Every complete promoter.yaml shown in the docs (a block with git: at the top) is one the
// promoter accepts.
func TestDocs_PromoterYAMLExamplesParse(t *testing.T) {
	found := 0
	for _, rel := range docPages(t) {
		src, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		blocks, lines := yamlBlocks(t, src)
		for i, b := range blocks {
			var top map[string]any
			if yaml.Unmarshal([]byte(b), &top) != nil || top["git"] == nil || top["stages"] == nil {
				continue
			}
			found++
			if _, err := config.Parse([]byte(b), rel); err != nil {
				t.Errorf("%s:%d: the promoter.yaml example is refused: %v", rel, lines[i], err)
			}
		}
	}
	if found < 2 {
		t.Fatalf("found %d promoter.yaml examples; the scan is broken", found)
	}
}

// objectAnnotations are kropipe.io/ annotations the promoter or the plugin write on objects
// (not stage settings), which examples may show.
var objectAnnotations = map[string]bool{
	"kropipe.io/instance-chain": true, "kropipe.io/commit": true,
	"kropipe.io/ttl-seconds-after-finished": true, "kropipe.io/webhook": true,
}

// Every kropipe.io/ annotation in the docs' YAML examples is one the promoter knows.
func TestDocs_AnnotationExamplesAreKnown(t *testing.T) {
	known := map[string]bool{}
	for _, a := range argocd.Annotations {
		known[a.Key] = true
	}
	found := 0
	var walk func(rel string, line int, v any, underAnnotations bool)
	walk = func(rel string, line int, v any, underAnnotations bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if underAnnotations && strings.HasPrefix(k, argocd.AnnotationPrefix) {
					found++
					if !known[k] && !objectAnnotations[k] {
						t.Errorf("%s:%d: %s is not an annotation the promoter knows (docs/reference/annotations.md)", rel, line, k)
					}
				}
				walk(rel, line, c, k == "annotations")
			}
		case []any:
			for _, c := range v {
				walk(rel, line, c, false)
			}
		}
	}
	for _, rel := range docPages(t) {
		src, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		blocks, lines := yamlBlocks(t, src)
		for i, b := range blocks {
			var v any
			if yaml.Unmarshal([]byte(b), &v) == nil {
				walk(rel, lines[i], v, false)
			}
		}
	}
	if found < 10 {
		t.Fatalf("found %d annotations in examples; the scan is broken", found)
	}
}

// The plugin parameters reference lists exactly the parameters plugin.yaml announces, with
// the same defaults.
func TestDocs_PluginParametersMatchPluginYAML(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "plugin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var plugin struct {
		Spec struct {
			Parameters struct {
				Static []struct {
					Name   string `json:"name"`
					String string `json:"string"`
				} `json:"static"`
			} `json:"parameters"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &plugin); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "docs/reference/plugin-parameters.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // parameter → its Default cell
	for _, line := range strings.Split(string(page), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) > 3 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2])
		}
	}
	if len(plugin.Spec.Parameters.Static) == 0 {
		t.Fatal("plugin.yaml announces no parameters; the read is broken")
	}
	announced := map[string]bool{}
	for _, p := range plugin.Spec.Parameters.Static {
		announced[p.Name] = true
		def, ok := rows[p.Name]
		switch {
		case !ok:
			t.Errorf("plugin.yaml announces %s, which docs/reference/plugin-parameters.md does not list", p.Name)
		case p.String != "" && def != "`\""+p.String+"\"`":
			t.Errorf("%s: documented default %s, plugin.yaml's %q", p.Name, def, p.String)
		case p.String == "" && !strings.HasPrefix(def, "empty"):
			t.Errorf("%s: documented default %s, plugin.yaml's is empty", p.Name, def)
		}
	}
	for name := range rows {
		if !announced[name] {
			t.Errorf("docs/reference/plugin-parameters.md lists %s, which plugin.yaml does not announce", name)
		}
	}
}
