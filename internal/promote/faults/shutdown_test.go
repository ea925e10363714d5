package faults

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// holdList makes the first tag list wait until release is closed, and says on seen
// when it arrived.
func holdList(seen chan<- struct{}, release <-chan struct{}) fault {
	first := true
	return func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
		if kind(r) != "list" || !first {
			return false
		}
		first = false
		close(seen)
		select {
		case <-release:
		case <-p.release:
		}
		p.rp.ServeHTTP(w, r)
		return true
	}
}

// TestShutdown_SIGTERMLetsTheRunningPassFinish sends SIGTERM while a pass waits on a
// slow registry: the pass must still commit its promotion, and the process exit 0.
func TestShutdown_SIGTERMLetsTheRunningPassFinish(t *testing.T) {
	w := newWorld(t, chains(1, "develop"), "")
	w.push("svc00", "1.1.0")
	seen, release := make(chan struct{}), make(chan struct{})
	w.proxy.set(holdList(seen, release))
	p := w.start(nil, "run", "--interval", "1h", "--addr", "127.0.0.1:0", "--shutdown-grace", "20s")
	select {
	case <-seen:
	case <-time.After(time.Minute):
		t.Fatalf("the pass never asked the registry\n%s", p.stderr)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The registry answers a moment after the signal: a slow registry, not a test wait.
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr)
	}
	if got := w.values()["develop-svc00"]; got != "1.1.0" {
		t.Fatalf("the pass running at SIGTERM did not finish: develop-svc00 holds %s\n%s", got, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "letting the running pass finish") || strings.Contains(p.stderr.String(), "context canceled") {
		t.Errorf("log:\n%s", p.stderr)
	}
}

// TestShutdown_GraceOverCancelsThePass: a pass stuck past --shutdown-grace is
// cancelled, nothing half-written, and the process exits soon after the grace.
func TestShutdown_GraceOverCancelsThePass(t *testing.T) {
	w := newWorld(t, chains(1, "develop"), "")
	w.push("svc00", "1.1.0")
	seen, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	w.proxy.set(holdList(seen, release))
	p := w.start(nil, "run", "--interval", "1h", "--addr", "127.0.0.1:0", "--shutdown-grace", "500ms", "--registry-timeout", "10m")
	select {
	case <-seen:
	case <-time.After(time.Minute):
		t.Fatalf("the pass never asked the registry\n%s", p.stderr)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("exit %s after SIGTERM with a 500ms grace", took)
	}
	if !strings.Contains(p.stderr.String(), "shutdown grace over; cancelling the running pass") {
		t.Errorf("log:\n%s", p.stderr)
	}
	if got := w.values()["develop-svc00"]; got != "1.0.0" || len(w.promotions()) != 0 {
		t.Errorf("develop-svc00 holds %s after a cancelled pass", got)
	}
}

// TestShutdown_SecondSignalEndsAtOnce: an operator pressing Ctrl-C twice does not
// wait for the grace.
func TestShutdown_SecondSignalEndsAtOnce(t *testing.T) {
	w := newWorld(t, chains(1, "develop"), "")
	w.push("svc00", "1.1.0")
	seen, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	w.proxy.set(holdList(seen, release))
	p := w.start(nil, "run", "--interval", "1h", "--addr", "127.0.0.1:0", "--shutdown-grace", "10m")
	select {
	case <-seen:
	case <-time.After(time.Minute):
		t.Fatalf("the pass never asked the registry\n%s", p.stderr)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	for !strings.Contains(p.stderr.String(), "letting the running pass finish") {
		select {
		case <-p.done:
			t.Fatalf("exited on the first signal: %v\n%s", p.err, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	p.wait(t, 10*time.Second)
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("after a second SIGINT: %v, want death by SIGINT", p.cmd.ProcessState)
	}
}

// TestPassTimeout_OnceExitsWithTheLimitNamed: a pass that outlives --pass-timeout
// ends `run --once` with an error naming the flag.
func TestPassTimeout_OnceExitsWithTheLimitNamed(t *testing.T) {
	w := newWorld(t, chains(1, "develop"), "")
	w.proxy.set(onKind("list", -1, hung))
	start := time.Now()
	p, err := w.once(nil, "--pass-timeout", "1s", "--registry-timeout", "10m")
	if err == nil || !strings.Contains(p.stderr.String(), "the pass did not finish within --pass-timeout (1s)") {
		t.Fatalf("run --once: %v\n%s", err, p.stderr)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %s", took)
	}
}

// TestTargetFile_DuplicateKeysAndHugeFilesAreRefused: the binary names file, line and
// key, and commits nothing.
func TestTargetFile_DuplicateKeysAndHugeFilesAreRefused(t *testing.T) {
	w := newWorld(t, chains(3, "develop"), "")
	for _, svc := range w.services() {
		w.push(svc, "1.1.0")
	}
	dir := t.TempDir()
	ctx := t.Context()
	if err := gitserver.Git(ctx, "", "clone", "--quiet", w.git.URL("gitops.git"), dir); err != nil {
		t.Fatal(err)
	}
	dup := filepath.Join(dir, "develop/svc00/instance.yaml")
	b, _ := os.ReadFile(dup)
	os.WriteFile(dup, []byte(strings.Replace(string(b), "      replicas: 2\n", "      replicas: 2\n      tag: \"0.9.0\"\n", 1)), 0o644)
	huge := filepath.Join(dir, "develop/svc01/instance.yaml")
	b, _ = os.ReadFile(huge)
	os.WriteFile(huge, append(b, []byte("# "+strings.Repeat("x", 2<<20)+"\n")...), 0o644)
	for _, args := range [][]string{{"commit", "--quiet", "-am", "Hand edits"}, {"push", "--quiet", "origin", "main"}} {
		if err := gitserver.Git(ctx, dir, args...); err != nil {
			t.Fatal(err)
		}
	}
	p, err := w.once(nil)
	out := p.stdout.String()
	if err == nil || !strings.Contains(out, `"spec.values.deployment" has "tag" 2 times (lines 10, 12)`) || !strings.Contains(out, "develop/svc00/instance.yaml") ||
		!strings.Contains(out, "file too large") || !strings.Contains(out, "develop/svc01/instance.yaml") {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	ps := w.promotions()
	if len(ps) != 1 || ps[0].stage != "develop-svc02" {
		t.Errorf("promotions %+v, want only develop-svc02's", ps)
	}
}
