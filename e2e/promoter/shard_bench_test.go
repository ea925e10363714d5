package promoter_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	argoclient "github.com/argoproj/argo-cd/v2/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// BenchmarkShards is the large-N figure of sharding: N stages (KROPIPE_SHARD_BENCH_STAGES,
// default 1000; the goal is 10000) as Applications on the real kube-apiserver, one
// folder each in one repository (stageDir), over 50 images, run by four `promoter controller --shards=16`
// replicas with the default Lease timing. It measures the time from pushing a new tag of every
// image to all N promotion commits on the server, each replica's peak RSS (sampled every
// second from its /metrics), then SIGKILLs the busiest replica and measures the takeover
// (a victim's last renewal to a survivor's acquisition) and a second round on three replicas.
// Every stage must end with exactly one commit per tag. Run once:
//
//	cd e2e && KROPIPE_SHARD_BENCH_STAGES=10000 go test -run '^$' -bench Shards -benchtime 1x -timeout 60m ./promoter
func BenchmarkShards(b *testing.B) {
	n := 1000
	if v := os.Getenv("KROPIPE_SHARD_BENCH_STAGES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("KROPIPE_SHARD_BENCH_STAGES=%q: want a number of stages", v)
		}
	}
	for range b.N {
		runShardBench(b, n, 50)
	}
}

func runShardBench(b *testing.B, n, images int) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	s := &shardRun{pipeline: &pipeline{t: b, ctx: ctx, srv: st.Git}}
	log := func(format string, args ...any) {
		b.Logf(format, args...)
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}

	// Seed: one folder per stage.
	repoName := fmt.Sprintf("bench-shards-%d", time.Now().Unix())
	if err := st.Git.CreateRepo(ctx, repoName); err != nil {
		b.Fatal(err)
	}
	co, err := st.Git.Clone(ctx, repoName, filepath.Join(b.TempDir(), repoName))
	if err != nil {
		b.Fatal(err)
	}
	s.co = co
	image := func(i int) string { return fmt.Sprintf("bench/img%d", i%images) }
	seed := seedStageFolders(b, ctx, co, n, images, stageDir, image)

	// The Applications, in a namespace Argo CD does not reconcile, with the install's Role.
	ns := fmt.Sprintf("bench-shards-%d", time.Now().Unix())
	if err := st.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	s.installPromoterRBAC()
	s.bindRole(ns)
	kubeconfig := s.kubeconfig
	cfg := *st.RestConfig
	cfg.QPS, cfg.Burst = 500, 1000
	argo, err := argoclient.NewForConfig(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	created := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				app := stageApplication(fmt.Sprintf("s%05d", i), ns, st.Git.RepoURL(repoName), stageDir(i), image(i), "10s", ns)
				app.Annotations["argocd.argoproj.io/manifest-generate-paths"] = "."
				if _, err := argo.ArgoprojV1alpha1().Applications(ns).Create(ctx, app, metav1.CreateOptions{}); err != nil {
					b.Errorf("create Application %s: %v", app.Name, err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	log("%d Applications created in %s", n, time.Since(created).Round(time.Second))

	// Four replicas, default Lease timing.
	var reps []*promoter
	start := time.Now()
	for i := range 4 {
		reps = append(reps, benchReplica(b, ctx, fmt.Sprintf("promoter-bench-%d", i), kubeconfig, ns))
	}
	defer func() {
		for _, r := range reps {
			r.Stop()
		}
	}()
	rss := newRSSSampler(ctx, reps)
	upToDate := func(pr *promoter, tag string) {
		waitUntil(b, ctx, fmt.Sprintf("all %d stages at %s on %s", n, tag, pr.Name), 40*time.Minute, func() (bool, string) {
			code, body := s.get(pr, "/api/v1/stages")
			if code != 200 {
				return false, fmt.Sprint(code)
			}
			have := strings.Count(body, `"currentTag": "`+tag+`"`)
			return have >= n, fmt.Sprintf("%d of %d", have, n)
		})
	}
	upToDate(reps[0], "1.0.0")
	log("four replicas: all %d stages checked %s after start", n, time.Since(start).Round(time.Second))

	commits := func() int {
		if err := co.Pull(ctx); err != nil {
			b.Fatal(err)
		}
		out, err := co.Git(ctx, "rev-list", "--count", seed+"..HEAD")
		if err != nil {
			b.Fatal(err)
		}
		c, _ := strconv.Atoi(strings.TrimSpace(out))
		return c
	}
	round := func(tag string, want int) time.Duration {
		pushed := time.Now()
		for i := range images {
			pushImage(b, st.RegistryAddr, image(i), tag)
		}
		waitUntil(b, ctx, fmt.Sprintf("%d commits", want), 40*time.Minute, func() (bool, string) {
			c := commits()
			return c >= want, fmt.Sprintf("%d of %d", c, want)
		})
		return time.Since(pushed)
	}
	b.ResetTimer()
	took := round("1.1.0", n)
	b.StopTimer()
	log("round 1 (4 replicas): %d promotion commits on the server %s after the pushes (%.0f/s)", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	b.ReportMetric(took.Seconds(), "s/round")
	log("peak RSS: %s", rss.report())

	// Kill the busiest replica; measure the takeover on the Leases.
	holders := map[string]int{}
	for _, l := range s.shardLeases() {
		id := ptr.Deref(l.Spec.HolderIdentity, "")
		if i := strings.LastIndex(id, "_"); i > 0 {
			holders[id[:i]]++
		}
	}
	sort.SliceStable(reps, func(i, j int) bool { return holders[reps[i].Name] > holders[reps[j].Name] })
	victim := reps[0]
	victim.Kill()
	killed := time.Now()
	lastRenew := map[string]time.Time{}
	for name, l := range s.shardLeases() {
		if strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), victim.Name+"_") {
			lastRenew[name] = l.Spec.RenewTime.Time
		}
	}
	waitUntil(b, ctx, "the victim's shards taken over", 5*time.Minute, func() (bool, string) {
		for name := range lastRenew {
			l := s.shardLeases()[name]
			if strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), victim.Name+"_") || ptr.Deref(l.Spec.HolderIdentity, "") == "" {
				return false, name
			}
		}
		return true, ""
	})
	var longest time.Duration
	for name, renewed := range lastRenew {
		l := s.shardLeases()[name]
		longest = max(longest, l.Spec.AcquireTime.Sub(renewed))
	}
	log("takeover of %s's %d shards: %s after the kill, at most %s from its last renewal to a survivor's acquisition (lease 15s)", victim.Name, len(lastRenew), time.Since(killed).Round(time.Millisecond), longest.Round(time.Millisecond))

	took2 := round("1.2.0", 2*n)
	log("round 2 (3 replicas, after the kill): %d more commits %s after the pushes", n, took2.Round(time.Millisecond))
	log("peak RSS: %s", rss.report())
	log("git push retries: %s", s.pushRetries(reps[1:]))

	// Exactly one commit per stage per tag.
	out, err := co.Git(ctx, "log", "--format=C %s", "--name-only", seed+"..HEAD")
	if err != nil {
		b.Fatal(err)
	}
	per := map[string]map[string]int{}
	subject := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "C "):
			subject = line[2:]
		case strings.HasSuffix(line, "/instance.yaml"):
			if per[line] == nil {
				per[line] = map[string]int{}
			}
			per[line][subject]++
		}
	}
	bad := 0
	for i := range n {
		f := stageDir(i) + "/instance.yaml"
		if per[f]["Promote image from 1.0.0 to 1.1.0"] != 1 || per[f]["Promote image from 1.1.0 to 1.2.0"] != 1 || len(per[f]) != 2 {
			if bad < 5 {
				b.Errorf("%s: commits %v, want one per tag", f, per[f])
			}
			bad++
		}
	}
	log("stages with other than one commit per tag: %d of %d", bad, n)
}

func benchReplica(b *testing.B, ctx context.Context, name, kubeconfig, ns string) *promoter {
	ports, err := stack.FreePorts(2)
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	proc, err := st.Run(name, st.Binaries.Promoter, []string{
		"controller",
		"--kubeconfig=" + kubeconfig,
		"--leader-elect", "--namespace=" + stack.ArgoCDNamespace, "--watch-namespaces=" + ns,
		"--insecure-registry=" + st.RegistryAddr,
		"--data-dir=" + filepath.Join(st.Dir, name),
		"--addr=" + addr, "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		"--shards=16", "--health-timeout=1h", "--log-level=warn",
	}, []string{"POD_NAME=" + name})
	if err != nil {
		b.Fatal(err)
	}
	pr := &promoter{Process: proc, addr: addr}
	waitUntil(b, ctx, name+" up", time.Minute, func() (bool, string) {
		code, _ := (&pipeline{t: b, ctx: ctx}).get(pr, "/healthz")
		return code == 200, fmt.Sprint(code)
	})
	return pr
}

// stageDir is stage i's folder: a hundred folders of a hundred, as teams nest them by
// team or service (a flat root of 10,000 folders makes every commit rewrite a 10,000-entry
// tree: gitwrite's cost, not sharding's).
func stageDir(i int) string { return fmt.Sprintf("t%02d/s%05d", i%100, i) }

// rssSampler keeps each replica's highest process_resident_memory_bytes, read every second.
type rssSampler struct {
	mu   sync.Mutex
	peak map[string]float64
}

func newRSSSampler(ctx context.Context, reps []*promoter) *rssSampler {
	r := &rssSampler{peak: map[string]float64{}}
	s := &pipeline{ctx: ctx}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			for _, pr := range reps {
				if exited, _ := pr.Exited(); exited {
					continue
				}
				_, body := s.get(pr, "/metrics")
				for _, line := range strings.Split(body, "\n") {
					if strings.HasPrefix(line, "process_resident_memory_bytes ") {
						v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
						r.mu.Lock()
						r.peak[pr.Name] = max(r.peak[pr.Name], v)
						r.mu.Unlock()
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return r
}

func (r *rssSampler) report() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for n := range r.peak {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f MiB", n, r.peak[n]/(1<<20)))
	}
	return strings.Join(parts, ", ")
}

// waitUntil polls f every 2s until it holds.
func waitUntil(b *testing.B, ctx context.Context, what string, timeout time.Duration, f func() (bool, string)) {
	deadline := time.Now().Add(timeout)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.Fatalf("waited %s for %s; last: %s", timeout, what, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
