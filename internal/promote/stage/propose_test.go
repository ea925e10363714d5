package stage

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

func (f *fixture) prSpec(name, dir, service, merge string) Spec {
	s := f.spec(name, dir, service)
	s.Write = WritePullRequest
	s.PullRequest.Merge = merge
	return s
}

func (f *fixture) branchHead(branch string) string {
	f.t.Helper()
	out, err := gitserverOutput(f.bare, "rev-parse", "--verify", "-q", "refs/heads/"+branch)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

func TestPullRequest_ManualMergeMovesTheStageOnlyOnceMerged(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	main := f.branchHead("main")

	reconcile(t, e)
	if f.branchHead("main") != main {
		t.Fatal("pull-request mode pushed to the stage's branch")
	}
	if fg.count() != 1 {
		t.Fatalf("%d pull requests, want 1", fg.count())
	}
	pr := fg.pr(1)
	if pr.Title != "Promote image from 1.2.1 to 1.2.2" || pr.Head != "kropipe/develop-frontend" || pr.Base != "main" || pr.HeadSHA != f.branchHead("kropipe/develop-frontend") {
		t.Fatalf("pull request %+v", pr)
	}
	if !strings.Contains(pr.Body, "Kropipe-Stage: develop-frontend") || !strings.Contains(pr.Body, "Merge it to promote") {
		t.Fatalf("body should be the commit body plus the stage's status:\n%s", pr.Body)
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionWait || st.PullRequest == nil || st.PullRequest.Number != 1 || st.CurrentTag != "1.2.1" ||
		!strings.Contains(st.Reason, "pull request #1 proposes 1.2.2: waiting for a human to review and merge") {
		t.Fatalf("status %+v", st)
	}

	// Passes while it waits open nothing new and push nothing.
	head := f.branchHead("kropipe/develop-frontend")
	reconcile(t, e)
	if fg.count() != 1 || f.branchHead("kropipe/develop-frontend") != head || f.branchHead("main") != main {
		t.Fatal("a waiting pass changed something")
	}

	fg.humanMerges(1, forge.MethodMerge)
	reconcile(t, e) // sees the merge
	reconcile(t, e) // reads the branch with it
	st = mustStatus(t, e, "develop-frontend")
	if st.CurrentTag != "1.2.2" || st.PullRequest != nil || st.VerifiedFreight == nil || st.VerifiedFreight.Value != "1.2.2" {
		t.Fatalf("after the merge: %+v", st)
	}
	// History reads the promotion through the merge; the stage's last commit is the one proposed.
	recs, err := e.History(context.Background(), "develop-frontend")
	if err != nil || len(recs) != 1 || recs[0].Value != "1.2.2" || recs[0].Commit != pr.HeadSHA {
		t.Fatalf("history %+v %v", recs, err)
	}
	if f.branchHead("kropipe/develop-frontend") != "" {
		t.Fatal("the merged pull request's branch was left behind")
	}
	state, _ := f.store.Load(context.Background())
	if _, open := state.PullRequests["develop-frontend"]; open || len(state.PullRequestLog["develop-frontend"]) != 1 {
		t.Fatalf("state %+v", state.PullRequests)
	}
	// And nothing is re-created afterwards.
	reconcile(t, e)
	if fg.count() != 1 {
		t.Fatalf("%d pull requests after the merge, want 1", fg.count())
	}
}

func TestPullRequest_NewerFreightUpdatesTheSamePullRequestInPlace(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	reconcile(t, e)
	first := f.branchHead("kropipe/develop-frontend")

	f.reg.push(t, "team/frontend", "1.2.3")
	f.clock.Step(time.Minute)
	reconcile(t, e)
	if fg.count() != 1 {
		t.Fatalf("%d pull requests, want the first updated in place", fg.count())
	}
	pr := fg.pr(1)
	if pr.State != forge.Open || pr.Title != "Promote image from 1.2.1 to 1.2.3" || pr.HeadSHA == first {
		t.Fatalf("pull request %+v", pr)
	}
	if got := mustStatus(t, e, "develop-frontend").PullRequest; got == nil || got.Value != "1.2.3" || got.Commit != pr.HeadSHA {
		t.Fatalf("status pull request %+v", got)
	}
	fg.humanMerges(1, forge.MethodSquash)
	reconcile(t, e)
	reconcile(t, e)
	if st := mustStatus(t, e, "develop-frontend"); st.CurrentTag != "1.2.3" {
		t.Fatalf("status %+v", st)
	}
}

func TestPullRequest_ClosedUnmergedRefusesTheFreightAndIsNeverReopenedByItself(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	reconcile(t, e)
	fg.humanCloses(1)
	for range 3 {
		reconcile(t, e)
	}
	if fg.count() != 1 {
		t.Fatalf("%d pull requests: the refused freight was proposed again", fg.count())
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionHold || !strings.Contains(st.Reason, "1.2.2 was refused: pull request #1 was closed unmerged by alice") {
		t.Fatalf("status %+v", st)
	}
	state, _ := f.store.Load(context.Background())
	if r := state.Refused["develop-frontend"]; len(r) != 1 || r[0].Value != "1.2.2" || r[0].ClosedBy != "alice" {
		t.Fatalf("refusals %+v", r)
	}
	// A newer freight is proposed in a new pull request.
	f.reg.push(t, "team/frontend", "1.2.3")
	reconcile(t, e)
	if fg.count() != 2 || fg.pr(2).Title != "Promote image from 1.2.1 to 1.2.3" {
		t.Fatalf("%d pull requests; the newer freight should have its own", fg.count())
	}
	// A human may still promote the refused one by hand.
	out, err := e.Promote(context.Background(), "develop-frontend", "1.2.2")
	if err != nil || out.PullRequest == nil || out.PullRequest.Number != 2 || out.PullRequest.Value != "1.2.2" {
		t.Fatalf("manual promotion: %+v %v", out, err)
	}
}

// A human's merge is on the branch a moment before the forge reports the request merged
// (Gitea pushes the merge, then records it): a pass in that window must neither close the
// request nor fail the stage ("HTTP 412: it was already merged"); the stage moves to the merge.
func TestPullRequest_MergeOnTheBranchBeforeTheForgeSaysSoIsNotClosed(t *testing.T) {
	for _, method := range []forge.MergeMethod{forge.MethodMerge, forge.MethodSquash} {
		t.Run(string(method), func(t *testing.T) {
			f := newFixture(t)
			fg := newGitForge(f)
			f.reg.push(t, "team/frontend", "1.2.2")
			e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
			reconcile(t, e)
			fg.humanMergeLands(1, method)
			reconcile(t, e) // the branch holds 1.2.2, the forge still says open
			if st := mustStatus(t, e, "develop-frontend"); st.Decision == DecisionFailed || st.Error != "" {
				t.Fatalf("a pass while the merge lands: %+v", st)
			}
			fg.landed(1)
			reconcile(t, e)
			reconcile(t, e)
			st := mustStatus(t, e, "develop-frontend")
			if st.Decision != DecisionUpToDate || st.CurrentTag != "1.2.2" || st.Error != "" {
				t.Fatalf("after the merge: %+v", st)
			}
			if pr := fg.pr(1); pr.State != forge.Merged || pr.MergedBy != "alice" {
				t.Fatalf("pull request %+v, want merged by alice", pr)
			}
			state, _ := f.store.Load(context.Background())
			log := state.PullRequestLog["develop-frontend"]
			if len(log) != 1 || log[0].State != forge.Merged || log[0].MergedBy != "alice" {
				t.Fatalf("pull request log %+v, want #1 merged by alice", log)
			}
		})
	}
}

func TestPullRequest_AutoMergeOnceChecksPassSquashKeepsTheTrailers(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	fg.checks = forge.ChecksPending
	f.reg.push(t, "team/frontend", "1.2.2")
	s := f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeAuto)
	s.PullRequest.Method = string(forge.MethodSquash)
	e := f.engine([]Spec{s}, fg.option())
	reconcile(t, e)
	reconcile(t, e)
	if st := mustStatus(t, e, "develop-frontend"); fg.pr(1).State != forge.Open || !strings.Contains(st.Reason, "waiting for required checks, then kropipe merges") {
		t.Fatalf("merged before the checks passed: %+v", st)
	}
	fg.checks = forge.ChecksPassed
	reconcile(t, e) // merges
	reconcile(t, e) // reads it
	if pr := fg.pr(1); pr.State != forge.Merged || pr.MergedBy != "kropipe" {
		t.Fatalf("pull request %+v", pr)
	}
	if got := f.subjects(); !reflect.DeepEqual(got, []string{"Promote image from 1.2.1 to 1.2.2"}) {
		t.Fatalf("main's commits %q: the squash commit should be the promotion", got)
	}
	recs, err := e.History(context.Background(), "develop-frontend")
	if err != nil || len(recs) != 1 || recs[0].Commit != fg.pr(1).MergeCommit {
		t.Fatalf("history %+v %v", recs, err)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.CurrentTag != "1.2.2" || st.VerifiedFreight == nil {
		t.Fatalf("status %+v", st)
	}
	if n := fg.calls["merge"]; n != 1 {
		t.Fatalf("%d merge calls, want 1", n)
	}
}

func TestPullRequest_ForgeOutageIsRetriedAndNeverEndsThePromotion(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeAuto)}, fg.option())
	outage := &forge.Error{Forge: forge.Gitea, Op: "opening a pull request", Status: 503, Msg: "Service Unavailable"}
	fg.setFail(outage)
	reconcile(t, e)
	if st := mustStatus(t, e, "develop-frontend"); st.Decision == DecisionFailed || !strings.Contains(st.Reason, "503") {
		t.Fatalf("status %+v", st)
	}
	fg.setFail(nil)
	f.clock.Step(time.Minute)
	reconcile(t, e) // opens
	if fg.count() != 1 {
		t.Fatalf("%d pull requests", fg.count())
	}
	// Down again while it is open: merging waits, nothing is lost.
	fg.setFail(outage)
	reconcile(t, e)
	st := mustStatus(t, e, "develop-frontend")
	if st.PullRequest == nil || st.PullRequest.Attempts != 1 || st.PullRequest.NextAttempt.IsZero() {
		t.Fatalf("status %+v", st.PullRequest)
	}
	fg.setFail(nil)
	f.clock.Step(time.Minute)
	reconcile(t, e)
	reconcile(t, e)
	if st := mustStatus(t, e, "develop-frontend"); st.CurrentTag != "1.2.2" || fg.count() != 1 || fg.pr(1).State != forge.Merged {
		t.Fatalf("status %+v", st)
	}
}

// The forge refusing to open the pull request after the branch was pushed (a 503 on create
// only) is retried with a back-off that grows, 10 s doubling, as the README says; not every
// 10 s for ever.
func TestPullRequest_OpeningRetriedWithAGrowingBackOff(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	fg.failOn("create", &forge.Error{Forge: forge.Gitea, Op: "opening a pull request", Status: 503, Msg: "Service Unavailable"})
	var waits []time.Duration
	for range 4 {
		reconcile(t, e)
		st := mustStatus(t, e, "develop-frontend")
		if st.Decision == DecisionFailed || st.PullRequest == nil || st.PullRequest.NextAttempt.IsZero() {
			t.Fatalf("status %+v, pull request %+v", st, st.PullRequest)
		}
		wait := st.PullRequest.NextAttempt.Sub(f.clock.Now())
		waits = append(waits, wait)
		f.clock.Step(wait)
	}
	if want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second}; !reflect.DeepEqual(waits, want) {
		t.Fatalf("waits between attempts to open it %v, want %v", waits, want)
	}
	fg.failOn("create", nil)
	reconcile(t, e)
	st := mustStatus(t, e, "develop-frontend")
	if fg.count() != 1 || st.PullRequest == nil || st.PullRequest.Number != 1 || st.PullRequest.Attempts != 0 || st.PullRequest.LastError != "" {
		t.Fatalf("after the forge came back: %d pull requests, status %+v", fg.count(), st.PullRequest)
	}
}

func TestPullRequest_ARunCutShortIsFoundByItsBranchBeforeAnythingIsCreated(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	spec := f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)
	e := f.engine([]Spec{spec}, fg.option())
	reconcile(t, e)

	// The State is lost (a run killed before saving it): a new engine finds the open pull
	// request by its branch and updates it instead of opening a second.
	f.store = NewFileStore(t.TempDir() + "/state.json")
	f.dataDir = t.TempDir()
	e2 := f.engine([]Spec{spec}, fg.option())
	reconcile(t, e2)
	if fg.count() != 1 {
		t.Fatalf("%d pull requests, want the first found again", fg.count())
	}
	if st := mustStatus(t, e2, "develop-frontend"); st.PullRequest == nil || st.PullRequest.Number != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestPullRequest_RollbackSupersedesThePendingPromotionInTheSamePullRequest(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	reconcile(t, e)
	fg.humanMerges(1, forge.MethodMerge)
	reconcile(t, e)
	reconcile(t, e)
	f.reg.push(t, "team/frontend", "1.2.3")
	reconcile(t, e) // proposes 1.2.3 in #2
	if fg.count() != 2 {
		t.Fatalf("%d pull requests", fg.count())
	}
	out, err := e.Rollback(context.Background(), "develop-frontend", "1.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if out.PullRequest == nil || out.PullRequest.Number != 2 || out.PullRequest.Kind != gitwrite.Rollback.String() || fg.count() != 2 {
		t.Fatalf("rollback outcome %+v, %d pull requests", out, fg.count())
	}
	if pr := fg.pr(2); !strings.HasPrefix(pr.Title, "Roll back image from 1.2.2 to 1.2.1") {
		t.Fatalf("pull request %+v", pr)
	}
}

func TestPullRequest_ForgeWithoutRightsFailsTheStageNamingIt(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	fg.setFail(&forge.Error{Forge: forge.Gitea, Op: "opening a pull request from kropipe/develop-frontend", Status: 403, Msg: "token lacks write:repository", Err: forge.ErrForbidden})
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	err := e.Reconcile(context.Background())
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "develop-frontend" || !strings.Contains(err.Error(), "write:repository") {
		t.Fatalf("err = %v", err)
	}
	if f.branchHead("kropipe/develop-frontend") != "" {
		t.Fatal("a branch was pushed although the forge refused")
	}
}

func TestPullRequest_ReleaseGroupProposesItsSetInOnePullRequest(t *testing.T) {
	f := newGroupFixture(t)
	fg := newGitForge(f)
	specs, groups := f.shop()
	for i := range specs {
		if strings.HasPrefix(specs[i].Name, "staging-") {
			specs[i].Write, specs[i].PullRequest.Merge = WritePullRequest, MergeManual
		}
	}
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...), fg.option())
	reconcile(t, e) // develop/shop pushes straight
	f.clock.Step(10 * time.Minute)
	main := f.branchHead("main")
	reconcile(t, e) // staging/shop proposes
	if f.branchHead("main") != main || fg.count() != 1 {
		t.Fatalf("main moved or %d pull requests", fg.count())
	}
	pr := fg.pr(1)
	if pr.Head != "kropipe/staging/shop" || pr.Title != "Promote shop: frontend 1.2.0 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("pull request %+v", pr)
	}
	for _, name := range []string{"staging/shop", "staging-frontend", "staging-backend"} {
		if st := mustStatus(t, e, name); st.PullRequest == nil || st.PullRequest.Number != 1 {
			t.Fatalf("%s does not show the pull request: %+v", name, st)
		}
	}
	fg.humanMerges(1, forge.MethodRebase)
	reconcile(t, e)
	reconcile(t, e)
	if st := mustStatus(t, e, "staging/shop"); st.CurrentTag != "staging-frontend=1.2.2, staging-backend=2.1.0" || st.PullRequest != nil {
		t.Fatalf("staging/shop %+v", st)
	}
}

func TestNotifyPullRequest_WakesOnlyTheStageProposingFromThatBranch(t *testing.T) {
	f := newFixture(t)
	specs := []Spec{
		f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual),
		f.prSpec("develop-backend", "develop/backend", "backend", MergeManual),
		f.spec("staging-frontend", "staging/frontend", "frontend"),
	}
	e := f.engine(specs)
	got := e.NotifyPullRequest(forge.Event{Repo: "gitops", Head: "kropipe/develop-backend", Action: "merged"})
	if !reflect.DeepEqual(got, []string{"develop-backend"}) {
		t.Fatalf("woke %q", got)
	}
	if got := e.NotifyPullRequest(forge.Event{Repo: "other/repo", Head: "kropipe/develop-backend"}); len(got) != 0 {
		t.Fatalf("an event of another repository woke %q", got)
	}
	select {
	case <-e.Kicks():
	default:
		t.Fatal("no pass was asked for")
	}
}

func TestPullRequest_BadInputNamesTheStageAndPushesNothing(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Spec)
		forge  bool // use the test forge (else the forge detected from the URL)
		want   []string
	}{
		{"a forge the URL does not reveal", func(s *Spec) {}, false, []string{`stage "develop-frontend"`, "cannot tell which forge", "kropipe.io/forge"}},
		{"a target branch that does not exist", func(s *Spec) { s.Branch = "release" }, true, []string{`stage "develop-frontend"`, `no branch "release"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			// A repository with an owner in its path, as every forge has.
			bare, err := f.git.NewBareRepo(context.Background(), "team/gitops.git", "testdata/seed")
			if err != nil {
				t.Fatal(err)
			}
			f.bare, f.url = bare, f.git.URL("team/gitops.git")
			fg := newGitForge(f)
			f.reg.push(t, "team/frontend", "1.2.2")
			s := f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)
			tt.change(&s)
			var opts []Option
			if tt.forge {
				opts = append(opts, fg.option())
			}
			e := f.engine([]Spec{s}, opts...)
			err = e.Reconcile(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if out, _ := gitserverOutput(f.bare, "branch", "--list", "kropipe/*"); strings.TrimSpace(out) != "" || fg.count() != 0 {
				t.Fatalf("something was pushed or opened: %q, %d pull requests", out, fg.count())
			}
		})
	}
}

func TestPullRequest_AutoMergeNeverMergesACommitSomeoneElsePushedOnTop(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	fg.checks = forge.ChecksPending
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeAuto)}, fg.option())
	reconcile(t, e)
	// A reviewer pushes a commit onto kropipe's branch.
	head := f.branchHead("kropipe/develop-frontend")
	tree, _ := gitserverOutput(f.bare, "rev-parse", head+"^{tree}")
	theirs, err := gitserverOutput(f.bare, "commit-tree", strings.TrimSpace(tree), "-p", head, "-m", "Reviewer's fix")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gitserverOutput(f.bare, "update-ref", "refs/heads/kropipe/develop-frontend", strings.TrimSpace(theirs), head); err != nil {
		t.Fatal(err)
	}
	fg.checks = forge.ChecksPassed
	reconcile(t, e)
	if pr := fg.pr(1); pr.State != forge.Open {
		t.Fatalf("kropipe merged a head it did not propose: %+v", pr)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.PullRequest == nil || !strings.Contains(st.PullRequest.Action, "someone pushed to kropipe/develop-frontend") {
		t.Fatalf("status %+v", st.PullRequest)
	}
}

func TestPullRequest_StatusWithoutWritingShowsThePullRequestAndTheRefusal(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	spec := f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)
	e := f.engine([]Spec{spec}, fg.option())
	reconcile(t, e)
	calls := fg.calls["get"] + fg.calls["find"]
	if err := e.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.Decision != DecisionWait || st.PullRequest == nil || st.PullRequest.Number != 1 {
		t.Fatalf("status --config with an open pull request: %+v", st)
	}
	if fg.calls["get"]+fg.calls["find"] != calls {
		t.Fatal("a pass that writes nothing asked the forge")
	}
	fg.humanCloses(1)
	reconcile(t, e)
	if err := e.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.Decision != DecisionHold || !strings.Contains(st.Reason, "was refused") {
		t.Fatalf("status --config after the refusal: %+v", st)
	}
}

func TestPullRequest_AForgeWebhookEndsTheBackOff(t *testing.T) {
	f := newFixture(t)
	fg := newGitForge(f)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual)}, fg.option())
	reconcile(t, e)
	fg.setFail(&forge.Error{Forge: forge.Gitea, Op: "reading", Status: 502})
	reconcile(t, e) // back-off set
	fg.setFail(nil)
	fg.humanMerges(1, forge.MethodMerge)
	reconcile(t, e) // still backing off: the forge is not asked
	if st := mustStatus(t, e, "develop-frontend"); st.PullRequest == nil || st.PullRequest.State != forge.Open {
		t.Fatalf("asked the forge during its back-off: %+v", st)
	}
	e.NotifyPullRequest(forge.Event{Repo: "gitops", Head: "kropipe/develop-frontend", Action: "merged"})
	reconcile(t, e)
	reconcile(t, e)
	if st := mustStatus(t, e, "develop-frontend"); st.PullRequest != nil || st.VerifiedFreight == nil || st.VerifiedFreight.Value != "1.2.2" {
		t.Fatalf("the webhook did not end the back-off: %+v", st)
	}
}
