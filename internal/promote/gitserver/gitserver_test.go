package gitserver

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestServer_CloneAndPush(t *testing.T) {
	ctx := context.Background()
	s := StartTB(t)
	if _, err := s.NewBareRepo(ctx, "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	if err := Git(ctx, "", "clone", "--quiet", s.URL("gitops.git"), work); err != nil {
		t.Fatal(err)
	}
	if err := Git(ctx, work, "commit", "--quiet", "--allow-empty", "-m", "second"); err != nil {
		t.Fatal(err)
	}
	if err := Git(ctx, work, "push", "--quiet", "origin", "main"); err != nil {
		t.Fatal(err)
	}
	if got := s.Pushes("gitops.git"); got != 1 {
		t.Fatalf("pushes = %d, want 1", got)
	}
	log, err := GitOutput(ctx, s.Dir("gitops.git"), "log", "--format=%s", "main")
	if err != nil || log != "second\nSeed repository\n" {
		t.Fatalf("log = %q, %v", log, err)
	}
}

func TestServer_HookRejectsPush(t *testing.T) {
	ctx := context.Background()
	s := StartTB(t)
	if _, err := s.NewBareRepo(ctx, "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	if err := s.InstallHook("gitops.git", "pre-receive", "#!/bin/sh\necho 'main is frozen' >&2\nexit 1\n"); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	if err := Git(ctx, "", "clone", "--quiet", s.URL("gitops.git"), work); err != nil {
		t.Fatal(err)
	}
	_ = Git(ctx, work, "commit", "--quiet", "--allow-empty", "-m", "second")
	err := Git(ctx, work, "push", "origin", "main")
	if err == nil || !strings.Contains(err.Error(), "main is frozen") {
		t.Fatalf("err = %v, want the hook's message", err)
	}
}

func TestServer_BasicAuthRefusesWrongPassword(t *testing.T) {
	ctx := context.Background()
	s := StartTB(t, WithBasicAuth("bot", "s3cret"))
	if _, err := s.NewBareRepo(ctx, "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	good := strings.Replace(s.URL("gitops.git"), "http://", "http://bot:s3cret@", 1)
	bad := strings.Replace(s.URL("gitops.git"), "http://", "http://bot:wrong@", 1)
	if err := Git(ctx, "", "ls-remote", good); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := Git(ctx, "", "ls-remote", bad); err == nil {
		t.Fatal("wrong password accepted")
	}
}
