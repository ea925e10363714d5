package gitwrite

import (
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
