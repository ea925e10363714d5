package render

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// TestErrors_CallersCanTellThemApart: every kind of failure a caller may branch on is reachable
// with errors.Is or errors.As through the messages' wrapping.
func TestErrors_CallersCanTellThemApart(t *testing.T) {
	thing := "apiVersion: kro.run/v1alpha1\nkind: ResourceGraphDefinition\nmetadata:\n  name: thing\nspec:\n  schema:\n    apiVersion: v1alpha1\n    kind: Thing\n    spec:\n      n: integer | maximum=1\n  resources:\n"
	cm := "    - id: cm\n      template:\n        apiVersion: v1\n        kind: ConfigMap\n        metadata:\n          name: ${schema.metadata.name}\n"
	tests := []struct {
		name  string
		files map[string]string
		path  string
		match func(error) bool
	}{
		{"no RGD", map[string]string{"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Thing\nmetadata:\n  name: t\n"}, "app",
			func(err error) bool { return errors.Is(err, ErrNoRGD) }},
		{"two RGDs", map[string]string{"a.yaml": thing + cm, "b.yaml": thing + cm, "app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Thing\nmetadata:\n  name: t\n"}, "app",
			func(err error) bool { return errors.Is(err, ErrDuplicateRGD) }},
		{"missing path", nil, "nowhere", func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"outside the root", nil, "..", func(err error) bool { return errors.Is(err, ErrOutsideRoot) }},
		{"too large", map[string]string{"app/big.yaml": "#" + strings.Repeat("x", MaxFileSize)}, "app",
			func(err error) bool { return errors.Is(err, ErrFileTooLarge) }},
		{"duplicate key", map[string]string{"app/a.yaml": "a: 1\na: 2\n"}, "app", func(err error) bool { return errors.Is(err, ErrDuplicateKey) }},
		{"empty", map[string]string{"app/a.yaml": "# nothing\n"}, "app", func(err error) bool { return errors.Is(err, ErrEmptyRender) }},
		{"invalid instance", map[string]string{"thing.yaml": thing + cm, "app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Thing\nmetadata:\n  name: t\nspec:\n  n: 5\n"}, "app",
			func(err error) bool { var e *InvalidInstanceError; return errors.As(err, &e) }},
		{"invalid RGD", map[string]string{"thing.yaml": thing + "    - id: cm\n      template:\n        apiVersion: v1\n        kind: ConfigMap\n        metadata:\n          name: ${schema.spec.nope}\n",
			"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Thing\nmetadata:\n  name: t\n"}, "app",
			func(err error) bool { var e *InvalidRGDError; return errors.As(err, &e) }},
		{"needs a cluster", map[string]string{"thing.yaml": thing + "    - id: cm\n      template:\n        apiVersion: v1\n        kind: ConfigMap\n        metadata:\n          name: x\n        data:\n          uid: ${schema.metadata.uid}\n",
			"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: Thing\nmetadata:\n  name: t\n"}, "app",
			func(err error) bool { var e *NeedsClusterError; return errors.As(err, &e) }},
		{"nesting cycle", map[string]string{"a.yaml": nestingRGD("a", "A", "B"), "b.yaml": nestingRGD("b", "B", "A"),
			"app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: A\nmetadata:\n  name: t\n"}, "app",
			func(err error) bool { return errors.Is(err, ErrNestingCycle) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tt.files)
			e, err := New(root)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.Render(context.Background(), tt.path)
			if err == nil || !tt.match(err) {
				t.Fatalf("error %v (%T) is not the kind expected", err, err)
			}
		})
	}
}
