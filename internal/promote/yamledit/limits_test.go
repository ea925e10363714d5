package yamledit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSet_DuplicateKeyOnThePathIsNamed(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"in the edited mapping", "spec:\n  values:\n    deployment:\n      tag: \"1.0.0\"\n      replicas: 2\n      tag: \"0.9.0\"\n",
			[]string{`"spec.values.deployment" has "tag" 2 times (lines 4, 6)`}},
		{"at the root", "spec:\n  values:\n    deployment:\n      tag: \"1.0.0\"\nspec:\n  values:\n    deployment:\n      tag: \"0.9.0\"\n",
			[]string{`the document root has "spec" 2 times (lines 1, 5)`}},
		{"half way", "spec:\n  values:\n    deployment: {tag: a}\n  values:\n    deployment: {tag: b}\n",
			[]string{`"spec" has "values" 2 times (lines 2, 4)`}},
		{"quoted and plain spelling", "spec:\n  values:\n    deployment:\n      tag: a\n      \"tag\": b\n",
			[]string{`"tag" 2 times (lines 4, 5)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, op := range []func() error{
				func() error { _, err := Set([]byte(tt.doc), "spec.values.deployment.tag", "1.1.0"); return err },
				func() error { _, err := Get([]byte(tt.doc), "spec.values.deployment.tag"); return err },
			} {
				err := op()
				if !errors.Is(err, ErrDuplicateKey) {
					t.Fatalf("error %v, want ErrDuplicateKey", err)
				}
				for _, w := range append(tt.want, "key spec.values.deployment.tag") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
			}
		})
	}
	// A duplicate off the path is not the promoter's business: kubectl would refuse it
	// for its own reasons, and the edit is still unambiguous.
	doc := "spec:\n  values:\n    deployment:\n      tag: a\n    service: {port: 1, port: 2}\n"
	if _, err := Set([]byte(doc), "spec.values.deployment.tag", "b"); err != nil {
		t.Errorf("duplicate off the path: %v", err)
	}
}

func TestSetFile_DuplicateKeyNamesFileAndLeavesItAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "instance.yaml")
	doc := "spec:\n  values:\n    deployment:\n      tag: \"1.0.0\"\n      tag: \"0.9.0\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := SetFile(path, "spec.values.deployment.tag", "1.1.0")
	if changed || !errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), " in "+path+": ") {
		t.Fatalf("changed %v, error %v; want a duplicate-key error naming %s", changed, err, path)
	}
	if got, _ := os.ReadFile(path); string(got) != doc {
		t.Errorf("file changed:\n%s", got)
	}
}

func TestSet_RefusesFilesOverOneMiB(t *testing.T) {
	head := "spec:\n  values:\n    deployment:\n      tag: \"1.0.0\"\n"
	ok := head + "#" + strings.Repeat("x", MaxFileSize-len(head)-2) + "\n"
	if _, err := Set([]byte(ok), "spec.values.deployment.tag", "1.1.0"); err != nil {
		t.Fatalf("file of exactly 1 MiB: %v", err)
	}
	big := ok + "#\n"
	_, err := Set([]byte(big), "spec.values.deployment.tag", "1.1.0")
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1048578 bytes") {
		t.Errorf("error %v, want ErrTooLarge with the size", err)
	}
	if _, err := Get([]byte(big), "spec.values.deployment.tag"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Get: %v, want ErrTooLarge", err)
	}
}
