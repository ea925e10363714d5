package stack

import (
	"context"
	"errors"
	"strings"
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
	p, err := startProcess("stubborn", dir, dir, "/bin/sh", []string{"-c", `trap "" TERM; echo trapped; sleep 60 & wait`}, nil)
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
	start := time.Now()
	p.Stop()
	if exited, _ := p.Exited(); !exited {
		t.Fatal("process still running after Stop")
	}
	if d := time.Since(start); d < stopGrace || d > stopGrace+5*time.Second {
		t.Errorf("Stop took %s, want the %s grace then SIGKILL", d, stopGrace)
	}
}
