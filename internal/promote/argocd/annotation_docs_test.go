package argocd

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// annotationConstants finds every constant of this package's sources written as
// AnnotationPrefix + "name": the annotations the code knows, whatever the table says.
func annotationConstants(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				be, ok := v.(*ast.BinaryExpr)
				if !ok || be.Op != token.ADD {
					continue
				}
				if id, ok := be.X.(*ast.Ident); !ok || id.Name != "AnnotationPrefix" {
					continue
				}
				lit, ok := be.Y.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				out[vs.Names[i].Name] = AnnotationPrefix + s
			}
			return true
		})
	}
	return out
}

// Every annotation constant is documented (and so accepted by Derive), and the table
// documents nothing the code does not define.
func TestAnnotations_TableMatchesTheConstants(t *testing.T) {
	consts := annotationConstants(t)
	if len(consts) < 30 {
		t.Fatalf("found %d annotation constants; the scan is broken", len(consts))
	}
	documented := map[string]bool{}
	for _, a := range Annotations {
		if documented[a.Key] {
			t.Errorf("%s is documented twice", a.Key)
		}
		documented[a.Key] = true
		if a.Type == "" || a.Example == "" || a.Description == "" {
			t.Errorf("%s: give its Type, Example and Description in Annotations", a.Key)
		}
		if !known(a.Key) {
			t.Errorf("%s is documented but Derive refuses it", a.Key)
		}
	}
	defined := map[string]bool{}
	for name, key := range consts {
		defined[key] = true
		if !documented[key] {
			t.Errorf("constant %s (%s) is not in Annotations (annotation_docs.go): Derive refuses it and the reference misses it", name, key)
		}
	}
	for _, a := range Annotations {
		if !defined[a.Key] {
			t.Errorf("Annotations documents %s, which no constant defines", a.Key)
		}
	}
}

// The documented defaults are the code's.
func TestAnnotations_DefaultsAreTheCodes(t *testing.T) {
	doc := map[string]string{}
	for _, a := range Annotations {
		doc[a.Key] = a.Default
	}
	for _, tc := range []struct {
		key, want string
	}{
		{AnnStrategy, warehouse.DefaultStrategy},
		{AnnPlatform, warehouse.DefaultPlatform},
		{AnnKey, stage.DefaultKey},
		{AnnFile, "`<spec.source.path>/" + stage.DefaultFile + "`"},
		{AnnInterval, strings.TrimSuffix(DefaultInterval.String(), "0s")},
		{AnnVerifyTimeout, strings.TrimSuffix(verify.DefaultTimeout.String(), "0s")},
		{AnnWrite, stage.WritePush},
		{AnnCommitVia, stage.CommitViaGit},
		{AnnMerge, stage.MergeManual},
		{AnnMergeMethod, string(forge.MethodMerge)},
		{AnnPullRequestBranch, stage.DefaultPullRequestBranch},
		{AnnAutoPromote, `"true"`},
	} {
		if doc[tc.key] != tc.want {
			t.Errorf("%s: documented default %q, the code's is %q", tc.key, doc[tc.key], tc.want)
		}
	}
}
