package gitwrite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/yamledit"
)

// benchFile is the path of generated file i: 100 directories of 100 apps.
func benchFile(i int) string { return fmt.Sprintf("env-%02d/app-%02d/instance.yaml", i/100, i%100) }

// generateRepo fills the bare repository with files files in one commit, then
// commits-1 commits that each bump one file's tag, with git fast-import (seconds,
// where committing through porcelain would take minutes).
func generateRepo(tb testing.TB, bare string, files, commits int) {
	tb.Helper()
	cmd := execGit(context.Background(), []string{"GIT_DIR=" + bare}, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	data := func(s string) { fmt.Fprintf(w, "data %d\n%s\n", len(s), s) }
	content := func(i, version int) string {
		app := fmt.Sprintf("app-%d", i)
		return strings.Replace(fmt.Sprintf(instance, app, app), `"1.2.1"`, fmt.Sprintf(`"1.0.%d"`, version), 1)
	}
	for c := 0; c < commits; c++ {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter gen <gen@example.com> %d +0000\n", ts+int64(c))
		data(fmt.Sprintf("generated commit %d", c))
		if c == 0 {
			for i := 0; i < files; i++ {
				fmt.Fprintf(w, "M 100644 inline %s\n", benchFile(i))
				data(content(i, 0))
			}
			continue
		}
		i := c % files
		fmt.Fprintf(w, "M 100644 inline %s\n", benchFile(i))
		data(content(i, c))
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		tb.Fatal(err)
	}
	// A real server has a delta-compressed pack; fast-import's is not.
	if out, err := execGit(context.Background(), []string{"GIT_DIR=" + bare}, "repack", "-a", "-d", "-q").CombinedOutput(); err != nil {
		tb.Fatalf("repack: %v: %s", err, out)
	}
}

func benchServer(b *testing.B, files, commits int) *fixture {
	b.Helper()
	srv := gitserver.StartTB(b)
	bare, err := srv.NewBareRepo(context.Background(), "big.git", "")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	generateRepo(b, bare, files, commits)
	b.Logf("generated %d files, %d commits in %s", files, commits, time.Since(start).Round(time.Millisecond))
	return &fixture{srv: srv, url: srv.URL("big.git"), bare: bare}
}

func benchChange(i, n int) Change {
	return Change{
		Stage: fmt.Sprintf("stage-%d", i), File: benchFile(i), Key: "spec.values.deployment.tag",
		Image: "registry.example.com/team/app", Tag: fmt.Sprintf("2.%d.%d", n, i),
	}
}

// BenchmarkPromotion_LargeRepo times one promotion (fetch, edit, commit, push) on a
// repository of 10,000 files and 5,000 commits: the persistent clone against the
// fresh-clone method other tools use (git clone --depth 1, edit, commit, push).
func BenchmarkPromotion_LargeRepo(b *testing.B) {
	f := benchServer(b, 10000, 5000)
	ctx := context.Background()
	round := 0

	b.Run("persistent-clone", func(b *testing.B) {
		start := time.Now()
		r, err := Open(ctx, b.TempDir(), f.url)
		if err != nil {
			b.Fatal(err)
		}
		firstClone := time.Since(start)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			round++
			res, err := r.Apply(ctx, "main", benchChange(i%10000, round))
			if err != nil || res[0].Commit == "" {
				b.Fatalf("%v %+v", err, res)
			}
		}
		b.StopTimer()
		// After the loop: ResetTimer would clear it.
		b.ReportMetric(firstClone.Seconds(), "first-clone-s")
	})

	b.Run("fresh-clone-cli", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := filepath.Join(b.TempDir(), "work")
			round++
			c := benchChange(i%10000, round)
			run := func(args ...string) {
				cmd := execGit(ctx, nil, args...)
				cmd.Dir = dir
				if args[0] == "clone" {
					cmd.Dir = ""
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("git %v: %v: %s", args, err, out)
				}
			}
			run("clone", "--quiet", "--depth", "1", "--branch", "main", f.url, dir)
			if _, err := yamledit.SetFile(filepath.Join(dir, c.File), c.Key, c.Tag); err != nil {
				b.Fatal(err)
			}
			run("commit", "--quiet", "-am", "Promote image to "+c.Tag)
			run("push", "--quiet", "origin", "main")
			os.RemoveAll(dir)
		}
	})
}

// BenchmarkPromotion_1000Stages times 1,000 stages, each with a new tag, in one repo of
// 1,000 files: one Apply, 1,000 commits, one push. It reports the peak heap.
func BenchmarkPromotion_1000Stages(b *testing.B) {
	const stages = 1000
	f := benchServer(b, stages, 1)
	ctx := context.Background()
	round := 0 // tags must be new in every round, across b.N rounds too
	// A sub-benchmark, so the repository is generated once, not once per b.N round.
	b.Run("one-apply", func(b *testing.B) {
		r, err := Open(ctx, b.TempDir(), f.url)
		if err != nil {
			b.Fatal(err)
		}
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
				}
			}
		}()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		pushes := f.srv.Pushes("big.git")
		b.ResetTimer()
		for n := 0; n < b.N; n++ {
			round++
			changes := make([]Change, stages)
			for i := range changes {
				changes[i] = benchChange(i, round)
			}
			res, err := r.Apply(ctx, "main", changes...)
			if err != nil {
				b.Fatal(err)
			}
			if res[stages-1].Commit == "" {
				b.Fatal("last stage not committed")
			}
		}
		b.StopTimer()
		close(stop)
		wg.Wait()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MB/op")
		b.ReportMetric(float64(f.srv.Pushes("big.git")-pushes)/float64(b.N), "pushes/op")
	})
}

// BenchmarkHistory_5000Commits times History (fetch with nothing new, then the walk for the
// Kropipe trailers) on a branch of 5,000 commits: what every pass and every verification asks.
func BenchmarkHistory_5000Commits(b *testing.B) {
	f := benchServer(b, 100, 5000)
	r := open(b, f.url)
	ctx := context.Background()
	if _, err := r.Apply(ctx, "main", benchChange(1, 1)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		recs, err := r.History(ctx, "main", "stage-1")
		if err != nil || len(recs) != 1 {
			b.Fatalf("history: %v %v", recs, err)
		}
	}
}

// BenchmarkBuildPack builds 1,000 promotion commits, one per app, on a repository held in
// memory and writes their pack: the apps side by side in one folder of 1,000 or 10,000
// (every commit rewrites that folder's tree) or nested 100 to a folder. It reports the
// pack's bytes and the peak heap. The gogit-window variants pack the same commits with
// go-git's encoder (window 0: no deltas, what gitwrite did before; 10: git's default
// window), for comparison.
func BenchmarkBuildPack(b *testing.B) {
	const commits = 1000
	for _, tc := range []struct {
		name   string
		width  int // apps in the repository
		folder func(int) string
		gogit  int // -1: gitwrite's pack; else go-git's encoder with this window
	}{
		{"flat-1000", 1000, flatFolder, -1},
		{"flat-10000", 10000, flatFolder, -1},
		{"nested-1000", 1000, nestedFolder, -1},
		{"flat-1000/gogit-window=0", 1000, flatFolder, 0},
		{"flat-1000/gogit-window=10", 1000, flatFolder, 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st := memory.NewStorage()
			base := memoryRepo(b, st, tc.width, tc.folder)
			r := &Repo{o: options{authorName: "kropipe", authorEmail: "kropipe@example.com", clock: clock.RealClock{}}}
			changes := make([]Change, commits)
			for i := range changes {
				changes[i] = promote(fmt.Sprintf("s%05d", i), tc.folder(i)+"/instance.yaml", "1.3.0")
			}
			var packBytes int64
			var peak uint64
			b.ReportAllocs()
			for b.Loop() {
				runtime.GC()
				results, static := prepare(changes)
				ov := newPackingOverlay(st)
				if tc.gogit >= 0 {
					ov = newOverlay(st)
				}
				if _, _, err := r.build(ov, base, results, static, 0); err != nil {
					b.Fatal(err)
				}
				w := &countWriter{}
				if tc.gogit >= 0 {
					hashes := make([]plumbing.Hash, 0, len(ov.mem))
					for h := range ov.mem {
						hashes = append(hashes, h)
					}
					if _, err := packfile.NewEncoder(w, ov, false).Encode(hashes, uint(tc.gogit)); err != nil {
						b.Fatal(err)
					}
				} else if err := ov.pack.writeTo(w, true, ov, nil); err != nil {
					b.Fatal(err)
				}
				packBytes = w.n
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			b.ReportMetric(float64(packBytes), "pack-bytes")
			b.ReportMetric(float64(peak)/(1<<20), "heap-after-MB")
		})
	}
}

func flatFolder(i int) string   { return fmt.Sprintf("develop/svc%05d", i) }
func nestedFolder(i int) string { return fmt.Sprintf("team%03d/svc%05d", i/100, i) }

// memoryRepo stores a commit holding width apps, each in folder(i), and returns it.
func memoryRepo(tb testing.TB, st *memory.Storage, width int, folder func(int) string) plumbing.Hash {
	tb.Helper()
	type dir struct {
		entries map[string]object.TreeEntry
	}
	dirs := map[string]*dir{"": {entries: map[string]object.TreeEntry{}}}
	var ensure func(p string) *dir
	ensure = func(p string) *dir {
		if d, ok := dirs[p]; ok {
			return d
		}
		d := &dir{entries: map[string]object.TreeEntry{}}
		dirs[p] = d
		parent := ""
		if i := strings.LastIndex(p, "/"); i >= 0 {
			parent = p[:i]
		}
		ensure(parent)
		return d
	}
	for i := range width {
		app := fmt.Sprintf("svc%05d", i)
		h, err := writeBlob(st, []byte(fmt.Sprintf(instance, app, app)), plumbing.ZeroHash)
		if err != nil {
			tb.Fatal(err)
		}
		ensure(folder(i)).entries["instance.yaml"] = object.TreeEntry{Name: "instance.yaml", Mode: filemode.Regular, Hash: h}
	}
	// Write trees deepest first.
	paths := make([]string, 0, len(dirs))
	for p := range dirs {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, func(a, b string) int {
		return strings.Count(b, "/") - strings.Count(a, "/") + boolInt(a == "") - boolInt(b == "")
	})
	for _, p := range paths {
		d := dirs[p]
		t := &object.Tree{}
		for _, e := range d.entries {
			t.Entries = append(t.Entries, e)
		}
		slices.SortFunc(t.Entries, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
		obj := st.NewEncodedObject()
		if err := t.Encode(obj); err != nil {
			tb.Fatal(err)
		}
		h, err := st.SetEncodedObject(obj)
		if err != nil {
			tb.Fatal(err)
		}
		if p == "" {
			c, err := writeCommit(st, plumbing.ZeroHash, h, "seed", signature("gen", "gen@example.com", time.Unix(0, 0)), nil)
			if err != nil {
				tb.Fatal(err)
			}
			return c
		}
		parent, name := "", p
		if i := strings.LastIndex(p, "/"); i >= 0 {
			parent, name = p[:i], p[i+1:]
		}
		dirs[parent].entries[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
	}
	tb.Fatal("no root tree")
	return plumbing.ZeroHash
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
