package gitwrite

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// Plan builds what Apply commits, byte for byte, and pushes nothing.
func TestPlan_IsWhatApplyCommitsWithoutPushing(t *testing.T) {
	ctx := context.Background()
	changes := func() []Change {
		missing := promote("develop-backend", "develop/backend/instance.yaml", "1.2.2")
		missing.Key = "spec.values.nothing.here"
		return []Change{
			promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"),
			missing,
			promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.1"), // holds it already
			promote("production-frontend", "production/frontend/instance.yaml", "1.2.3"),
		}
	}
	planned, applied := newFixture(t), newFixture(t)
	before := planned.head(t)
	plan, err := open(t, planned.url).Plan(ctx, "main", changes()...)
	if err != nil {
		t.Fatal(err)
	}
	if planned.head(t) != before || plan.Base != before {
		t.Fatalf("main %s, plan base %s; want both at %s: Plan pushes nothing", planned.head(t), plan.Base, before)
	}
	results, _ := open(t, applied.url).Apply(ctx, "main", changes()...)

	var commits []string // what Apply pushed, oldest first
	for i := len(results) - 1; i >= 0; i-- {
		if c := results[i].Commit; c != "" && (len(commits) == 0 || commits[0] != c) {
			commits = append([]string{c}, commits...)
		}
	}
	if len(plan.Commits) != len(commits) || len(commits) != 2 {
		t.Fatalf("plan has %d commits, Apply made %d; want 2", len(plan.Commits), len(commits))
	}
	for i, pc := range plan.Commits {
		msg, err := gitserver.GitOutput(ctx, applied.bare, "cat-file", "commit", commits[i]) // untrimmed
		if err != nil {
			t.Fatal(err)
		}
		if _, body, _ := strings.Cut(msg, "\n\n"); body != pc.Message {
			t.Errorf("commit %d: plan's message %q, Apply's %q", i, pc.Message, body)
		}
		for path, data := range pc.Files {
			if got := applied.git(t, "show", commits[i]+":"+path); got+"\n" != string(data) {
				t.Errorf("commit %d: plan's %s differs from Apply's:\n%s\n---\n%s", i, path, data, got)
			}
		}
	}
	if got := [][]int{plan.Commits[0].Changes, plan.Commits[1].Changes}; !reflect.DeepEqual(got, [][]int{{0}, {3}}) {
		t.Errorf("commits carry changes %v, want [[0] [3]]", got)
	}
	for i, r := range plan.Results {
		a := results[i]
		if r.Old != a.Old || r.Skipped != a.Skipped || (r.Err == nil) != (a.Err == nil) || r.Commit != "" {
			t.Errorf("result %d: plan %+v, Apply %+v", i, r, a)
		}
	}
}

// refusing is a Committer that refuses every commit with err.
type refusing struct {
	err   error
	calls int
}

func (r *refusing) CommitFiles(context.Context, string, string, string, map[string][]byte, bool, bool) (string, error) {
	r.calls++
	return "", r.err
}

// A forge's own refusal (rights, 5xx) is not retried at once; a branch that kept moving is,
// up to the tries.
func TestApplyThrough_RetriesOnlyABranchThatMoved(t *testing.T) {
	denied := errors.New("403 the token lacks a permission")
	for _, tt := range []struct {
		name  string
		err   error
		calls int
	}{
		{"forge refusal", denied, 1},
		{"branch moved", ErrBranchMoved, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := open(t, f.url)
			r.o.retry.Steps = 3
			c := &refusing{err: tt.err}
			results, err := r.ApplyThrough(context.Background(), c, "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
			if c.calls != tt.calls || !errors.Is(err, tt.err) || !errors.Is(results[0].Err, tt.err) || results[0].Commit != "" {
				t.Fatalf("%d calls, err %v, result %+v; want %d calls and the error on the change", c.calls, err, results[0], tt.calls)
			}
		})
	}
}

// bareCommitter commits into a bare repository with git plumbing as GitHub's Git Data API
// does: a tree from the parent's with the files put in, a commit, the branch moved only as
// a fast forward (ErrBranchMoved otherwise). after runs once after the first commit landed.
type bareCommitter struct {
	t     *testing.T
	bare  string
	calls int
	after func()
}

func (c *bareCommitter) git(stdin string, env []string, args ...string) (string, error) {
	cmd := execGit(context.Background(), append([]string{"GIT_DIR=" + c.bare}, env...), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func (c *bareCommitter) CommitFiles(_ context.Context, branch, parent, message string, files map[string][]byte, create, force bool) (string, error) {
	c.calls++
	must := func(out string, err error) string {
		if err != nil {
			c.t.Fatalf("git: %v", err)
		}
		return out
	}
	env := []string{"GIT_INDEX_FILE=" + c.t.TempDir() + "/index"}
	must(c.git("", env, "read-tree", parent))
	for p, data := range files {
		blob := must(c.git(string(data), nil, "hash-object", "-w", "--stdin"))
		must(c.git("", env, "update-index", "--add", "--cacheinfo", "100644,"+blob+","+p))
	}
	tree := must(c.git("", env, "write-tree"))
	commit := must(c.git(message, []string{"GIT_AUTHOR_NAME=kropipe[bot]", "GIT_AUTHOR_EMAIL=bot@example.com"}, "commit-tree", tree, "-p", parent))
	cur := must(c.git("", nil, "rev-parse", "refs/heads/"+branch))
	if _, err := c.git("", nil, "merge-base", "--is-ancestor", cur, commit); err != nil && !force {
		return "", ErrBranchMoved
	}
	must(c.git("", nil, "update-ref", "refs/heads/"+branch, commit, cur))
	if c.after != nil {
		after := c.after
		c.after = nil
		after()
	}
	return commit, nil
}

// A batch whose branch moves after its first commit landed: the rest is built again on the
// new head, and every change lands once.
func TestApplyThrough_BuildsWhatIsLeftAgainWhenTheBranchMovesMidBatch(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	var theirs string
	c := &bareCommitter{t: t, bare: f.bare}
	c.after = func() { theirs = pushUnrelated(t, f.bare, "notes.txt") }
	results, err := r.ApplyThrough(context.Background(), c, "main",
		promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"),
		promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2"),
		promote("production-frontend", "production/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if c.calls != 4 {
		t.Fatalf("%d API commits, want 1 landed, 1 refused, 2 landed on the new head", c.calls)
	}
	subjects := f.git(t, "log", "--format=%an %s", "-4", "main")
	want := "kropipe[bot] Promote image from 1.2.1 to 1.2.2\nkropipe[bot] Promote image from 1.2.1 to 1.2.2\ngitserver Unrelated change notes.txt\nkropipe[bot] Promote image from 1.2.1 to 1.2.2"
	if subjects != want {
		t.Fatalf("main:\n%s\nwant:\n%s", subjects, want)
	}
	if results[0].Commit != f.git(t, "rev-parse", theirs+"^") || results[1].Commit != f.git(t, "rev-parse", "main^") || results[2].Commit != f.head(t) {
		t.Fatalf("results %+v", results)
	}
	// The clone learnt the forge's commits: history reads them.
	if ok, err := r.Contains(results[0].Commit, results[2].Commit); err != nil || !ok {
		t.Fatalf("the clone does not see %s in %s's history: %v", results[0].Commit, results[2].Commit, err)
	}
}
