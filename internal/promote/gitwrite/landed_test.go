package gitwrite

import (
	"context"
	"strings"
	"testing"
)

// A pull request merged with a merge commit leaves kropipe's commit on the pull request's
// branch: what the target branch holds is the merge commit, and that is what must be deployed.
func TestLandedOn_TheMergeCommitThatBroughtACommitIntoTheBranch(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		// land puts the proposal on main (or not) and returns what LandedOn should say.
		land func(t *testing.T, f *fixture, proposal string) string
	}{{
		name: "merged with a merge commit: the merge commit",
		land: func(t *testing.T, f *fixture, proposal string) string {
			return mergeInto(t, f.bare, "main", proposal)
		},
	}, {
		name: "merged after main moved, more commits on top: still the merge commit",
		land: func(t *testing.T, f *fixture, proposal string) string {
			pushUnrelated(t, f.bare, "before.txt")
			m := mergeInto(t, f.bare, "main", proposal)
			pushUnrelated(t, f.bare, "after.txt")
			return m
		},
	}, {
		name: "a later merge of a branch started after it reaches it too: the first merge",
		land: func(t *testing.T, f *fixture, proposal string) string {
			m := mergeInto(t, f.bare, "main", proposal)
			f.git(t, "branch", "topic", "main")
			side := humanCommitOn(t, f.bare, "topic", "topic.txt")
			pushUnrelated(t, f.bare, "meanwhile.txt")
			mergeInto(t, f.bare, "main", side)
			return m
		},
	}, {
		name: "fast-forwarded (rebased, or pushed): the commit itself",
		land: func(t *testing.T, f *fixture, proposal string) string {
			f.git(t, "update-ref", "refs/heads/main", proposal)
			pushUnrelated(t, f.bare, "after.txt")
			return proposal
		},
	}, {
		name: "not merged: nothing",
		land: func(t *testing.T, f *fixture, proposal string) string {
			pushUnrelated(t, f.bare, "other.txt")
			return ""
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := open(t, f.url)
			p, err := r.Propose(ctx, "main", "kropipe/develop-frontend", "", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.land(t, f, p.Head)
			if _, err := r.History(ctx, "main", ""); err != nil { // the pass's fetch
				t.Fatal(err)
			}
			got, err := r.LandedOn(ctx, "main", p.Head)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("LandedOn(main, proposal %.8s) = %q, want %q\n%s", p.Head, got, want, f.git(t, "log", "--graph", "--format=%h %s", "main"))
			}
		})
	}
}

// mergeInto merges commit into branch of the bare repository with a merge commit, as a forge's
// merge button does, and returns the merge commit.
func mergeInto(t *testing.T, bare, branch, commit string) string {
	t.Helper()
	ctx := context.Background()
	run := func(args ...string) string {
		out, err := execGit(ctx, []string{"GIT_DIR=" + bare}, args...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	base := run("rev-parse", "refs/heads/"+branch)
	tree := strings.Fields(run("merge-tree", "--write-tree", base, commit))[0]
	merge := run("commit-tree", tree, "-p", base, "-p", commit, "-m", "Merge pull request")
	run("update-ref", "refs/heads/"+branch, merge, base)
	return merge
}
