package gitwrite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestPropose_PushesThePromotionToItsOwnBranchAndNeverToTheBase(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := open(t, f.url)
	base := f.head(t)

	p, err := r.Propose(ctx, "main", "kropipe/develop-frontend", "", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.head(t); got != base {
		t.Fatalf("main moved to %s; a proposal must never write the base branch", got)
	}
	if got := f.git(t, "rev-parse", "refs/heads/kropipe/develop-frontend"); got != p.Head || p.Base != base {
		t.Fatalf("branch holds %s, Proposal says head %s base %s (main %s)", got, p.Head, p.Base, base)
	}
	if parent := f.git(t, "rev-parse", p.Head+"^"); parent != base {
		t.Fatalf("the proposal's parent is %s, want main's head %s", parent, base)
	}
	if msg := f.git(t, "log", "-1", "--format=%s", p.Head); msg != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("subject %q", msg)
	}
	if diff := f.git(t, "diff", "--numstat", base, p.Head); diff != "1\t1\tdevelop/frontend/instance.yaml" {
		t.Fatalf("the proposal changes %q, want one line of one file", diff)
	}

	// A newer freight replaces the proposal in place (lease: the commit proposed), on top of
	// main as it is now.
	moved := pushUnrelated(t, f.bare, "unrelated.txt")
	p2, err := r.Propose(ctx, "main", "kropipe/develop-frontend", p.Head, promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if parent := f.git(t, "rev-parse", p2.Head+"^"); parent != moved {
		t.Fatalf("the new proposal sits on %s, want main's new head %s", parent, moved)
	}
	if got := f.git(t, "rev-parse", "refs/heads/kropipe/develop-frontend"); got != p2.Head {
		t.Fatalf("branch holds %s, want %s", got, p2.Head)
	}
}

func TestPropose_ReplacesItsOwnUnrecordedCommitButNotSomeoneElses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := open(t, f.url)
	// A run cut short: proposed, never recorded the commit (lease "").
	p, err := r.Propose(ctx, "main", "kropipe/staging", "", promote("staging", "staging/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := r.Propose(ctx, "main", "kropipe/staging", "", promote("staging", "staging/frontend/instance.yaml", "1.2.3"))
	if err != nil {
		t.Fatalf("replacing kropipe's own unrecorded proposal: %v", err)
	}
	if p2.Head == p.Head || f.git(t, "rev-parse", "refs/heads/kropipe/staging") != p2.Head {
		t.Fatalf("the branch was not replaced")
	}

	// A human adds a commit on the branch: kropipe must not overwrite it.
	human := humanCommitOn(t, f.bare, "kropipe/staging", "fix.txt")
	_, err = r.Propose(ctx, "main", "kropipe/staging", p2.Head, promote("staging", "staging/frontend/instance.yaml", "1.2.4"))
	if !errors.Is(err, ErrBranchTaken) {
		t.Fatalf("err = %v, want ErrBranchTaken", err)
	}
	if !strings.Contains(err.Error(), "kropipe/staging") || !strings.Contains(err.Error(), "delete the branch or close its pull request") {
		t.Fatalf("the error does not name the branch and what to do: %v", err)
	}
	if got := f.git(t, "rev-parse", "refs/heads/kropipe/staging"); got != human {
		t.Fatalf("the human's commit was overwritten: branch holds %s, want %s", got, human)
	}
}

func TestPropose_NothingToProposeWhenTheBaseHoldsTheValue(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	p, err := r.Propose(context.Background(), "main", "kropipe/develop", "", promote("develop", "develop/frontend/instance.yaml", "1.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Head != "" || !p.Results[0].Skipped {
		t.Fatalf("proposal %+v, want nothing proposed and the change Skipped", p)
	}
	if out := f.git(t, "branch", "--list", "kropipe/*"); out != "" {
		t.Fatalf("a branch was created: %q", out)
	}
}

func TestPropose_RefusesTheBaseAsHead(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	base := f.head(t)
	if _, err := r.Propose(context.Background(), "main", "main", "", promote("develop", "develop/frontend/instance.yaml", "1.2.2")); !errors.Is(err, ErrInvalidChange) {
		t.Fatalf("err = %v, want ErrInvalidChange", err)
	}
	if f.head(t) != base {
		t.Fatal("main moved")
	}
}

func TestDeleteBranch_OnlyWhenItHoldsWhatWasProposed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := open(t, f.url)
	p, err := r.Propose(ctx, "main", "kropipe/develop", "", promote("develop", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteBranch(ctx, "kropipe/develop", "0000000000000000000000000000000000000001"); err != nil {
		t.Fatal(err)
	}
	if f.git(t, "branch", "--list", "kropipe/develop") == "" {
		t.Fatal("deleted a branch holding something else than expected")
	}
	if err := r.DeleteBranch(ctx, "kropipe/develop", p.Head); err != nil {
		t.Fatal(err)
	}
	if out := f.git(t, "branch", "--list", "kropipe/develop"); out != "" {
		t.Fatalf("branch still there: %q", out)
	}
}

// humanCommitOn commits a file on top of branch in the bare repository, as a person would.
func humanCommitOn(t *testing.T, bare, branch, name string) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(t.TempDir(), "index")
	env := []string{"GIT_INDEX_FILE=" + idx, "GIT_DIR=" + bare, "GIT_WORK_TREE=" + dir}
	run := func(args ...string) string {
		out, err := execGit(ctx, env, args...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	ref := "refs/heads/" + branch
	run("read-tree", ref)
	run("add", name)
	tree := run("write-tree")
	parent := run("rev-parse", ref)
	commit := run("commit-tree", tree, "-p", parent, "-m", "Fix by hand")
	run("update-ref", ref, commit, parent)
	return commit
}

// A promoter killed right after pushing its proposal and restarted within the same second
// builds the very same commit again (same tree, parent, message and timestamp): the branch
// already holds it, nothing is pushed, and the clone must still know the commit, whose
// message becomes the pull request's title (Gitea refuses a request without one: 422).
func TestPropose_SameCommitAgainAfterARestartIsKnownToTheClone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	at := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 18, 47, 48, 0, time.UTC))
	// The persistent clone as the killed run left it: the pushed objects never reached it
	// (the kill came between the push and storing them). Another clone does the push.
	restarted := open(t, f.url, WithClock(at))
	killed := open(t, f.url, WithClock(at))
	p, err := killed.Propose(ctx, "main", "kropipe/develop-frontend", "", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := restarted.Propose(ctx, "main", "kropipe/develop-frontend", "", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Head != p.Head {
		t.Fatalf("the same change in the same second made %s, then %s", p.Head, again.Head)
	}
	msg, err := restarted.CommitMessage(again.Head)
	if err != nil {
		t.Fatalf("the restarted clone does not know the commit the branch holds: %v", err)
	}
	if subject, _, _ := strings.Cut(msg, "\n"); subject != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("subject %q", subject)
	}
}
