package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	w := newWorld(t, chains(4, "develop", "staging"), "")
	ctx := t.Context()
	p := w.start(nil, "run", "--interval", "50ms", "--addr", "127.0.0.1:0", "--log-level", "debug")

	dir := t.TempDir()
	if err := gitserver.Git(ctx, "", "clone", "--quiet", w.git.URL("gitops.git"), dir); err != nil {
		t.Fatal(err)
	}
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
	for file, r := range replicas {
		if got := w.gitOut("show", "main:"+file); !strings.Contains(got, fmt.Sprintf("replicas: %d\n", r)) {
			t.Errorf("%s lost the human's replicas %d:\n%s", file, r, got)
		}
	}
	pushRetries := strings.Count(p.stderr.String(), "push refused because the branch moved")
	t.Logf("%d human commits (%d pushes refused and redone), %d promotions, promoter push retries %d, in %s",
		humanCommits, humanRetries, n, pushRetries, time.Since(start).Round(time.Millisecond))
}
