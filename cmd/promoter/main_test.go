package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/addrtest"
	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
)

// env is a Git server and a registry for the command tests, with a promoter.yaml.
type env struct {
	config  string
	dataDir string
	regHost string
	bare    string
}

func newEnv(t *testing.T, stagesYAML string) env {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	dir := t.TempDir()
	cfg := fmt.Sprintf("git:\n  url: %s\n  author: {name: kropipe, email: kropipe@example.com}\nregistries:\n  - {host: %q, insecure: true}\nstages:\n%s",
		srv.URL("gitops.git"), host, strings.ReplaceAll(stagesYAML, "REGISTRY", host))
	path := filepath.Join(dir, "promoter.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return env{config: path, dataDir: filepath.Join(dir, "data"), regHost: host, bare: bare}
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb, func(string) string { return "" })
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

const devStage = `  - name: develop-frontend
    image: REGISTRY/team/frontend
    constraint: "^1.2"
    file: develop/frontend/instance.yaml
`

func TestCommands_LocalModeStatusRunRollbackPromote(t *testing.T) {
	e := newEnv(t, devStage)
	flags := []string{"--config", e.config, "--data-dir", e.dataDir, "--log-level", "error"}
	out, err := run(t, append([]string{"status"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "STAGE") || !strings.Contains(out, "develop-frontend  1.2.1    1.2.2      promote") {
		t.Fatalf("status:\n%s", out)
	}
	out, err = run(t, append([]string{"run", "--once"}, flags...)...)
	if err != nil || !strings.Contains(out, "promoted 1.2.1 → 1.2.2") {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"rollback", "develop-frontend"}, flags...)...)
	if err != nil || !strings.Contains(out, "rolled back develop-frontend: 1.2.2 → 1.2.1") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"promote", "develop-frontend", "1.2.2"}, flags...)...)
	if err != nil || !strings.Contains(out, "promoted develop-frontend: 1.2.1 → 1.2.2") {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"history", "develop-frontend"}, flags...)...)
	if err != nil || strings.Count(out, "\n") != 4 || !strings.Contains(out, "rollback") {
		t.Fatalf("history: %v\n%s", err, out)
	}
	log, err := gitserver.GitOutput(context.Background(), e.bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	want := "Promote image from 1.2.1 to 1.2.2\nRoll back image from 1.2.2 to 1.2.1\nPromote image from 1.2.1 to 1.2.2\nSeed repository\n"
	if log != want {
		t.Fatalf("git log:\n%s\nwant:\n%s", log, want)
	}
}

// An action names the value it expects the stage to run (--expect, else what status shows):
// when Git holds another, nothing is committed and the error says what the stage runs now.
func TestCommands_ActionsOnAMovedStageDoNothing(t *testing.T) {
	e := newEnv(t, devStage)
	flags := []string{"--config", e.config, "--data-dir", e.dataDir, "--log-level", "error"}
	if out, err := run(t, append([]string{"run", "--once"}, flags...)...); err != nil {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	before, err := gitserver.GitOutput(context.Background(), e.bare, "rev-parse", "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"rollback", "develop-frontend", "--expect", "1.2.1"},
		{"promote", "develop-frontend", "1.2.1", "--expect", "1.2.1"},
		{"approve", "develop-frontend", "1.2.1", "--expect", "1.2.1"},
	} {
		_, err := run(t, append(args, flags...)...)
		if err == nil || !strings.Contains(err.Error(), `stage "develop-frontend" now runs 1.2.2, you expected 1.2.1`) || !strings.Contains(err.Error(), "nothing was done") {
			t.Errorf("%v: %v; want the stage moved, nothing done", args, err)
		}
	}
	after, err := gitserver.GitOutput(context.Background(), e.bare, "rev-parse", "main")
	if err != nil || after != before {
		t.Errorf("Git moved from %s to %s (%v)", before, after, err)
	}
}

func TestRunOnce_ExitsNonZeroWhenAStageFails(t *testing.T) {
	e := newEnv(t, devStage+`  - name: qa-frontend
    image: REGISTRY/team/frontend
    file: qa/frontend/instance.yaml
`)
	out, err := run(t, "run", "--once", "--config", e.config, "--data-dir", e.dataDir, "--log-level", "error")
	if err == nil || !strings.Contains(err.Error(), "1 stage(s) failed") {
		t.Fatalf("run --once: %v", err)
	}
	if !strings.Contains(out, `stage "qa-frontend"`) || !strings.Contains(out, "qa/frontend/instance.yaml") || !strings.Contains(out, "promoted 1.2.1 → 1.2.2") {
		t.Fatalf("table:\n%s", out)
	}
}

func TestRun_ServesTheAPIAndStopsOnCancel(t *testing.T) {
	e := newEnv(t, devStage)
	s := serveUntilPromoted(t, e, "--interval", "1h")
	addr := s.addr
	// The commands reach it through --addr.
	got, err := run(t, "status", "--addr", addr)
	if err != nil || !strings.Contains(got, "develop-frontend  1.2.2") {
		t.Fatalf("status --addr: %v\n%s", err, got)
	}
	got, err = run(t, "pause", "develop-frontend", "--addr", addr)
	if err != nil || got != "develop-frontend paused\n" {
		t.Fatalf("pause --addr: %v %q", err, got)
	}
	s.stop(t)
}

func TestRun_RefusesAReachableAddressWithoutAToken(t *testing.T) {
	e := newEnv(t, devStage)
	_, err := run(t, "run", "--config", e.config, "--data-dir", e.dataDir, "--addr", "0.0.0.0:0", "--log-level", "error")
	if err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("run on 0.0.0.0 without a token: %v", err)
	}
}

// --interval 0 means "no polling, passes on notifications only": without the listener
// nothing would ever start a pass, so it is refused, naming the flag to add.
func TestRun_IntervalZeroNeedsTheNotificationListener(t *testing.T) {
	e := newEnv(t, devStage)
	_, err := run(t, "run", "--config", e.config, "--data-dir", e.dataDir, "--addr", "127.0.0.1:0", "--interval", "0", "--log-level", "error")
	if err == nil || !strings.Contains(err.Error(), "--webhook-addr") {
		t.Fatalf("run --interval 0 without --webhook-addr: %v", err)
	}
}

func TestCommands_BadConfigNamesTheFileAndStage(t *testing.T) {
	e := newEnv(t, "  - {name: dev, image: REGISTRY/team/frontend, strategy: newest-first}\n")
	_, err := run(t, "status", "--config", e.config, "--data-dir", e.dataDir)
	if err == nil || !strings.Contains(err.Error(), "promoter.yaml") || !strings.Contains(err.Error(), `stage "dev"`) || !strings.Contains(err.Error(), "strategy") {
		t.Fatalf("error %v", err)
	}
}

func TestVersion_Prints(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "promoter ") {
		t.Fatalf("%q %v", out, err)
	}
}

// The controller takes --interval 0 the same way: refused without the notification listener,
// which is the only thing that would start a pass for a new tag.
func TestController_IntervalZeroNeedsTheNotificationListener(t *testing.T) {
	// A kubeconfig naming a server nobody listens at: the flags are refused before any request.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "controller", "--interval", "0", "--namespace", "kropipe", "--kubeconfig", kubeconfig, "--log-level", "error")
	if err == nil || !strings.Contains(err.Error(), "--webhook-addr") {
		t.Fatalf("controller --interval 0 without --webhook-addr: %v", err)
	}
}

// serving is `promoter run` serving e's stage in this process until stop.
type serving struct {
	addr string
	errb *bytes.Buffer // its log
	stop func(t *testing.T)
}

// serveUntilPromoted starts `promoter run` on e with args added and waits until its API
// shows develop-frontend promoted to 1.2.2.
func serveUntilPromoted(t *testing.T, e env, args ...string) serving {
	t.Helper()
	return serveUntil(t, e.config, e.dataDir, "promoter never promoted", func(ctx context.Context, c *api.Client) (bool, string) {
		sts, err := c.Stages(ctx)
		return err == nil && len(sts) == 1 && sts[0].CurrentTag == "1.2.2", fmt.Sprintf("%v %+v", err, sts)
	}, args...)
}

// serveUntil starts `promoter run` on config and dataDir with args added, on a free --addr,
// and waits (20 s at most, else fails saying what and the last answer) until done holds on
// its API; stop cancels it and fails the test unless it returns nil within 15 s.
func serveUntil(t *testing.T, config, dataDir, what string, done func(context.Context, *api.Client) (bool, string), args ...string) serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb, func(string) string { return "" })
	addr := addrtest.Free(t)
	cmd.SetArgs(append([]string{"run", "--config", config, "--data-dir", dataDir, "--addr", addr}, args...))
	exited := make(chan error, 1)
	go func() { exited <- cmd.ExecuteContext(ctx) }()
	c := api.NewClient(addr, "", nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, last := done(ctx, c)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s\n%s", what, last, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return serving{addr: addr, errb: &errb, stop: func(t *testing.T) {
		t.Helper()
		cancel()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("run returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("run did not stop on cancel")
		}
	}}
}
