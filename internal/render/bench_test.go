package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// BenchmarkRender_NestedSaaSWarm renders kro's saas-multi-tenant example, a tenant instance
// whose resources are instances of two other RGDs, expanded level by level.
func BenchmarkRender_NestedSaaSWarm(b *testing.B) {
	ctx := context.Background()
	dir := filepath.Join(kroExamples(b), "saas-multi-tenant")
	e, err := New(dir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Render(ctx, "tenant-instance.yaml"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Render(ctx, "tenant-instance.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSplitDocuments_WebAppRGD reads the example RGD file as every render reads a file:
// the duplicate-key check (a second, yaml.v3 parse) and the YAML→JSON decoding.
func BenchmarkSplitDocuments_WebAppRGD(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(examplesRepo, "rgds", "webapp.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := splitDocuments("webapp.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRender_ExampleFrontendServer is one render-server request for the example frontend
// app once its RGD is cached: a new Engine (the repository is read again, as every request
// does) sharing the DefinitionCache. cache-bytes is what the cache charges for the RGD.
func BenchmarkRender_ExampleFrontendServer(b *testing.B) {
	ctx := context.Background()
	cache := NewDefinitionCache(0)
	render := func() {
		e, err := New(examplesRepo, WithNamespace("develop"), WithDefinitionCache(cache))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Render(ctx, "develop/frontend"); err != nil {
			b.Fatal(err)
		}
	}
	render()
	b.ReportAllocs()
	for b.Loop() {
		render()
	}
	b.ReportMetric(float64(cache.Stats().Bytes), "cache-bytes")
}

// BenchmarkRender_WholeRepositoryScan renders one app of an ApplicationSet-sized repository (the
// example plus 300 instance folders) with a warm definition cache, as the render server does per
// call: "scan" without rgd-paths (every YAML file read to find the RGDs), "rgd-paths" with the
// example's rgd-paths: rgds. The difference is what naming the RGD folders saves per generation.
func BenchmarkRender_WholeRepositoryScan(b *testing.B) {
	ctx := context.Background()
	repo := b.TempDir()
	if err := os.CopyFS(repo, os.DirFS(examplesRepo)); err != nil {
		b.Fatal(err)
	}
	inst, err := os.ReadFile(filepath.Join(repo, "develop", "frontend", "instance.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 300 {
		dir := filepath.Join(repo, "apps", fmt.Sprintf("app-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "instance.yaml"), inst, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		opts []Option
	}{{"scan", nil}, {"rgd-paths", []Option{WithRGDPaths("rgds")}}} {
		b.Run(c.name, func(b *testing.B) {
			cache := NewDefinitionCache(0)
			render := func() {
				e, err := New(repo, append([]Option{WithNamespace("develop"), WithDefinitionCache(cache)}, c.opts...)...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Render(ctx, "apps/app-7"); err != nil {
					b.Fatal(err)
				}
			}
			render()
			b.ReportAllocs()
			for b.Loop() {
				render()
			}
		})
	}
}
