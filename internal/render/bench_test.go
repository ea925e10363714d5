package render

import (
	"context"
	"testing"
)

// BenchmarkRender_ExampleFrontend measures what one `cmp-sidecar generate` does in process for
// the example frontend app: find the RGD, compile it, admit and render the instance.
func BenchmarkRender_ExampleFrontend(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e, err := New(examplesRepo, WithNamespace("develop"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Render(ctx, "develop/frontend"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRender_ExampleFrontendWarm renders with an engine whose RGD is already compiled:
// the per-instance cost once a definition is built (kro's build-once, evaluate-many split).
func BenchmarkRender_ExampleFrontendWarm(b *testing.B) {
	ctx := context.Background()
	e, err := New(examplesRepo, WithNamespace("develop"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Render(ctx, "develop/frontend"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Render(ctx, "develop/frontend"); err != nil {
			b.Fatal(err)
		}
	}
}
