package verify_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

const ns = "frontend-develop"

// seeded serves testdata/seed over HTTP and returns a clone and its commit.
func seeded(t *testing.T) (*gitwrite.Repo, string) {
	t.Helper()
	ctx := context.Background()
	srv := gitserver.StartTB(t)
	if _, err := srv.NewBareRepo(ctx, "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitwrite.Open(ctx, t.TempDir(), srv.URL("gitops.git"), gitwrite.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	_, commit, err := repo.Read(ctx, "main", "apps/develop/instance.yaml", "spec.values.deployment.tag")
	if err != nil {
		t.Fatal(err)
	}
	return repo, commit
}

func request(commit string) verify.Request {
	return verify.Request{
		Stage: "develop-frontend", Namespace: ns,
		Freight: freight.Freight{Image: "registry.example.com/frontend", Tag: "1.2.2"},
		Value:   "1.2.2", Previous: "1.2.1", Commit: commit,
	}
}

// setCondition marks the Job finished as the Job controller would.
func setCondition(t *testing.T, c *fake.Clientset, name string, typ batchv1.JobConditionType, reason string) {
	t.Helper()
	ctx := context.Background()
	j, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: "the Job says so"})
	if _, err := c.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func creates(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			n++
		}
	}
	return n
}

func TestJobRunner(t *testing.T) {
	repo, commit := seeded(t)
	ctx := context.Background()
	files, err := repo.ReadAt(ctx, commit, "apps/develop/verify")
	if err != nil {
		t.Fatal(err)
	}
	req := request(commit)
	name := verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit)

	tests := []struct {
		name string
		// finish plays the Job controller and the kubelet between the first and second Run.
		finish    func(t *testing.T, c *fake.Clientset, clk *clocktesting.FakeClock)
		phase     verify.Phase
		message   string
		log       string
		jobsAfter int
	}{
		{
			name: "PassesWhenTheJobCompletes",
			finish: func(t *testing.T, c *fake.Clientset, _ *clocktesting.FakeClock) {
				setCondition(t, c, name, batchv1.JobComplete, "")
			},
			phase: verify.Passed, message: "job " + name + " completed", jobsAfter: 1,
		},
		{
			name: "FailsWithTheFailedPodsLogTail",
			finish: func(t *testing.T, c *fake.Clientset, _ *clocktesting.FakeClock) {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-x7k2p", Namespace: ns, Labels: map[string]string{"job-name": name}}, Status: corev1.PodStatus{Phase: corev1.PodFailed}}
				if _, err := c.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				setCondition(t, c, name, batchv1.JobFailed, "BackoffLimitExceeded")
			},
			phase: verify.Failed, message: "job " + name + " failed (BackoffLimitExceeded: the Job says so)", log: "fake logs", jobsAfter: 1,
		},
		{
			name: "FailsWithWhatTheFailedContainerSaid",
			finish: func(t *testing.T, c *fake.Clientset, _ *clocktesting.FakeClock) {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-x7k2p", Namespace: ns, Labels: map[string]string{"job-name": name}}, Status: corev1.PodStatus{
					Phase: corev1.PodFailed,
					ContainerStatuses: []corev1.ContainerStatus{{Name: "smoke", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
						ExitCode: 1, Reason: "Error", Message: "GET http://frontend/healthz: 500\n",
					}}}},
				}}
				if _, err := c.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				setCondition(t, c, name, batchv1.JobFailed, "BackoffLimitExceeded")
			},
			phase: verify.Failed, message: "job " + name + " failed (BackoffLimitExceeded: the Job says so)", log: "GET http://frontend/healthz: 500", jobsAfter: 1,
		},
		{
			name: "FailsAtTheDeadlineTheAPIServerEnforced",
			finish: func(t *testing.T, c *fake.Clientset, _ *clocktesting.FakeClock) {
				setCondition(t, c, name, batchv1.JobFailed, "DeadlineExceeded")
			},
			phase: verify.Failed, message: "did not finish within 10m0s", jobsAfter: 1,
		},
		{
			name: "FailsAfterTheTimeoutWhenNothingStopsTheJob",
			finish: func(_ *testing.T, _ *fake.Clientset, clk *clocktesting.FakeClock) {
				clk.Step(10*time.Minute + time.Second)
			},
			phase: verify.Failed, message: "did not finish within 10m0s (kropipe.io/verify-timeout)", jobsAfter: 1,
		},
		{
			name:   "ReportsHowLongItRuns",
			finish: func(_ *testing.T, _ *fake.Clientset, clk *clocktesting.FakeClock) { clk.Step(80 * time.Second) },
			phase:  verify.Running, message: "job " + name + " (running 1m20s)", jobsAfter: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
			res, err := verify.NewJobRunner(c, verify.WithClock(clk)).Run(ctx, req, files)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != verify.Running || res.Message != "job "+name+" (running 0s)" {
				t.Fatalf("first run = %+v, want running 0s", res)
			}
			tt.finish(t, c, clk)
			// A second runner is a restarted promoter or a new leader: it adopts the Job.
			res, err = verify.NewJobRunner(c, verify.WithClock(clk)).Run(ctx, req, files)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != tt.phase || !strings.Contains(res.Message, tt.message) || res.Log != tt.log {
				t.Errorf("Run = %+v, want phase %s, message containing %q, log %q", res, tt.phase, tt.message, tt.log)
			}
			if n := creates(c); n != tt.jobsAfter {
				t.Errorf("%d Jobs created, want %d", n, tt.jobsAfter)
			}
		})
	}
}

func TestJobRunner_CreatesTheJobForTheFreight(t *testing.T) {
	repo, commit := seeded(t)
	ctx := context.Background()
	files, err := repo.ReadAt(ctx, commit, "apps/develop/verify")
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientset()
	req := request(commit)
	if _, err := verify.NewJobRunner(c).Run(ctx, req, files); err != nil {
		t.Fatal(err)
	}
	j, err := c.BatchV1().Jobs(ns).Get(ctx, verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Labels[verify.LabelStage] != "develop-frontend" || j.Labels[verify.LabelFreight] != req.Freight.ID() {
		t.Errorf("labels = %v", j.Labels)
	}
	if d := j.Spec.ActiveDeadlineSeconds; d == nil || *d != 600 {
		t.Errorf("activeDeadlineSeconds = %v, want 600 (the default timeout)", d)
	}
	got := map[string]string{}
	for _, e := range j.Spec.Template.Spec.Containers[0].Env {
		if _, dup := got[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		got[e.Name] = e.Value
	}
	want := map[string]string{
		"URL": "http://frontend", "KROPIPE_STAGE": "develop-frontend", "KROPIPE_IMAGE": "registry.example.com/frontend",
		"KROPIPE_VALUE": "1.2.2", "KROPIPE_PREVIOUS": "1.2.1", "KROPIPE_COMMIT": commit,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("env %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestJobRunner_BadInput(t *testing.T) {
	repo, commit := seeded(t)
	ctx := context.Background()
	tests := []struct {
		name, path, want string
		is               error
	}{
		{"PathOutsideTheRepository", "apps/../../etc", "points outside the repository", gitwrite.ErrPathEscapes},
		{"SymbolicLink", "apps/develop/bad/link.yaml", "apps/develop/bad/link.yaml is a symbolic link", gitwrite.ErrPathEscapes},
		{"MissingPath", "apps/develop/nope", "apps/develop/nope does not exist", gitwrite.ErrFileNotFound},
		{"NotAJob", "apps/develop/bad/pod.yaml", "apps/develop/bad/pod.yaml: document 1: not a usable verification Job: it is v1 Pod", verify.ErrBadManifest},
		{"RestartPolicyAlways", "apps/develop/bad/always.yaml", `spec.template.spec.restartPolicy is "Always"; write Never or OnFailure`, verify.ErrBadManifest},
		{"NoName", "apps/develop/bad/noname.yaml", "metadata.name is missing", verify.ErrBadManifest},
		{"UnknownField", "apps/develop/bad/typo.yaml", `unknown field "backofLimit"`, verify.ErrBadManifest},
		{"TwoJobsOneName", "apps/develop/twice", `apps/develop/twice/b.yaml document 1: not a usable verification Job: the Job name "smoke" is also used by apps/develop/twice/a.yaml document 1`, verify.ErrBadManifest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			files, err := repo.ReadAt(ctx, commit, tt.path)
			if err == nil {
				_, err = verify.NewJobRunner(c).Run(ctx, request(commit), files)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want one containing %q and wrapping %v", err, tt.want, tt.is)
			}
			if n := creates(c); n != 0 {
				t.Errorf("%d Jobs created from bad input", n)
			}
		})
	}
}

func TestJobRunner_RefusesAJobItDidNotCreate(t *testing.T) {
	repo, commit := seeded(t)
	ctx := context.Background()
	files, err := repo.ReadAt(ctx, commit, "apps/develop/verify/smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	req := request(commit)
	foreign := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit), Namespace: ns}}
	c := fake.NewClientset(foreign)
	_, err = verify.NewJobRunner(c).Run(ctx, req, files)
	if err == nil || !strings.Contains(err.Error(), "was not created by kropipe") {
		t.Fatalf("err = %v, want the foreign Job named", err)
	}
}

func TestJobRunner_KeepsTheLastFinishedJobsPerStage(t *testing.T) {
	repo, commit := seeded(t)
	ctx := context.Background()
	files, err := repo.ReadAt(ctx, commit, "apps/develop/verify")
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	r := verify.NewJobRunner(c, verify.WithClock(clk), verify.WithKeep(2))
	var names []string
	for _, tag := range []string{"1.2.1", "1.2.2", "1.2.3", "1.2.4"} {
		req := request(commit)
		req.Freight.Tag, req.Value = tag, tag
		name := verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit)
		names = append(names, name)
		if _, err := r.Run(ctx, req, files); err != nil {
			t.Fatal(err)
		}
		setCondition(t, c, name, batchv1.JobComplete, "")
		if res, err := r.Run(ctx, req, files); err != nil || res.Phase != verify.Passed {
			t.Fatalf("Run(%s) = %+v, %v", tag, res, err)
		}
		clk.Step(time.Minute)
	}
	list, err := c.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, j := range list.Items {
		left = append(left, j.Name)
	}
	slices.Sort(left)
	want := slices.Sorted(slices.Values(names[2:]))
	if !slices.Equal(left, want) {
		t.Errorf("Jobs left = %v, want the newest two %v", left, want)
	}
}

func TestJobRunner_HonoursTTLSecondsAfterFinishedExceptForTheCurrentFreight(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{"verify/smoke.yaml": []byte(`apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
spec:
  ttlSecondsAfterFinished: 60
  template:
    spec:
      restartPolicy: OnFailure
      containers:
        - name: check
          image: busybox
`)}
	c := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	r := verify.NewJobRunner(c, verify.WithClock(clk))
	old, cur := request("c1"), request("c2")
	cur.Freight.Tag, cur.Value = "1.2.3", "1.2.3"
	for _, req := range []verify.Request{old, cur} {
		if _, err := r.Run(ctx, req, files); err != nil {
			t.Fatal(err)
		}
		name := verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit)
		j, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if j.Spec.TTLSecondsAfterFinished != nil || j.Annotations[verify.AnnTTL] != "60" {
			t.Fatalf("ttl left to Kubernetes: spec %v, annotation %q", j.Spec.TTLSecondsAfterFinished, j.Annotations[verify.AnnTTL])
		}
		setCondition(t, c, name, batchv1.JobComplete, "")
	}
	clk.Step(2 * time.Minute)
	if res, err := r.Run(ctx, cur, files); err != nil || res.Phase != verify.Passed {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	list, err := c.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Labels[verify.LabelFreight] != cur.Freight.ID() {
		t.Fatalf("Jobs left = %d (%v), want only the current freight's", len(list.Items), list.Items)
	}
}

func TestJobRunner_WaitsForADeletedRunBeforeVerifyingAgain(t *testing.T) {
	ctx := context.Background()
	req := request("c1")
	now := metav1.NewTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	name := verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit)
	deleting := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: ns, DeletionTimestamp: &now, Finalizers: []string{"foregroundDeletion"},
		Labels: map[string]string{verify.LabelStage: req.Stage, verify.LabelFreight: req.Freight.ID()},
	}, Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}}
	c := fake.NewClientset(deleting)
	files := map[string][]byte{"smoke.yaml": []byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: smoke}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}\n")}
	res, err := verify.NewJobRunner(c).Run(ctx, req, files)
	if err != nil || res.Phase != verify.Running || !strings.Contains(res.Message, "waiting for the previous run to be deleted") {
		t.Fatalf("Run = %+v, %v; want the old verdict ignored", res, err)
	}
}

// BenchmarkJobRunner_RunningJob is the cost of one pass over a stage whose verification Job
// runs: parse the manifest, read the Job, read its state.
func BenchmarkJobRunner_RunningJob(b *testing.B) {
	files := map[string][]byte{"verify/smoke.yaml": []byte(`apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: busybox
          command: ["sh", "-c", "test \"$KROPIPE_VALUE\" != 1.2.3"]
`)}
	r := verify.NewJobRunner(fake.NewClientset())
	req := request("c1")
	ctx := context.Background()
	if _, err := r.Run(ctx, req, files); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := r.Run(ctx, req, files); err != nil || res.Phase != verify.Running {
			b.Fatal(res, err)
		}
	}
}

// smokeJob is one verification Job manifest, as kept in Git.
var smokeJob = map[string][]byte{"verify/smoke.yaml": []byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: smoke}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}\n")}

// finishAll plays the Job controller: every Job still running ends with typ.
func finishAll(t *testing.T, c *fake.Clientset, typ batchv1.JobConditionType) {
	t.Helper()
	list, err := c.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range list.Items {
		if len(j.Status.Conditions) == 0 {
			setCondition(t, c, j.Name, typ, "")
		}
	}
}

// A verdict judges the freight at one promotion commit. The same freight promoted again
// (after a rollback) is a new deployment: the Job of the earlier commit is no verdict on it.
func TestJobRunner_VerdictsAreBoundToThePromotionCommit(t *testing.T) {
	const first, again = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	tests := []struct {
		name    string
		earlier batchv1.JobConditionType // how the earlier commit's Job ended
	}{
		{"APassedJobDoesNotPassTheNewCommit", batchv1.JobComplete},
		{"AFailedJobDoesNotFailTheNewCommit", batchv1.JobFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := fake.NewClientset()
			clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
			r := verify.NewJobRunner(c, verify.WithClock(clk))
			if _, err := r.Run(ctx, request(first), smokeJob); err != nil {
				t.Fatal(err)
			}
			finishAll(t, c, tt.earlier)
			clk.Step(time.Hour) // the rollback, then the promotion again

			res, err := verify.NewJobRunner(c, verify.WithClock(clk)).Run(ctx, request(again), smokeJob)
			if err != nil {
				t.Fatal(err)
			}
			if res.Phase != verify.Running {
				t.Fatalf("Run at the new commit = %+v, want a new Job running", res)
			}
			if n := creates(c); n != 2 {
				t.Fatalf("%d Jobs created, want 2: one per promotion commit", n)
			}
			list, err := c.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			commits := map[string]bool{}
			for _, j := range list.Items {
				commits[j.Annotations["kropipe.io/commit"]] = true
				if want := []string{"KROPIPE_COMMIT"}; !slices.ContainsFunc(j.Spec.Template.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == want[0] && e.Value == j.Annotations["kropipe.io/commit"] }) {
					t.Errorf("Job %s: KROPIPE_COMMIT is not its kropipe.io/commit annotation %q", j.Name, j.Annotations["kropipe.io/commit"])
				}
			}
			if !commits[first] || !commits[again] {
				t.Errorf("Jobs' kropipe.io/commit = %v, want both commits", commits)
			}
			// The earlier commit's own Job is still its verdict: the same commit adopts.
			res, err = r.Run(ctx, request(first), smokeJob)
			if wantPhase := map[batchv1.JobConditionType]verify.Phase{batchv1.JobComplete: verify.Passed, batchv1.JobFailed: verify.Failed}[tt.earlier]; err != nil || res.Phase != wantPhase {
				t.Errorf("Run at the earlier commit = %+v, %v; want %s from its own Job", res, err, wantPhase)
			}
			if n := creates(c); n != 2 {
				t.Errorf("%d Jobs created, want 2: the same commit adopts", n)
			}
		})
	}
}

// Two commits that start alike give their Jobs the same name: the earlier one's Job is
// replaced, never adopted.
func TestJobRunner_ReplacesAJobOfAnotherCommitWithTheSameName(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	r := verify.NewJobRunner(c)
	first, again := request("aaaaaaaa1111111111111111111111111111111"), request("aaaaaaaa2222222222222222222222222222222")
	if verify.JobName(first.Stage, "smoke", first.Freight.ID(), first.Commit) != verify.JobName(again.Stage, "smoke", again.Freight.ID(), again.Commit) {
		t.Fatal("the fixture's commits must give the same Job name")
	}
	if _, err := r.Run(ctx, first, smokeJob); err != nil {
		t.Fatal(err)
	}
	finishAll(t, c, batchv1.JobComplete)
	res, err := r.Run(ctx, again, smokeJob)
	if err != nil || res.Phase != verify.Running || !strings.Contains(res.Message, "waiting for the previous run to be deleted") {
		t.Fatalf("Run = %+v, %v; want the other commit's Job deleted, not adopted", res, err)
	}
	res, err = r.Run(ctx, again, smokeJob)
	if err != nil || res.Phase != verify.Running || creates(c) != 2 {
		t.Fatalf("Run = %+v, %v, %d creates; want the new commit's Job running", res, err, creates(c))
	}
}
