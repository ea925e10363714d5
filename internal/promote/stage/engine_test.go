package stage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

func TestReconcile_NewTagMakesOneCommitWithExactSubject(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2", "2.0.0")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := f.subjects(), []string{"Promote image from 1.2.1 to 1.2.2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
	if !strings.Contains(f.file("develop/frontend/instance.yaml"), "      # bumped by the promoter — do not edit by hand\n      tag: \"1.2.2\"\n") {
		t.Fatalf("file not edited in place:\n%s", f.file("develop/frontend/instance.yaml"))
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionPromote || st.CurrentTag != "1.2.2" || st.LastCommit == "" || st.VerifiedFreight == nil || st.VerifiedFreight.Value != "1.2.2" {
		t.Fatalf("status %+v", st)
	}
}

func TestReconcile_SecondPassCommitsNothing(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	for range 2 {
		if err := e.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.subjects(); len(got) != 1 {
		t.Fatalf("commits %q, want one", got)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.Decision != DecisionUpToDate || st.Reason != "up to date at 1.2.2" {
		t.Fatalf("status %+v", st)
	}
}

func TestReconcile_NoMatchingTagSaysWhatWasSeen(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "2.0.0")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionWait || st.Reason != "no tag matches ^1.2 (newest seen 2.0.0)" {
		t.Fatalf("status %+v", st)
	}
}

func TestReconcile_UpstreamPromotesOnlyAfterSoak(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream, staging.Soak = "develop-frontend", 10*time.Minute
	e := f.engine([]Spec{staging, f.spec("develop-frontend", "develop/frontend", "frontend")})
	ctx := context.Background()

	if err := e.Reconcile(ctx); err != nil { // develop 1.2.1 → 1.2.2, verified now
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "staging-frontend"); st.Decision != DecisionWait || st.Reason != "waiting: develop-frontend just took 1.2.2, then a 10m0s soak" {
		t.Fatalf("first pass: staging %+v", st)
	}
	f.clock.Step(5*time.Minute + 48*time.Second)
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "staging-frontend"); st.Decision != DecisionWait || st.Reason != "waiting: develop-frontend soak, 4m12s left" {
		t.Fatalf("during soak: staging %+v", st)
	}
	if got := f.subjects(); len(got) != 1 {
		t.Fatalf("staging promoted before the soak ended: %q", got)
	}
	// A loop wakes for the soak's end whatever its interval: with none (notifications only),
	// or a longer one; a shorter interval comes first.
	if got, want := e.NextWake(), f.clock.Now().Add(4*time.Minute+12*time.Second); !got.Equal(want) {
		t.Errorf("NextWake during the soak = %s, want its end %s", got, want)
	}
	if got, want := e.WakeAfter(0), 4*time.Minute+12*time.Second+wakeSlack; got != want {
		t.Errorf("WakeAfter(no interval) = %s, want %s", got, want)
	}
	if got := e.WakeAfter(time.Hour); got != 4*time.Minute+12*time.Second+wakeSlack {
		t.Errorf("WakeAfter(1h) = %s, want the soak's end first", got)
	}
	if got := e.WakeAfter(time.Minute); got != time.Minute {
		t.Errorf("WakeAfter(1m) = %s, want the interval first", got)
	}
	f.clock.Step(4*time.Minute + 12*time.Second)
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := f.subjects(), []string{"Promote image from 1.2.0 to 1.2.2", "Promote image from 1.2.1 to 1.2.2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
	if got := e.NextWake(); !got.IsZero() {
		t.Errorf("NextWake after the soak ended = %s, want none", got)
	}

	// develop is rolled back to 1.2.1 and verifies it again: staging, at 1.2.2, holds at once
	// instead of counting a soak down towards a value it will never take by itself.
	if _, err := e.Rollback(ctx, "develop-frontend", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "staging-frontend"); st.Decision != DecisionHold || st.Reason != "1.2.1 is older than the current 1.2.2; promote it by hand if that is intended" {
		t.Fatalf("after develop's rollback: staging %+v", st)
	}
}

func TestReconcile_ApprovalGateWaitsForApprove(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	prod := f.spec("prod-frontend", "prod/frontend", "frontend")
	prod.AutoPromote = false
	e := f.engine([]Spec{prod})
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "prod-frontend"); st.Decision != DecisionWait || st.Reason != "waiting for approval of 1.2.2" {
		t.Fatalf("before approval: %+v", st)
	}
	if len(f.subjects()) != 0 {
		t.Fatal("committed without approval")
	}
	v, err := e.Approve(ctx, "prod-frontend", "")
	if err != nil || v != "1.2.2" {
		t.Fatalf("Approve = %q, %v", v, err)
	}
	select {
	case <-e.Kicks():
	default:
		t.Fatal("approve did not ask for a pass")
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.subjects(); !reflect.DeepEqual(got, []string{"Promote image from 1.2.0 to 1.2.2"}) {
		t.Fatalf("commits %q", got)
	}
}

func TestReconcile_PausedStageHoldsUntilResumed(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	ctx := context.Background()
	if err := e.Pause(ctx, "develop-frontend"); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionHold || !st.Paused || st.Reason != "paused; 1.2.2 is waiting" {
		t.Fatalf("paused: %+v", st)
	}
	if len(f.subjects()) != 0 {
		t.Fatal("paused stage was promoted")
	}
	if err := e.Resume(ctx, "develop-frontend"); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.subjects()) != 1 {
		t.Fatalf("resumed stage not promoted: %q", f.subjects())
	}
}

func TestRollback_CommitsRejectsAndANewerTagIsStillPromoted(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	specs := []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")}
	e := f.engine(specs)
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := e.Rollback(ctx, "develop-frontend", "")
	if err != nil {
		t.Fatal(err)
	}
	if out.Old != "1.2.2" || out.New != "1.2.1" || out.Commit == "" {
		t.Fatalf("rollback %+v", out)
	}
	msg, err := gitOutput(f, "log", "-1", "--format=%B", "main")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg, "Roll back image from 1.2.2 to 1.2.1\n") || !strings.Contains(msg, "Kropipe-Rejected: 1.2.2") {
		t.Fatalf("rollback commit:\n%s", msg)
	}
	// A new engine (a restart) still refuses 1.2.2: the rejection is read from Git.
	e2 := f.engine(specs)
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e2, "develop-frontend"); st.Decision != DecisionUpToDate || st.Reason != "up to date at 1.2.1; 1.2.2 was rolled back here" {
		t.Fatalf("after rollback: %+v", st)
	}
	f.reg.push(t, "team/frontend", "1.2.3")
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"Promote image from 1.2.1 to 1.2.3", "Roll back image from 1.2.2 to 1.2.1", "Promote image from 1.2.1 to 1.2.2"}
	if got := f.subjects(); !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
	if _, err := e2.Rollback(ctx, "develop-frontend", "9.9.9"); err == nil || !strings.Contains(err.Error(), `stage "develop-frontend"`) {
		t.Fatalf("rollback to a missing tag: %v", err)
	}
}

func TestRestart_NewEngineOnSameDataDirRepeatsNoCommit(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream, staging.Soak = "develop-frontend", time.Minute
	specs := []Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), staging}
	ctx := context.Background()
	if err := f.engine(specs).Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(2 * time.Minute)
	// The restarted engine knows develop verified 1.2.2 (from the state file), so
	// staging goes on; develop is not committed again.
	e := f.engine(specs)
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.engine(specs).Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"Promote image from 1.2.0 to 1.2.2", "Promote image from 1.2.1 to 1.2.2"}
	if got := f.subjects(); !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
}

func TestReconcile_RegistryFailureFailsOnlyItsStage(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.1")
	f.reg.breakRepo("team/backend")
	backend := f.spec("develop-backend", "develop/backend", "backend")
	backend.Constraint = "^2"
	e := f.engine([]Spec{backend, f.spec("develop-frontend", "develop/frontend", "frontend")})
	err := e.Reconcile(context.Background())
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "develop-backend" {
		t.Fatalf("Reconcile error %v, want develop-backend's", err)
	}
	if st := mustStatus(t, e, "develop-backend"); st.Decision != DecisionFailed || !strings.Contains(st.Error, `stage "develop-backend"`) {
		t.Fatalf("backend %+v", st)
	}
	if got := f.subjects(); !reflect.DeepEqual(got, []string{"Promote image from 1.2.1 to 1.2.2"}) {
		t.Fatalf("commits %q", got)
	}
}

func TestReconcile_MissingFileOrKeyFailsTheStageAndCommitsNothing(t *testing.T) {
	tests := []struct {
		name, file, key string
		want            []string
	}{
		{"file missing", "qa/frontend/instance.yaml", "spec.values.deployment.tag", []string{`stage "qa-frontend"`, "qa/frontend/instance.yaml", "spec.values.deployment.tag", "does not exist"}},
		{"key missing", "develop/frontend/instance.yaml", "spec.values.deployment.version", []string{`stage "qa-frontend"`, "develop/frontend/instance.yaml", "spec.values.deployment.version", "key not found"}},
		{"key not a scalar", "develop/frontend/instance.yaml", "spec.values.deployment", []string{`stage "qa-frontend"`, "develop/frontend/instance.yaml", "not a scalar"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.reg.push(t, "team/frontend", "1.2.2")
			s := f.spec("qa-frontend", "x", "frontend")
			s.File, s.Key = tt.file, tt.key
			e := f.engine([]Spec{s})
			if err := e.Reconcile(context.Background()); err == nil {
				t.Fatal("Reconcile succeeded")
			}
			st := mustStatus(t, e, "qa-frontend")
			if st.Decision != DecisionFailed {
				t.Fatalf("decision %s", st.Decision)
			}
			for _, w := range tt.want {
				if !strings.Contains(st.Error, w) {
					t.Errorf("error %q does not name %q", st.Error, w)
				}
			}
			if got := f.subjects(); len(got) != 0 {
				t.Fatalf("committed %q", got)
			}
		})
	}
}

func TestReconcile_StagesDueTogetherShareOnePush(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.1")
	backend := f.spec("develop-backend", "develop/backend", "backend")
	backend.Constraint = "^2"
	prod := f.spec("prod-frontend", "prod/frontend", "frontend")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), backend, prod})
	before := f.git.Pushes("gitops.git")
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.git.Pushes("gitops.git") - before; got != 1 {
		t.Fatalf("%d pushes, want 1", got)
	}
	if got := f.subjects(); len(got) != 3 {
		t.Fatalf("commits %q, want 3", got)
	}
}

func TestReconcile_FailedVerifyCommandFailsTheStageWithItsOutput(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	s := f.spec("develop-frontend", "develop/frontend", "frontend")
	s.Verify = &VerifySpec{Command: []string{"sh", "-c", `echo "$KROPIPE_STAGE $KROPIPE_IMAGE $KROPIPE_TAG $KROPIPE_COMMIT" > ` + envFile + `; echo smoke test broke; exit 3`}, Timeout: 10 * time.Second}
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream = "develop-frontend"
	e := f.engine([]Spec{s, staging})
	if err := e.Reconcile(context.Background()); err == nil {
		t.Fatal("Reconcile succeeded")
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionFailed || !strings.Contains(st.Reason, "smoke test broke") || !strings.Contains(st.Reason, "exit status 3") {
		t.Fatalf("status %+v", st)
	}
	env, _ := os.ReadFile(envFile)
	if fields := strings.Fields(string(env)); len(fields) != 4 || fields[0] != "develop-frontend" || fields[1] != f.reg.image("team/frontend") || fields[2] != "1.2.2" || fields[3] != st.LastCommit {
		t.Fatalf("verify command saw %q (commit %s)", env, st.LastCommit)
	}
	if err := e.Reconcile(context.Background()); err == nil {
		t.Fatal("second pass succeeded")
	}
	if st := mustStatus(t, e, "staging-frontend"); st.Decision != DecisionWait {
		t.Fatalf("staging took unverified freight: %+v", st)
	}
}

func TestPromote_ManualTagMustExistInRegistry(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2", "2.0.0")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	ctx := context.Background()
	if _, err := e.Promote(ctx, "develop-frontend", "1.4.0"); err == nil || !strings.Contains(err.Error(), "1.4.0") {
		t.Fatalf("promote of a missing tag: %v", err)
	}
	out, err := e.Promote(ctx, "develop-frontend", "2.0.0")
	if err != nil || out.New != "2.0.0" || out.Commit == "" {
		t.Fatalf("Promote = %+v, %v", out, err)
	}
	// The engine does not auto-downgrade below a tag a human promoted.
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.Decision != DecisionHold {
		t.Fatalf("status %+v", st)
	}
	if got := f.subjects(); !reflect.DeepEqual(got, []string{"Promote image from 1.2.1 to 2.0.0"}) {
		t.Fatalf("commits %q", got)
	}
	if _, err := e.Promote(ctx, "nope", ""); !errors.Is(err, ErrUnknownStage) {
		t.Fatalf("unknown stage: %v", err)
	}
}

func TestHistory_ReadsTrailers(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := e.History(ctx, "develop-frontend")
	if err != nil || len(recs) != 1 || recs[0].Kind != gitwrite.Promote || recs[0].Value != "1.2.2" || recs[0].Previous != "1.2.1" {
		t.Fatalf("History = %+v, %v", recs, err)
	}
}

func gitOutput(f *fixture, args ...string) (string, error) {
	return gitserverOutput(f.bare, args...)
}

func TestReconcile_StagesSharingImageAndSelectionQueryTheRegistryOnce(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), f.spec("prod-frontend", "prod/frontend", "frontend")})
	f.reg.tagLists.Store(0)
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.reg.tagLists.Load(); n != 1 {
		t.Fatalf("%d tag lists for two stages with the same image and selection, want 1", n)
	}
	if got := f.subjects(); len(got) != 2 {
		t.Fatalf("commits %q", got)
	}
}

func TestReconcile_DigestStrategyFollowsAMutableTag(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "latest")
	s := f.spec("develop-frontend", "develop/frontend", "frontend")
	s.Strategy, s.Constraint = "digest", "latest"
	e := f.engine([]Spec{s})
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	first := mustStatus(t, e, "develop-frontend").CurrentTag
	if !strings.HasPrefix(first, "sha256:") {
		t.Fatalf("wrote %q, want a digest", first)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	f.reg.push(t, "team/frontend", "latest") // a new build under the same tag
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	second := mustStatus(t, e, "develop-frontend").CurrentTag
	want := []string{"Promote image from " + first + " to " + second, "Promote image from 1.2.1 to " + first}
	if got := f.subjects(); second == first || !reflect.DeepEqual(got, want) {
		t.Fatalf("commits %q, want %q", got, want)
	}
	// Rolling back re-writes the earlier digest and rejects the new one.
	out, err := e.Rollback(ctx, "develop-frontend", "")
	if err != nil || out.New != first {
		t.Fatalf("rollback %+v, %v", out, err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.CurrentTag != first {
		t.Fatalf("the rejected digest came back: %+v", st)
	}
}

// A long-running promoter gathers one pack per fetch and push; past the limit the engine
// compacts the clone between passes and goes on promoting from it.
func TestReconcile_CompactsACloneThatGatheredTooManyPacks(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1")
	specs := []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")}
	e := f.engine(specs, WithCompactAfter(3))
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	repo, err := e.Repo(ctx, specs[0].RepoURL)
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	for _, tag := range []string{"1.2.2", "1.2.3", "1.2.4", "1.2.5", "1.2.6"} {
		f.reg.push(t, "team/frontend", tag)
		if err := e.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := repo.PackCount()
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, n)
	}
	if most > 3 {
		t.Errorf("the clone held %d packs after a pass; the limit is 3", most)
	}
	if got := f.subjects(); len(got) != 5 || got[0] != "Promote image from 1.2.5 to 1.2.6" {
		t.Fatalf("commits after compactions: %q", got)
	}
}

// A notification's pass answers first and leaves the compaction to Housekeep, which the
// run loops call when idle; a pass asked for meanwhile stops Housekeep before it starts.
func TestReconcileKicked_LeavesCompactionToHousekeep(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1")
	specs := []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")}
	e := f.engine(specs, WithCompactAfter(2))
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	repo, err := e.Repo(ctx, specs[0].RepoURL)
	if err != nil {
		t.Fatal(err)
	}
	image := f.reg.image("team/frontend")
	for _, tag := range []string{"1.2.2", "1.2.3", "1.2.4"} {
		f.reg.push(t, "team/frontend", tag)
		e.Notify(image)
		<-e.Kicks()
		if err := e.ReconcileKicked(ctx); err != nil {
			t.Fatal(err)
		}
	}
	packs := func() int {
		n, err := repo.PackCount()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := packs(); n <= 2 {
		t.Fatalf("%d packs after three notified promotions; the test needs more than the limit", n)
	}
	e.Notify(image) // a pass is due: housekeeping waits for it
	before := packs()
	e.Housekeep(ctx)
	if n := packs(); n != before {
		t.Errorf("Housekeep with a pass due compacted %d packs to %d", before, n)
	}
	<-e.Kicks()
	if err := e.ReconcileKicked(ctx); err != nil {
		t.Fatal(err)
	}
	e.Housekeep(ctx)
	if n := packs(); n > 2 {
		t.Errorf("%d packs after Housekeep; the limit is 2", n)
	}
	if st, _ := e.StatusOf("develop-frontend"); st.CurrentTag != "1.2.4" {
		t.Errorf("develop-frontend at %s after compaction, want 1.2.4", st.CurrentTag)
	}
}

// A registry may notify before its tag list shows the pushed tag (the CNCF distribution
// registry does): the pass is asked for again shortly after, not only at the next interval.
func TestNotify_AsksForAnotherPassForRegistriesThatNotifyBeforeListing(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1")
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	e.Notify(f.reg.host + "/team/frontend")
	select {
	case <-e.Kicks():
	default:
		t.Fatal("no pass asked for at once after a push to a watched repository")
	}
	select {
	case <-e.Kicks():
	case <-time.After(NotifyRechecks[0] + 10*time.Second):
		t.Fatalf("no second pass asked for within %s of the notification", NotifyRechecks[0]+10*time.Second)
	}
}

// A registry's push notification names repositories; the stages reading one of them from the
// registry are due at once, the others (and stages fed by an upstream) are not.
func TestNotify_PushedRepositoryMakesItsStagesDue(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1")
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream = "develop-frontend"
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), staging, f.spec("develop-backend", "develop/backend", "backend")})

	if got := e.Notify(f.reg.host + "/team/other"); len(got) != 0 {
		t.Fatalf("a push to another repository made %q due", got)
	}
	select {
	case <-e.Kicks():
		t.Fatal("a pass was asked for a repository no stage reads")
	default:
	}
	if got := e.Notify(f.reg.host + "/team/frontend"); !reflect.DeepEqual(got, []string{"develop-frontend"}) {
		t.Fatalf("Notify = %q, want develop-frontend only", got)
	}
	select {
	case <-e.Kicks():
	default:
		t.Fatal("no pass asked for after a push to a watched repository")
	}
	// Docker Hub's short names are the same repositories as their long ones.
	hub := f.spec("hub", "hub", "frontend")
	hub.Image = "nginx"
	e2 := f.engine([]Spec{hub})
	if got := e2.Notify("index.docker.io/library/nginx"); !reflect.DeepEqual(got, []string{"hub"}) {
		t.Fatalf("Notify(index.docker.io/library/nginx) = %q for image nginx", got)
	}
}
