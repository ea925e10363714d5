package warehouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// tagMany tags one image n times as 1.<i/100>.<i%100> and returns the tag names.
func tagMany(b *testing.B, reg *testRegistry, repo string, n int) []string {
	img := testImage(b, t0)
	tags := make([]string, n)
	for i := range n {
		tags[i] = fmt.Sprintf("1.%d.%d", i/100, i%100)
	}
	reg.push(b, repo, img, tags...)
	return tags
}

// BenchmarkDiscover_Semver1000Tags is one poll of a semver stage: one tag-list
// page of 1,000 tags, ranking, and one HEAD of the winner. The rate limit is
// off so the figure is the engine's, not the limiter's.
func BenchmarkDiscover_Semver1000Tags(b *testing.B) {
	reg := newTestRegistry(b)
	tagMany(b, reg, "team/many", 1000)
	w, _ := newTestWarehouse(b, WithRegistry(reg.host, RegistryConfig{RateLimit: -1}))
	ctx := context.Background()
	image := reg.host + "/team/many"
	sel := Selection{Constraint: "~1.5"}
	if f, _, err := w.Discover(ctx, image, sel); err != nil || f.Tag != "1.5.99" {
		b.Fatalf("warm-up: %v, %v", f, err)
	}
	reg.resetCount()
	for b.Loop() {
		if _, _, err := w.Discover(ctx, image, sel); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reg.resetCount())/float64(b.N), "requests/op")
}

// newestRepo pushes n images built an hour apart, sharing one layer so the
// setup stays fast; only their configs (and so digests) differ.
func newestRepo(b *testing.B, reg *testRegistry, repo string, n int) {
	base := testImage(b, t0)
	for i := range n {
		img, err := mutate.CreatedAt(base, v1.Time{Time: t0.Add(time.Duration(i) * time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		ref, err := name.NewTag(fmt.Sprintf("%s/%s:build-%04d", reg.host, repo, i), name.WeakValidation)
		if err != nil {
			b.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiscover_NewestWarmCache is the newest strategy's steady state: every
// tag was seen before, so a poll is one tag list and one HEAD; no manifest or
// config is read again (requests/op shows it).
func BenchmarkDiscover_NewestWarmCache(b *testing.B) {
	reg := newTestRegistry(b)
	newestRepo(b, reg, "team/builds", 200)
	w, _ := newTestWarehouse(b, WithRegistry(reg.host, RegistryConfig{RateLimit: -1}))
	ctx := context.Background()
	image := reg.host + "/team/builds"
	sel := Selection{Strategy: StrategyNewest}
	if f, _, err := w.Discover(ctx, image, sel); err != nil || f.Tag != "build-0199" {
		b.Fatalf("warm-up: %v, %v", f, err)
	}
	reg.resetCount()
	for b.Loop() {
		if _, _, err := w.Discover(ctx, image, sel); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reg.resetCount())/float64(b.N), "requests/op")
}

// BenchmarkDiscover_NewestColdCache is the first poll of the same repository
// (a new Warehouse each time): every manifest and config is read. Compare with
// BenchmarkDiscover_NewestWarmCache.
func BenchmarkDiscover_NewestColdCache(b *testing.B) {
	reg := newTestRegistry(b)
	newestRepo(b, reg, "team/builds", 200)
	ctx := context.Background()
	image := reg.host + "/team/builds"
	sel := Selection{Strategy: StrategyNewest}
	reg.resetCount()
	for b.Loop() {
		w, _ := newTestWarehouse(b, WithRegistry(reg.host, RegistryConfig{RateLimit: -1}))
		if _, _, err := w.Discover(ctx, image, sel); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(reg.resetCount())/float64(b.N), "requests/op")
}
