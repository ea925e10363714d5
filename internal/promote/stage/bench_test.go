package stage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkReconcile measures one pass over n stages in one repository: "due" has
// every stage take a new tag (n commits, one push), "steady" finds nothing to do.
// KROPIPE_BENCH_LARGE=1 adds 1,000 stages.
func BenchmarkReconcile(b *testing.B) {
	sizes := []int{10, 100}
	if os.Getenv("KROPIPE_BENCH_LARGE") != "" {
		sizes = append(sizes, 1000) // the 1,000 stages; slow to set up
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("due/stages=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := benchEngine(b, n)
				b.StartTimer()
				if err := e.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("steady/stages=%d", n), func(b *testing.B) {
			e := benchEngine(b, n)
			if err := e.Reconcile(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := e.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchEngine returns an engine for n stages, each with its own folder and image.
func benchEngine(b *testing.B, n int) *Engine {
	b.Helper()
	seed := b.TempDir()
	for i := 0; i < n; i++ {
		dir := filepath.Join(seed, "develop", fmt.Sprintf("svc%03d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		body := "spec:\n  values:\n    deployment:\n      # bumped by the promoter\n      tag: \"1.2.1\"\n"
		if err := os.WriteFile(filepath.Join(dir, "instance.yaml"), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	f := newFixture(b)
	if _, err := f.git.NewBareRepo(context.Background(), "bench.git", seed); err != nil {
		b.Fatal(err)
	}
	f.url = f.git.URL("bench.git")
	specs := make([]Spec, n)
	for i := range specs {
		svc := fmt.Sprintf("svc%03d", i)
		f.reg.push(b, "team/"+svc, "1.2.2")
		specs[i] = f.spec("develop-"+svc, "develop/"+svc, svc)
	}
	return f.engine(specs)
}
