package argocd

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// FuzzDerive feeds arbitrary kropipe.io annotation values to two chained
// Applications: Derive must not panic, every stage it keeps must pass the engine's
// own validation, and a stage it leaves out must have a Problem naming it.
func FuzzDerive(f *testing.F) {
	f.Add("registry.example.com/team/frontend", "semver", "^1.2", "", "develop/frontend/instance.yaml", "spec.values.deployment.tag", "true", "10m", "5m")
	f.Add("r/x", "digest", "latest", "^v", "a/b.yaml", "spec.a[name=x].tag", "false", "0s", "1h")
	f.Add("", "lexical", "", "(", "../x", "", "maybe", "-1s", "1")
	f.Fuzz(func(t *testing.T, image, strategy, constraint, allow, file, key, auto, soak, interval string) {
		dev := app("develop-frontend", "develop/frontend", map[string]string{
			AnnImage: image, AnnStrategy: strategy, AnnConstraint: constraint, AnnAllowTags: allow,
			AnnFile: file, AnnKey: key, AnnAutoPromote: auto, AnnInterval: interval,
		})
		stg := app("staging-frontend", "staging/frontend", map[string]string{
			AnnImage: image, AnnUpstream: "develop-frontend", AnnSoak: soak, AnnFile: file, AnnKey: key,
		})
		cfg := Derive([]*unstructured.Unstructured{dev, stg}, nil)
		if err := stage.ValidateAll(cfg.Specs); err != nil {
			t.Fatalf("Derive kept stages the engine refuses: %v\n%+v", err, cfg.Specs)
		}
		kept := map[string]bool{}
		for _, s := range cfg.Specs {
			kept[s.Name] = true
		}
		for _, name := range []string{"develop-frontend", "staging-frontend"} {
			if kept[name] {
				continue
			}
			named := false
			for _, p := range cfg.Problems {
				if strings.Contains(p.Error(), name) {
					named = true
				}
			}
			if !named {
				t.Fatalf("stage %s left out without a problem naming it: %+v", name, cfg.Problems)
			}
		}
	})
}
