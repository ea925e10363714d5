package faults

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// TestConcurrentWriters_AllLand runs the promoter while a human pushes with plain git
// to the same branch — other lines of the very files the promoter edits, and other
// files — and new versions keep arriving. Every human commit and every promotion
// must land.
func TestConcurrentWriters_AllLand(t *testing.T) {
	const humanCommits = 30
	// The first promoter pushes each meet a human commit that lands just before them, on
	// another line of a file the promoter edits: the promoter must re-apply on top.
	var interpose atomic.Pointer[func()]
	hook := gitserver.WithRequestHook(func(r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") && strings.HasPrefix(r.UserAgent(), "go-git") {
			if f := interpose.Load(); f != nil {
				(*f)()
			}
		}
	})
	w := newWorld(t, chains(4, "develop", "staging"), "", hook)
	ctx := t.Context()

	dir := t.TempDir()
	if err := gitserver.Git(ctx, "", "clone", "--quiet", w.git.URL("gitops.git"), dir); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := gitserver.Git(ctx, "", "clone", "--quiet", w.git.URL("gitops.git"), other); err != nil {
		t.Fatal(err)
	}
	// The two human clones take turns (one team); each still races the promoter.
	var humans sync.Mutex
	var interposed atomic.Int64
	var interposeErr atomic.Pointer[error]
	before := func() {
		n := interposed.Add(1)
		if n > 5 {
			return
		}
		// Runs inside the Git server's handler of the promoter's push, before it is
		// processed: a plain git push of its own, then the promoter's is refused.
		humans.Lock()
		defer humans.Unlock()
		f := filepath.Join(other, "develop/svc00/instance.yaml")
		steps := [][]string{{"pull", "--quiet", "--rebase", "origin", "main"}}
		for _, st := range steps {
			if err := gitserver.Git(ctx, other, st...); err != nil {
				interposeErr.Store(&err)
				return
			}
		}
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		for j, l := range lines {
			if strings.HasPrefix(l, "      port: ") {
				lines[j] = fmt.Sprintf("      port: %d", 8000+n)
			}
		}
		os.WriteFile(f, []byte(strings.Join(lines, "\n")), 0o644)
		if err := gitserver.Git(ctx, other, "commit", "--quiet", "-am", fmt.Sprintf("Human port edit %d", n)); err != nil {
			interposeErr.Store(&err)
			return
		}
		// The other human may have pushed meanwhile: rebase and push again.
		for try := 0; ; try++ {
			err := gitserver.Git(ctx, other, "push", "--quiet", "origin", "HEAD:main")
			if err == nil {
				return
			}
			if try > 20 {
				interposeErr.Store(&err)
				return
			}
			if err := gitserver.Git(ctx, other, "pull", "--quiet", "--rebase", "origin", "main"); err != nil {
				interposeErr.Store(&err)
				return
			}
		}
	}
	interpose.Store(&before)
	p := w.start(nil, "run", "--interval", "50ms", "--addr", "127.0.0.1:0", "--log-level", "debug")
	latest := map[string]int{}
	replicas := map[string]int{} // file → replicas the human wrote last
	humanRetries := 0
	start := time.Now()
	for i := range humanCommits {
		if i%5 == 0 {
			svc := w.services()[(i/5)%len(w.services())]
			latest[svc]++
			w.push(svc, fmt.Sprintf("1.%d.0", latest[svc]))
		}
		s := w.stages[i%len(w.stages)]
		subject := fmt.Sprintf("Human edit %d", i)
		humans.Lock()
		for try := 0; ; try++ {
			if try > 50 {
				t.Fatalf("%s never landed", subject)
			}
			if err := gitserver.Git(ctx, dir, "pull", "--quiet", "--rebase", "origin", "main"); err != nil {
				t.Fatal(err)
			}
			// Another line of the file the promoter edits, and a file of the human's own.
			f := filepath.Join(dir, filepath.FromSlash(s.file()))
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			for j, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), "replicas:") {
					lines[j] = fmt.Sprintf("      replicas: %d", 10+i)
				}
			}
			os.WriteFile(f, []byte(strings.Join(lines, "\n")), 0o644)
			os.WriteFile(filepath.Join(dir, "NOTES.md"), []byte(subject+"\n"), 0o644)
			if err := gitserver.Git(ctx, dir, "commit", "--quiet", "-am", subject); err != nil {
				if try > 0 {
					break // the rebase already carried it
				}
				t.Fatal(err)
			}
			if err := gitserver.Git(ctx, dir, "push", "--quiet", "origin", "HEAD:main"); err == nil {
				break
			}
			humanRetries++
			if err := gitserver.Git(ctx, dir, "reset", "--quiet", "--hard", "origin/main"); err != nil {
				t.Fatal(err)
			}
		}
		humans.Unlock()
		replicas[s.file()] = 10 + i
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("promoter: %v\n%s", err, p.stderr)
	}
	want := map[string]string{}
	for _, s := range w.stages {
		want[s.name] = fmt.Sprintf("1.%d.0", latest[s.service])
		if latest[s.service] == 0 {
			want[s.name] = "1.0.0"
		}
	}
	w.converge(want, 4)
	n := w.checkHistory(nil)
	log := w.gitOut("log", "--format=%s", "main")
	for i := range humanCommits {
		if !strings.Contains(log, fmt.Sprintf("Human edit %d\n", i)) {
			t.Errorf("human commit %d is lost", i)
		}
	}
	if err := interposeErr.Load(); err != nil {
		t.Fatalf("the interposed human push: %v", *err)
	}
	for n := 1; n <= min(5, int(interposed.Load())); n++ {
		if !strings.Contains(log, fmt.Sprintf("Human port edit %d\n", n)) {
			t.Errorf("interposed human commit %d is lost", n)
		}
	}
	if got := w.gitOut("show", "main:develop/svc00/instance.yaml"); !strings.Contains(got, fmt.Sprintf("port: %d\n", 8000+min(5, int(interposed.Load())))) {
		t.Errorf("develop/svc00 lost the interposed port edit:\n%s", got)
	}
	for file, r := range replicas {
		if got := w.gitOut("show", "main:"+file); !strings.Contains(got, fmt.Sprintf("replicas: %d\n", r)) {
			t.Errorf("%s lost the human's replicas %d:\n%s", file, r, got)
		}
	}
	pushRetries := strings.Count(p.stderr.String(), "push refused because the branch moved")
	if pushRetries < min(5, int(interposed.Load())) {
		t.Errorf("%d promoter push retries, want one per interposed human push (%d)", pushRetries, min(5, int(interposed.Load())))
	}
	t.Logf("%d human commits (%d pushes refused and redone), %d promotions, promoter push retries %d, in %s",
		humanCommits, humanRetries, n, pushRetries, time.Since(start).Round(time.Millisecond))
}
