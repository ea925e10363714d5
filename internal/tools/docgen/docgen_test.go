package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/config"
)

// root is the repository root, seen from this package's directory.
const root = "../../.."

// The checked-in references are what the generator writes now: a field or annotation
// added to the code's tables without `make generate` fails here.
func TestGenerated_CheckedInFilesAreUpToDate(t *testing.T) {
	for _, o := range outputs {
		t.Run(o.path, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(root, o.path))
			if err != nil {
				t.Fatalf("%v; run `make generate`", err)
			}
			if want := o.make(); !bytes.Equal(got, want) {
				t.Errorf("%s differs from what internal/tools/docgen writes; run `make generate` (or go run ./internal/tools/docgen) and commit the result", o.path)
			}
		})
	}
}

// Every example in the references is YAML that reads back as the value documented.
func TestGenerated_ExamplesAreYAML(t *testing.T) {
	for _, a := range argocd.Annotations {
		var m map[string]string
		if err := yaml.Unmarshal([]byte("k: "+yamlScalar(a.Example)), &m); err != nil || m["k"] != a.Example {
			t.Errorf("%s: example %q does not read back (%v, %q)", a.Key, a.Example, err, m["k"])
		}
	}
	for _, f := range config.Fields {
		if f.Example == "" {
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte("k: "+f.Example), &v); err != nil {
			t.Errorf("%s: example %s is not YAML: %v", f.Path, f.Example, err)
		}
	}
}

func TestAnchor_GitHubRules(t *testing.T) {
	for _, tc := range []struct{ heading, want string }{
		{"Speed: the warm render server", "speed-the-warm-render-server"},
		{"`kropipe.io/image`", "kropipeioimage"},
		{"List RGD folders in `argocd.argoproj.io/manifest-generate-paths`", "list-rgd-folders-in-argocdargoprojiomanifest-generate-paths"},
		{"Keep `.git` out of the plugin", "keep-git-out-of-the-plugin"},
		{"Registry requests: what a pass costs, and the default rate limit", "registry-requests-what-a-pass-costs-and-the-default-rate-limit"},
		{"Conformance with kro's own fixtures", "conformance-with-kros-own-fixtures"},
		{"promoter.yaml reference", "promoteryaml-reference"},
		{"Étape 1 — déploiement", "étape-1--déploiement"},
	} {
		if got := anchor(tc.heading); got != tc.want {
			t.Errorf("anchor(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}
