package stage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkReconcile_ReleaseGroups measures the pass in which every member of every group has
// a new tag at once: groups×members stages, one commit per group, all in one push. It reports
// the time until all is pushed (the pass, verification included: local mode has no verify
// command here) and the process's peak RSS during the pass (VmHWM after resetting it; the
// in-memory registry serving the pass is in the process too). KROPIPE_BENCH_LARGE=1 adds the
// issue's 200 groups × 5 members (bench/release-groups.sh).
func BenchmarkReconcile_ReleaseGroups(b *testing.B) {
	sizes := []int{20}
	if os.Getenv("KROPIPE_BENCH_LARGE") != "" {
		sizes = append(sizes, 200)
	}
	const members = 5
	for _, n := range sizes {
		b.Run(fmt.Sprintf("groups=%d/members=%d", n, members), func(b *testing.B) {
			var peak float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e, f := benchGroupEngine(b, n, members)
				resetPeakRSS()
				b.StartTimer()
				start := time.Now()
				if err := e.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				b.StopTimer()
				peak = max(peak, peakRSSMiB())
				if got := len(f.subjects()); got != n {
					b.Fatalf("%d commits, want one per group (%d)", got, n)
				}
				b.ReportMetric(took.Seconds(), "s-to-all-pushed")
				b.StartTimer()
			}
			b.ReportMetric(peak, "peak-RSS-MiB")
		})
	}
}

// benchGroupEngine returns an engine for n groups of m members, each member with its own
// folder and image, every image with a new tag.
func benchGroupEngine(b *testing.B, n, m int) (*Engine, *fixture) {
	b.Helper()
	seed := b.TempDir()
	body := "spec:\n  values:\n    deployment:\n      # bumped by the promoter\n      tag: \"1.2.1\"\n"
	for g := 0; g < n; g++ {
		for j := 0; j < m; j++ {
			dir := filepath.Join(seed, "develop", fmt.Sprintf("shop%03d", g), fmt.Sprintf("svc%d", j))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "instance.yaml"), []byte(body), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	f := newFixture(b)
	bare, err := f.git.NewBareRepo(context.Background(), "bench.git", seed)
	if err != nil {
		b.Fatal(err)
	}
	f.url, f.bare = f.git.URL("bench.git"), bare
	var specs []Spec
	var groups []GroupSpec
	for g := 0; g < n; g++ {
		gs := GroupSpec{Name: fmt.Sprintf("develop/shop%03d", g)}
		for j := 0; j < m; j++ {
			svc := fmt.Sprintf("shop%03d-svc%d", g, j)
			f.reg.push(b, "team/"+svc, "1.2.2")
			s := f.spec("develop-"+svc, fmt.Sprintf("develop/shop%03d/svc%d", g, j), svc)
			specs = append(specs, s)
			gs.Members = append(gs.Members, s.Name)
		}
		groups = append(groups, gs)
	}
	return f.engine(specs, WithGroups(groups...)), f
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux: clear_refs 5).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSSMiB is VmHWM, the peak resident set size, in MiB; 0 where /proc has none.
func peakRSSMiB() float64 {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer fh.Close()
	s := bufio.NewScanner(fh)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
