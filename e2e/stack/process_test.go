package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcess_FailedStartNamesComponentAndShowsLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("fake-apiserver", dir, dir, "/bin/sh", []string{"-c", "echo listening failed: port taken; exit 3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	err = p.waitReady(context.Background(), 10*time.Second, func(context.Context) error { return errors.New("not ready") })
	if err == nil {
		t.Fatal("waitReady succeeded for a process that exited")
	}
	for _, want := range []string{"fake-apiserver", "exited during start", "listening failed: port taken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestProcess_StopKillsWhatIgnoresSIGTERM(t *testing.T) {
	dir := t.TempDir()
	// A child that ignores SIGTERM, like kube-apiserver and argocd-cmp-server can here.
	// The test binary itself, re-executed as a child that ignores SIGTERM (see TestMain).
	p, err := startProcess("stubborn", dir, dir, os.Args[0], []string{"-test.run=^$"}, []string{"KROPIPE_E2E_STUBBORN=1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.waitReady(context.Background(), 10*time.Second, func(context.Context) error {
		if !strings.Contains(p.Tail(5), "trapped") {
			return errNotYet
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if exited, err := p.Exited(); exited {
		t.Fatalf("exited before Stop: %v\n%s", err, p.Tail(5))
	}
	start := time.Now()
	p.Stop()
	if exited, _ := p.Exited(); !exited {
		t.Fatal("process still running after Stop")
	}
	if d := time.Since(start); d < stopGrace || d > stopGrace+5*time.Second {
		t.Errorf("Stop took %s, want the %s grace then SIGKILL", d, stopGrace)
	}
}

// TestMain turns the test binary into a process that ignores SIGTERM when asked, the way
// kube-apiserver and argocd-cmp-server can here; a shell's trap proved unreliable.
func TestMain(m *testing.M) {
	if os.Getenv("KROPIPE_E2E_STUBBORN") == "1" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("trapped")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
