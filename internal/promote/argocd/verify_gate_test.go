package argocd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

// repoSource reads verification manifests from a clone, as the controller's does from the
// engine's.
type repoSource struct{ repo *gitwrite.Repo }

func (s repoSource) ReadAt(ctx context.Context, _ stage.Spec, commit, p string) (map[string][]byte, error) {
	return s.repo.ReadAt(ctx, commit, p)
}

func (repoSource) Previous(context.Context, stage.Spec, string) string { return "1.2.1" }

type verifyFixture struct {
	*gateFixture
	kube   *fake.Clientset
	source repoSource
	commit string
}

// newVerifyFixture serves testdata/verify-seed and makes develop-frontend's Application
// Synced and Healthy at its commit, with kropipe.io/verify-job set to dir.
func newVerifyFixture(t *testing.T, dir string) *verifyFixture {
	ctx := context.Background()
	srv := gitserver.StartTB(t)
	if _, err := srv.NewBareRepo(ctx, "gitops.git", "testdata/verify-seed"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitwrite.Open(ctx, t.TempDir(), srv.URL("gitops.git"), gitwrite.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	_, commit, err := repo.Read(ctx, "main", "develop/frontend/instance.yaml", "spec.values.deployment.tag")
	if err != nil {
		t.Fatal(err)
	}
	f := &verifyFixture{gateFixture: newGateFixture(t), kube: fake.NewClientset(), source: repoSource{repo}, commit: commit}
	b := f.apps["develop-frontend"]
	b.Verify = &Verification{Job: "develop/frontend/" + dir, Namespace: "develop-frontend", Timeout: 5 * time.Minute}
	f.apps["develop-frontend"] = b
	f.argo("develop-frontend", argoStatus(commit, "Synced", "Healthy", "Succeeded", ""))
	return f
}

func (f *verifyFixture) gate() *HealthGate {
	return f.gateFixture.gate(WithVerification(f.source, verify.NewJobRunner(f.kube, verify.WithClock(f.clock))))
}

func (f *verifyFixture) jobName() string {
	return verify.JobName("develop-frontend", "smoke", fr.ID(), f.commit)
}

func (f *verifyFixture) finish(typ batchv1.JobConditionType) {
	f.t.Helper()
	ctx := context.Background()
	j, err := f.kube.BatchV1().Jobs("develop-frontend").Get(ctx, f.jobName(), metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	j.Status.Conditions = []batchv1.JobCondition{{Type: typ, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"}}
	if _, err := f.kube.BatchV1().Jobs("develop-frontend").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *verifyFixture) jobCreates() int {
	n := 0
	for _, a := range f.kube.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			n++
		}
	}
	return n
}

func TestHealthGate_VerificationJob(t *testing.T) {
	tests := []struct {
		name     string
		outcome  batchv1.JobConditionType
		wantErr  string // "" when the freight is verified
		failures int
	}{
		{name: "PassesWhenTheJobCompletes", outcome: batchv1.JobComplete},
		{name: "FailsAndIsReportedOnceForRollback", outcome: batchv1.JobFailed, wantErr: "verification failed for 1.2.2: job %s failed (BackoffLimitExceeded)", failures: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newVerifyFixture(t, "verify")
			ctx := context.Background()
			g := f.gate()
			err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
			if !errors.Is(err, stage.ErrPending) || g.Waiting("develop-frontend") != "verifying: job "+f.jobName()+" (running 0s)" {
				t.Fatalf("Verify = %v, Waiting %q; want verifying", err, g.Waiting("develop-frontend"))
			}
			f.finish(tt.outcome)
			// A new gate is a restarted promoter or a new leader: it adopts the Job.
			g = f.gate()
			for range 2 {
				err = g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Verify = %v, want verified", err)
			}
			if want := fmt.Sprintf(tt.wantErr, f.jobName()); tt.wantErr != "" && (err == nil || !errors.Is(err, ErrVerificationFailed) || !strings.Contains(err.Error(), want)) {
				t.Fatalf("Verify = %v, want %q", err, want)
			}
			if n := f.jobCreates(); n != 1 {
				t.Errorf("%d Jobs created, want 1", n)
			}
			run := g.Verification("develop-frontend")
			wantPhase := map[batchv1.JobConditionType]string{batchv1.JobComplete: "Passed", batchv1.JobFailed: "Failed"}[tt.outcome]
			if run == nil || run.Phase != wantPhase || run.Value != "1.2.2" || run.Commit != f.commit {
				t.Errorf("Verification = %+v, want %s of 1.2.2 at %s", run, wantPhase, f.commit)
			}
			fails := g.TakeFailures()
			if len(fails) != tt.failures {
				t.Fatalf("failures = %v, want %d", fails, tt.failures)
			}
			if tt.failures > 0 && (!fails[0].AutoRollback || fails[0].Value != "1.2.2" || !errors.Is(fails[0].Err, ErrVerificationFailed)) {
				t.Errorf("failure = %+v", fails[0])
			}
		})
	}
}

func TestHealthGate_VerificationWaitsForSyncedAndHealthy(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	f.argo("develop-frontend", argoStatus(f.commit, "Synced", "Progressing", "Succeeded", ""))
	err := f.gate().Verify(context.Background(), spec("develop-frontend"), fr, f.commit)
	if !errors.Is(err, stage.ErrPending) || strings.HasPrefix(err.Error(), "verifying") {
		t.Fatalf("Verify = %v, want waiting for Argo CD", err)
	}
	if n := f.jobCreates(); n != 0 {
		t.Fatalf("%d Jobs created before the Application was Healthy", n)
	}
}

func TestHealthGate_VerificationBadInputFailsOnlyThatStage(t *testing.T) {
	tests := []struct{ name, dir, want string }{
		{"NotAJob", "notajob", `stage "develop-frontend": kropipe.io/verify-job: develop/frontend/notajob/cm.yaml: document 1: not a usable verification Job: it is v1 ConfigMap`},
		{"Missing", "nope", `stage "develop-frontend": kropipe.io/verify-job: ` + gitwrite.ErrFileNotFound.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newVerifyFixture(t, tt.dir)
			g := f.gate()
			err := g.Verify(context.Background(), spec("develop-frontend"), fr, f.commit)
			if err == nil || errors.Is(err, stage.ErrPending) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want %q", err, tt.want)
			}
			if run := g.Verification("develop-frontend"); run == nil || run.Phase != "Error" || run.Message != err.Error() {
				t.Errorf("Verification = %+v, want Error %q", run, err)
			}
			if fails := g.TakeFailures(); len(fails) != 0 {
				t.Fatalf("a bad manifest must not roll back the freight: %v", fails)
			}
			// Another stage of the same gate is not affected.
			f.argo("develop-backend", argoStatus(f.commit, "Synced", "Healthy", "Succeeded", ""))
			if err := g.Verify(context.Background(), spec("develop-backend"), fr, f.commit); err != nil {
				t.Fatalf("develop-backend: %v", err)
			}
		})
	}
}

// withAnalysis gives develop-frontend the AnalysisTemplate http (declaring the argument
// value) instead of its Job, in a cluster with Argo Rollouts; it returns the gate, the
// Rollouts client and the approvals store.
func (f *verifyFixture) withAnalysis(t *testing.T) (*HealthGate, *dynamicfake.FakeDynamicClient, *stage.MemoryStore) {
	b := f.apps["develop-frontend"]
	b.Verify = &Verification{Analysis: []verify.TemplateRef{{Name: "http"}}, Namespace: "develop-frontend", Timeout: 5 * time.Minute}
	f.apps["develop-frontend"] = b
	tmpl := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
		"metadata": map[string]any{"name": "http", "namespace": "develop-frontend"},
		"spec": map[string]any{
			"args":    []any{map[string]any{"name": "value"}},
			"metrics": []any{map[string]any{"name": "http", "provider": map[string]any{"web": map[string]any{"url": "http://127.0.0.1/{{args.value}}"}}}},
		},
	}}
	rollouts := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		verify.AnalysisRunGVR: "AnalysisRunList", verify.AnalysisTemplateGVR: "AnalysisTemplateList",
	}, tmpl)
	disc := f.kube.Discovery().(*fakediscovery.FakeDiscovery)
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "argoproj.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "analysisruns", Namespaced: true}}}}
	store := &stage.MemoryStore{}
	return f.gateFixture.gate(WithAnalysis(verify.NewAnalysisRunner(rollouts, disc, verify.WithClock(f.clock)), store)), rollouts, store
}

// analysisPhase plays Argo Rollouts: the stage's AnalysisRun reached phase.
func analysisPhase(t *testing.T, rollouts *dynamicfake.FakeDynamicClient, commit, phase, message string) {
	t.Helper()
	ctx := context.Background()
	res := rollouts.Resource(verify.AnalysisRunGVR).Namespace("develop-frontend")
	run, err := res.Get(ctx, verify.RunName("develop-frontend", fr.ID(), commit), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run.Object["status"] = map[string]any{"phase": phase, "message": message}
	if _, err := res.Update(ctx, run, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestHealthGate_AnalysisFailedIsReportedForRollback(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	g, rollouts, _ := f.withAnalysis(t)
	ctx := context.Background()
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("Verify = %v, want pending", err)
	}
	analysisPhase(t, rollouts, f.commit, "Failed", `Metric "http" assessed Failed due to failed (1) > failureLimit (0)`)
	err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
	if !errors.Is(err, ErrVerificationFailed) || !strings.Contains(err.Error(), `analysis `+verify.RunName("develop-frontend", fr.ID(), f.commit)+` failed: Metric "http" assessed Failed`) {
		t.Fatalf("Verify = %v", err)
	}
	if fails := g.TakeFailures(); len(fails) != 1 || !fails[0].AutoRollback || !errors.Is(fails[0].Err, ErrVerificationFailed) {
		t.Fatalf("failures = %v, want one to roll back", fails)
	}
}

func TestHealthGate_AnalysisInconclusiveHoldsUntilApproved(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	g, rollouts, store := f.withAnalysis(t)
	ctx := context.Background()
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("Verify = %v, want pending", err)
	}
	name := verify.RunName("develop-frontend", fr.ID(), f.commit)
	analysisPhase(t, rollouts, f.commit, "Inconclusive", "no data")
	approve := func(at time.Time) {
		st, _ := store.Load(ctx)
		st.Approvals["develop-frontend"] = append(st.Approvals["develop-frontend"], stage.Approval{Value: "1.2.2", ApprovedAt: at})
		if err := store.Save(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	// An approval from before the run (e.g. of a manual promotion) does not decide it.
	approve(f.clock.Now().Add(-time.Hour))
	f.clock.Step(time.Minute)
	err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
	want := "verification inconclusive: analysis " + name + " inconclusive: no data; a human decides: promoter approve develop-frontend 1.2.2 passes it, promoter rollback develop-frontend rejects it"
	if !errors.Is(err, stage.ErrPending) || err.Error() != want {
		t.Fatalf("Verify = %v, want %q", err, want)
	}
	if fails := g.TakeFailures(); len(fails) != 0 {
		t.Fatalf("inconclusive is not a failure: %v", fails)
	}
	approve(f.clock.Now())
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); err != nil {
		t.Fatalf("Verify after approval = %v", err)
	}
}

// keep plays the engine: it saves the gate's last run of the stage in store, as the engine
// does after each Verify (stage.RunReporter).
func keep(t *testing.T, g *HealthGate, store stage.Store) {
	t.Helper()
	ctx := context.Background()
	run, ok := g.LastRun("develop-frontend")
	if !ok {
		t.Fatal("the gate reported no run")
	}
	st, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Runs["develop-frontend"] = append(st.Runs["develop-frontend"], run)
	if err := store.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
}

// A failed verification is a verdict kept in the promoter's state: a restarted promoter or a
// new leader reports the same failure (for the rollback) from there, even when the Job is
// gone, and starts no second Job.
func TestHealthGate_FailedVerificationSurvivesRestartWithoutItsJob(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	ctx := context.Background()
	store := &stage.MemoryStore{}
	gate := func() *HealthGate {
		return f.gateFixture.gate(WithVerification(f.source, verify.NewJobRunner(f.kube, verify.WithClock(f.clock))), WithRecords(store))
	}
	g := gate()
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("Verify = %v, want pending", err)
	}
	f.finish(batchv1.JobFailed)
	first := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
	if !errors.Is(first, ErrVerificationFailed) {
		t.Fatalf("Verify = %v, want failed", first)
	}
	keep(t, g, store)
	if err := f.kube.BatchV1().Jobs("develop-frontend").Delete(ctx, f.jobName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	g = gate()
	err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
	if err == nil || err.Error() != first.Error() {
		t.Fatalf("Verify after a restart = %v, want the kept failure %q", err, first)
	}
	if n := f.jobCreates(); n != 1 {
		t.Errorf("%d Jobs created, want 1: a verdict is not asked again", n)
	}
	if fails := g.TakeFailures(); len(fails) != 1 || !fails[0].AutoRollback {
		t.Fatalf("failures = %v, want the failure handed over once for the rollback", fails)
	}
	// promoter verify forgets the verdict; the engine then drops its runs of the value.
	if err := g.Reverify(ctx, "develop-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, stage.State{}); err != nil {
		t.Fatal(err)
	}
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("Verify after promoter verify = %v, want a new Job running", err)
	}
	if n := f.jobCreates(); n != 2 {
		t.Errorf("%d Jobs created, want 2 after promoter verify", n)
	}
}

// An inconclusive analysis holds the stage across a restart even when its AnalysisRun is gone,
// and an approval made after the run started still passes it.
func TestHealthGate_InconclusiveHoldSurvivesRestart(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	g, rollouts, store := f.withAnalysis(t)
	ctx := context.Background()
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("Verify = %v, want pending", err)
	}
	analysisPhase(t, rollouts, f.commit, "Inconclusive", "no data")
	held := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
	keep(t, g, store)
	name := verify.RunName("develop-frontend", fr.ID(), f.commit)
	if err := rollouts.Resource(verify.AnalysisRunGVR).Namespace("develop-frontend").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	disc := f.kube.Discovery()
	g = f.gateFixture.gate(WithAnalysis(verify.NewAnalysisRunner(rollouts, disc, verify.WithClock(f.clock)), store))
	f.clock.Step(time.Minute)
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) || err.Error() != held.Error() {
		t.Fatalf("Verify after a restart = %v, want still held: %v", err, held)
	}
	creates := 0
	for _, a := range rollouts.Actions() {
		if a.GetVerb() == "create" {
			creates++
		}
	}
	if creates != 1 {
		t.Fatalf("%d AnalysisRuns created, want 1", creates)
	}
	st, _ := store.Load(ctx)
	st.Approvals["develop-frontend"] = []stage.Approval{{Value: "1.2.2", ApprovedAt: f.clock.Now()}}
	if err := store.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); err != nil {
		t.Fatalf("Verify after approval = %v", err)
	}
	if run, _ := g.LastRun("develop-frontend"); run.Phase != "Passed" || !strings.HasSuffix(run.Message, "approved by promoter approve") {
		t.Fatalf("run after approval %+v", run)
	}
}

// A verdict kept in the promoter's state judges the freight at the commit it ran for: the
// same freight promoted again (after a rollback) at a new commit is verified again, and the
// earlier failure is neither its verdict nor handed over for a second rollback.
func TestHealthGate_KeptVerdictOfAnEarlierCommitDoesNotJudgeANewOne(t *testing.T) {
	for _, phase := range []string{"Failed", "Inconclusive"} {
		t.Run(phase, func(t *testing.T) {
			f := newVerifyFixture(t, "verify")
			ctx := context.Background()
			store := &stage.MemoryStore{}
			st, _ := store.Load(ctx)
			st.Runs["develop-frontend"] = []stage.VerificationRun{{Value: "1.2.2", Freight: fr.ID(), Commit: "0123456789abcdef0123456789abcdef01234567", Phase: phase, Message: "job old failed"}}
			if err := store.Save(ctx, st); err != nil {
				t.Fatal(err)
			}
			g := f.gateFixture.gate(WithVerification(f.source, verify.NewJobRunner(f.kube, verify.WithClock(f.clock))), WithRecords(store))
			err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit)
			if !errors.Is(err, stage.ErrPending) || !strings.HasPrefix(err.Error(), "verifying: job ") {
				t.Fatalf("Verify at the new commit = %v, want a new Job running", err)
			}
			if n := f.jobCreates(); n != 1 {
				t.Errorf("%d Jobs created, want 1", n)
			}
			if fails := g.TakeFailures(); len(fails) != 0 {
				t.Errorf("failures = %v, want none: the earlier commit's verdict is not this one's", fails)
			}
		})
	}
}

// atCommit reads the verification manifests at one commit whatever commit is asked: the
// test's later promotion commits exist only in the Application's status.
type atCommit struct {
	repoSource
	commit string
}

func (s atCommit) ReadAt(ctx context.Context, spec stage.Spec, _, p string) (map[string][]byte, error) {
	return s.repoSource.ReadAt(ctx, spec, s.commit, p)
}

// A freight rolled back and promoted again between two passes reaches the gate at a new
// promotion commit while the gate still tracks its earlier one: that is a new deployment,
// verified by a new Job, not judged by the earlier commit's failure.
func TestHealthGate_RePromotionOfTheSameFreightIsVerifiedAgain(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	ctx := context.Background()
	const again = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2"
	newest := f.commit // the stage's newest promotion commit in Git
	g := f.gateFixture.gate(
		WithVerification(atCommit{f.source, f.commit}, verify.NewJobRunner(f.kube, verify.WithClock(f.clock))),
		WithSyncIf(func(_ context.Context, _ stage.Spec, commit string) bool { return commit == newest }),
	)
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("Verify = %v, want pending", err)
	}
	f.finish(batchv1.JobFailed)
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, ErrVerificationFailed) {
		t.Fatalf("Verify = %v, want failed", err)
	}
	if fails := g.TakeFailures(); len(fails) != 1 {
		t.Fatalf("failures = %v, want one", fails)
	}

	newest = again
	f.argo("develop-frontend", argoStatus(again, "Synced", "Healthy", "Succeeded", ""))
	err := g.Verify(ctx, spec("develop-frontend"), fr, again)
	want := "verifying: job " + verify.JobName("develop-frontend", "smoke", fr.ID(), again) + " (running"
	if !errors.Is(err, stage.ErrPending) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Verify at the new promotion = %v, want %q", err, want)
	}
	if n := f.jobCreates(); n != 2 {
		t.Errorf("%d Jobs created, want 2: one per promotion", n)
	}
	if run, _ := g.LastRun("develop-frontend"); run.Commit != again || run.Phase != "Running" {
		t.Errorf("last run %+v, want running at %s", run, again)
	}
}

// In pull-request mode the verification Jobs come from the merge Argo CD synced (what landed
// the proposal), not from kropipe's commit on the pull request's branch.
func TestHealthGate_PullRequestModeVerifiesAtTheMergeThatLandedIt(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	const proposal = "9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a"
	g := f.gateFixture.gate(
		WithVerification(f.source, verify.NewJobRunner(f.kube, verify.WithClock(f.clock))),
		WithLanded(func(_ context.Context, _ stage.Spec, c string) string {
			if c == proposal {
				return f.commit // the merge
			}
			return ""
		}),
		WithContains(func(_ context.Context, _ stage.Spec, a, d string) bool { return a == proposal && d == f.commit }),
	)
	sp := spec("develop-frontend")
	sp.Write = stage.WritePullRequest
	err := g.Verify(context.Background(), sp, fr, proposal)
	if !errors.Is(err, stage.ErrPending) || g.Waiting("develop-frontend") != "verifying: job "+f.jobName()+" (running 0s)" {
		t.Fatalf("Verify = %v, Waiting %q; want the Job of the merge %s", err, g.Waiting("develop-frontend"), f.commit[:7])
	}
}
