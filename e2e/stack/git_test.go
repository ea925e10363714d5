package stack

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// A repository told to refuse pushes declines them as a Git host does, with its message, while
// clones still work; told to accept them again, the same push goes through.
func TestGitServer_RefusesPushesUntilAccepted(t *testing.T) {
	ctx := context.Background()
	g, err := StartGitServer(filepath.Join(t.TempDir(), "git"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.CreateRepo(ctx, "gitops"); err != nil {
		t.Fatal(err)
	}
	co, err := g.Clone(ctx, "gitops", filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := co.CommitAndPush(ctx, "seed"); err != nil {
		t.Fatal(err)
	}

	if err := g.RefusePushes("gitops", "main is frozen for the release"); err != nil {
		t.Fatal(err)
	}
	_, err = co.CommitAndPush(ctx, "refused")
	if err == nil || !strings.Contains(err.Error(), "main is frozen for the release") || !strings.Contains(err.Error(), "pre-receive hook declined") {
		t.Fatalf("push while refusing: %v, want git's decline with the message", err)
	}
	if _, err := g.Clone(ctx, "gitops", filepath.Join(t.TempDir(), "b")); err != nil {
		t.Fatalf("clone while refusing pushes: %v", err)
	}

	if err := g.AcceptPushes("gitops"); err != nil {
		t.Fatal(err)
	}
	if _, err := runGit(ctx, co.Dir, "push", "--quiet", "origin", "HEAD:main"); err != nil {
		t.Fatalf("push after accepting again: %v", err)
	}
	if err := g.AcceptPushes("gitops"); err != nil {
		t.Fatalf("accepting twice: %v", err)
	}
}
