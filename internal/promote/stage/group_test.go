package stage

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// newGroupFixture is newFixture on testdata/groupseed: develop and staging of frontend and
// backend, and develop/cart, a sibling outside the group.
func newGroupFixture(t testing.TB) *fixture {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/groupseed")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	return &fixture{
		t: t, git: srv, url: srv.URL("gitops.git"), bare: bare,
		reg: newTestRegistry(t), dataDir: dataDir, clock: newFakeClock(),
		store: NewFileStore(dataDir + "/state.json"),
	}
}

// shop is the scenario's pipeline: develop/shop and staging/shop (10m soak), each of
// frontend (^1.2) and backend (^2), and develop-cart alone.
func (f *fixture) shop() ([]Spec, []GroupSpec) {
	spec := func(name, dir, service, constraint string) Spec {
		s := f.spec(name, dir, service)
		s.Constraint = constraint
		return s
	}
	sf, sb := spec("staging-frontend", "staging/frontend", "frontend", "^1.2"), spec("staging-backend", "staging/backend", "backend", "^2")
	sf.Upstream, sb.Upstream = "develop-frontend", "develop-backend"
	sf.Soak, sb.Soak = 10*time.Minute, 10*time.Minute
	specs := []Spec{
		spec("develop-frontend", "develop/frontend", "frontend", "^1.2"),
		spec("develop-backend", "develop/backend", "backend", "^2"),
		spec("develop-cart", "develop/cart", "cart", "^0.9"),
		sf, sb,
	}
	groups := []GroupSpec{
		{Name: "develop/shop", Members: []string{"develop-frontend", "develop-backend"}},
		{Name: "staging/shop", Members: []string{"staging-frontend", "staging-backend"}},
	}
	return specs, groups
}

// changedFiles lists the files a commit on main changed.
func (f *fixture) changedFiles(rev string) []string {
	f.t.Helper()
	out, err := gitserver.GitOutput(context.Background(), f.bare, "diff-tree", "--no-commit-id", "--name-only", "-r", rev)
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Fields(out)
}

func reconcile(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestGroup_SetMovesAsOneCommitThenDownstreamAfterSoak(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))

	reconcile(t, e)
	if got, want := f.subjects(), []string{"Promote shop: frontend 1.2.1 → 1.2.2, backend 2.0.0 → 2.1.0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
	if got, want := f.changedFiles("main"), []string{"develop/backend/instance.yaml", "develop/frontend/instance.yaml"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the commit changed %q, want %q", got, want)
	}
	dev := mustStatus(t, e, "develop/shop")
	if dev.Decision != DecisionPromote || dev.CurrentTag != "develop-frontend=1.2.2, develop-backend=2.1.0" || dev.VerifiedFreight == nil || dev.VerifiedFreight.Value != dev.CurrentTag {
		t.Fatalf("develop/shop %+v", dev)
	}
	if got := mustStatus(t, e, "develop-frontend"); got.Group != "develop/shop" || got.CurrentTag != "1.2.2" {
		t.Fatalf("member %+v", got)
	}
	if st := mustStatus(t, e, "staging/shop"); st.Decision != DecisionWait || st.Reason != "waiting: develop/shop just took a new set, then a 10m0s soak" {
		t.Fatalf("staging/shop %+v", st)
	}

	f.clock.Step(10 * time.Minute)
	reconcile(t, e)
	if got := f.subjects(); len(got) != 2 || got[0] != "Promote shop: frontend 1.2.0 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("commits %q", got)
	}
	if got, want := f.changedFiles("main"), []string{"staging/backend/instance.yaml", "staging/frontend/instance.yaml"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the staging commit changed %q, want %q", got, want)
	}
	if msg, _ := gitserverOutput(f.bare, "log", "-1", "--format=%(trailers:key=Kropipe-Group,valueonly)", "main"); strings.TrimSpace(msg) != "staging/shop" {
		t.Fatalf("Kropipe-Group = %q", msg)
	}

	// frontend alone moves on: the new set keeps backend's 2.1.0.
	f.reg.push(t, "team/frontend", "1.2.3")
	reconcile(t, e)
	if got := f.subjects(); got[0] != "Promote shop: frontend 1.2.2 → 1.2.3" {
		t.Fatalf("commits %q", got)
	}
	if got := mustStatus(t, e, "develop/shop").CurrentTag; got != "develop-frontend=1.2.3, develop-backend=2.1.0" {
		t.Fatalf("develop/shop runs %q", got)
	}
	f.clock.Step(10 * time.Minute)
	reconcile(t, e)
	if got := f.subjects(); len(got) != 4 || got[0] != "Promote shop: frontend 1.2.2 → 1.2.3" {
		t.Fatalf("commits %q", got)
	}
	if got := mustStatus(t, e, "staging/shop").CurrentTag; got != "staging-frontend=1.2.3, staging-backend=2.1.0" {
		t.Fatalf("staging/shop runs %q", got)
	}
	reconcile(t, e)
	if got := f.subjects(); len(got) != 4 {
		t.Fatalf("a pass with nothing new committed: %q", got)
	}
	// The sibling outside the group was never touched.
	if !strings.Contains(f.file("develop/cart/instance.yaml"), `tag: "0.9.0"`) {
		t.Fatal("develop/cart changed")
	}
}

// failOn fails the verification of one stage and passes the others.
type failOn struct{ stage string }

func (v *failOn) Verify(_ context.Context, s Spec, _ freight.Freight, _ string) error {
	if s.Name == v.stage {
		return errors.New("smoke test failed")
	}
	return nil
}

func TestGroup_FailingMemberBlocksTheSet(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	fail := &failOn{"develop-backend"}
	e := f.engine(specs, WithGroups(groups...), WithVerifier(fail))

	err := e.Reconcile(context.Background())
	var se *StageError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want the group's failure", err)
	}
	dev := mustStatus(t, e, "develop/shop")
	if dev.Decision != DecisionFailed || !strings.Contains(dev.Error, `stage "develop-backend": 2.1.0`) && !strings.Contains(dev.Error, "develop-backend") || dev.VerifiedFreight != nil {
		t.Fatalf("develop/shop %+v", dev)
	}
	if be := mustStatus(t, e, "develop-backend"); be.Decision != DecisionFailed {
		t.Fatalf("develop-backend %+v", be)
	}
	if fe := mustStatus(t, e, "develop-frontend"); fe.Decision != DecisionBlocked || !strings.Contains(fe.Reason, "group develop/shop") {
		t.Fatalf("develop-frontend %+v", fe)
	}
	f.clock.Step(time.Hour)
	_ = e.Reconcile(context.Background())
	if got := f.subjects(); len(got) != 1 {
		t.Fatalf("staging took a set that was not verified together: %q", got)
	}
	if st := mustStatus(t, e, "staging/shop"); st.Decision != DecisionWait || !strings.Contains(st.Reason, "waiting for develop/shop to verify its set") {
		t.Fatalf("staging/shop %+v", st)
	}
	if st := mustStatus(t, e, "develop-cart"); st.Decision != DecisionUpToDate {
		t.Fatalf("the stage outside the group was held: %+v", st)
	}

	// The set is rolled back by hand; the previous set verifies and the group is well again.
	fail.stage = ""
	out, err := e.Rollback(context.Background(), "develop/shop", "")
	if err != nil || out.New != "develop-frontend=1.2.1, develop-backend=2.0.0" {
		t.Fatalf("rollback: %+v %v", out, err)
	}
	dev = mustStatus(t, e, "develop/shop")
	if dev.Decision != DecisionPromote || dev.VerifiedFreight == nil || dev.VerifiedFreight.Value != out.New {
		t.Fatalf("develop/shop after the rollback %+v", dev)
	}
	for _, m := range []string{"develop-frontend", "develop-backend"} {
		if st := mustStatus(t, e, m); st.Decision != DecisionPromote || st.Error != "" {
			t.Fatalf("%s after the rollback %+v", m, st)
		}
	}
}

func TestGroup_RollbackRevertsTheSetInOneCommitAndRejectsIt(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))
	ctx := context.Background()
	reconcile(t, e)

	out, err := e.Rollback(ctx, "develop/shop", "")
	if err != nil {
		t.Fatal(err)
	}
	if out.Old != "develop-frontend=1.2.2, develop-backend=2.1.0" || out.New != "develop-frontend=1.2.1, develop-backend=2.0.0" || out.Commit == "" {
		t.Fatalf("outcome %+v", out)
	}
	if got := f.subjects(); len(got) != 2 || got[0] != "Roll back shop: frontend 1.2.2 → 1.2.1, backend 2.1.0 → 2.0.0" {
		t.Fatalf("commits %q", got)
	}
	if got, want := f.changedFiles("main"), []string{"develop/backend/instance.yaml", "develop/frontend/instance.yaml"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the rollback changed %q, want %q", got, want)
	}
	// The rejected set is not promoted again.
	reconcile(t, e)
	if got := f.subjects(); len(got) != 2 {
		t.Fatalf("the rejected set came back: %q", got)
	}
	if st := mustStatus(t, e, "develop/shop"); st.Decision != DecisionUpToDate || !strings.Contains(st.Reason, "frontend 1.2.1, backend 2.0.0") {
		t.Fatalf("develop/shop %+v", st)
	}
	h, err := e.History(ctx, "develop/shop")
	if err != nil || len(h) != 2 || h[0].Kind.String() != "rollback" || h[0].Rejected != "develop-frontend=1.2.2, develop-backend=2.1.0" {
		t.Fatalf("history %+v, %v", h, err)
	}
}

func TestGroup_MemberAloneOnlyWhenForced(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	f.reg.push(t, "team/frontend", "1.2.2", "1.2.3")
	f.reg.push(t, "team/backend", "2.0.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))
	ctx := context.Background()

	_, err := e.Promote(ctx, "develop-frontend", "1.2.2")
	if !errors.Is(err, ErrGroupMember) || !strings.Contains(err.Error(), `promote the group (promoter promote develop/shop) or force this member alone with --member`) {
		t.Fatalf("err %v", err)
	}
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("a member moved alone: %q", got)
	}
	if _, err := e.PromoteMember(ctx, "develop-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	if got := f.subjects(); len(got) != 1 || got[0] != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("commits %q", got)
	}
	// The group is promoted by hand with a tag per member.
	out, err := e.Promote(ctx, "develop/shop", "frontend=1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if out.New != "develop-frontend=1.2.3, develop-backend=2.0.0" {
		t.Fatalf("outcome %+v", out)
	}
	if got := f.subjects(); got[0] != "Promote shop: frontend 1.2.2 → 1.2.3" {
		t.Fatalf("commits %q", got)
	}
}

func TestGroup_RequireAllWaitsForEveryMember(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	groups[0].RequireAll = true
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))
	reconcile(t, e)
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("commits %q", got)
	}
	if st := mustStatus(t, e, "develop/shop"); st.Decision != DecisionWait || !strings.HasPrefix(st.Reason, "waiting for a new candidate of develop-backend (require-all)") {
		t.Fatalf("develop/shop %+v", st)
	}
	f.reg.push(t, "team/backend", "2.1.0")
	reconcile(t, e)
	if got := f.subjects(); len(got) != 1 || got[0] != "Promote shop: frontend 1.2.1 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("commits %q", got)
	}
}

func TestGroup_BadGroupsAreNamedAndHoldOnlyThemselves(t *testing.T) {
	tests := []struct {
		name   string
		change func(specs []Spec, groups []GroupSpec) ([]Spec, []GroupSpec)
		group  string
		want   string
	}{
		{"member in two groups", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			return s, append(g, GroupSpec{Name: "develop/checkout", Members: []string{"develop-backend"}})
		}, "develop/shop", `member "develop-backend" is also in group(s) "develop/checkout"`},
		{"members on different branches", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[1].Branch = "release"
			return s, g
		}, "develop/shop", "a set must land in one commit"},
		{"upstream group with different members", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[4].Upstream = "develop-cart"
			g[0].Members = append(g[0].Members, "develop-cart")
			return s, g
		}, "staging/shop", "members \"staging-frontend\" and \"staging-backend\"" /* replaced below */},
		{"unknown member", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			g[0].Members = append(g[0].Members, "develop-payments")
			return s, g
		}, "develop/shop", `member "develop-payments" is not a stage`},
		{"members disagree on soak", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[4].Soak = time.Hour
			return s, g
		}, "staging/shop", "disagree on soak"},
		{"one member opens pull requests, the other pushes", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[4].Write = WritePullRequest
			s[4] = s[4].WithDefaults()
			return s, g
		}, "staging/shop", `disagree on write ("push", "pull-request")`},
		{"members disagree on merge", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[3].Write, s[4].Write = WritePullRequest, WritePullRequest
			s[4].PullRequest.Merge = MergeAuto
			s[3], s[4] = s[3].WithDefaults(), s[4].WithDefaults()
			return s, g
		}, "staging/shop", `disagree on pullRequest.merge ("manual", "auto")`},
		{"members disagree on commitVia", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[4].CommitVia, s[4].PullRequest.Forge = CommitViaGitHubAPI, "github"
			return s, g
		}, "staging/shop", `disagree on commitVia ("git", "github-api")`},
		{"group name makes no pull-request branch", func(s []Spec, g []GroupSpec) ([]Spec, []GroupSpec) {
			s[3].Write, s[4].Write = WritePullRequest, WritePullRequest
			// Fine for each stage, the target branch itself for the group.
			tmpl := `{{if eq .Stage "staging/shop"}}{{.Branch}}{{else}}kropipe/{{.Stage}}{{end}}`
			s[3].PullRequest.Branch, s[4].PullRequest.Branch = tmpl, tmpl
			s[3], s[4] = s[3].WithDefaults(), s[4].WithDefaults()
			return s, g
		}, "staging/shop", "the branch the stage deploys from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newGroupFixture(t)
			specs, groups := f.shop()
			specs, groups = tt.change(specs, groups)
			f.reg.push(t, "team/frontend", "1.2.2")
			f.reg.push(t, "team/backend", "2.1.0")
			f.reg.push(t, "team/cart", "0.9.1")
			e := f.engine(specs, WithGroups(groups...))
			_ = e.Reconcile(context.Background())
			st := mustStatus(t, e, tt.group)
			want := tt.want
			if tt.name == "upstream group with different members" {
				want = `upstream group "develop/shop" has different members`
			}
			if st.Decision != DecisionFailed || !strings.Contains(st.Error, want) || !strings.HasPrefix(st.Error, "group \""+tt.group+"\"") {
				t.Fatalf("%s: %+v\nwant an error containing %q", tt.group, st, want)
			}
			for _, m := range st.Members {
				if ms := mustStatus(t, e, m.Stage); ms.Decision != DecisionBlocked {
					t.Fatalf("member %s %+v", m.Stage, ms)
				}
			}
			if tt.group == "develop/shop" && tt.name != "upstream group with different members" {
				// develop-cart alone is unaffected.
				if st := mustStatus(t, e, "develop-cart"); st.CurrentTag != "0.9.1" && tt.name != "unknown member" {
					t.Fatalf("develop-cart %+v", st)
				}
			}
		})
	}
}

func TestGroup_ApprovalAndPauseApplyToTheSet(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	specs[3].AutoPromote, specs[4].AutoPromote = false, false // staging members
	specs[3].Soak, specs[4].Soak = 0, 0
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))
	ctx := context.Background()
	reconcile(t, e)
	reconcile(t, e)
	st := mustStatus(t, e, "staging/shop")
	if st.Decision != DecisionWait || st.Reason != "waiting for approval of frontend 1.2.0 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("staging/shop %+v", st)
	}
	if err := e.Pause(ctx, "staging/shop"); err != nil {
		t.Fatal(err)
	}
	v, err := e.Approve(ctx, "staging/shop", "")
	if err != nil || v != "staging-frontend=1.2.2, staging-backend=2.1.0" {
		t.Fatalf("approve: %q %v", v, err)
	}
	reconcile(t, e)
	if st := mustStatus(t, e, "staging/shop"); st.Decision != DecisionHold || len(f.subjects()) != 1 {
		t.Fatalf("paused staging/shop %+v, commits %q", st, f.subjects())
	}
	if err := e.Resume(ctx, "staging/shop"); err != nil {
		t.Fatal(err)
	}
	reconcile(t, e)
	if got := f.subjects(); len(got) != 2 || got[0] != "Promote shop: frontend 1.2.0 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("commits %q", got)
	}
}
