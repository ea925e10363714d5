package argocd

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// BenchmarkDerive derives a large installation: one ApplicationSet, 100
// services × 4 environments, each environment following the previous one.
// The watcher runs this after every debounced change.
func BenchmarkDerive(b *testing.B) {
	envs := []string{"develop", "staging", "preprod", "prod"}
	set := appset("services", map[string]string{AnnConstraint: "^1.2", AnnSoak: "10m"})
	var apps []*unstructured.Unstructured
	for s := range 100 {
		svc := fmt.Sprintf("svc%03d", s)
		for i, env := range envs {
			ann := map[string]string{AnnImage: img(svc)}
			if i > 0 {
				ann[AnnUpstream] = envs[i-1] + "-" + svc
			}
			apps = append(apps, ownedBy(app(env+"-"+svc, env+"/"+svc, ann), "services"))
		}
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set})
	if len(cfg.Specs) != 400 {
		b.Fatalf("%d stages, problems %v", len(cfg.Specs), cfg.Problems[:min(3, len(cfg.Problems))])
	}
	b.ReportAllocs()
	for b.Loop() {
		Derive(apps, []*unstructured.Unstructured{set})
	}
}
