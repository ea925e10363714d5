package promoter_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// "Promote only if tests pass" on the real stack: develop runs a verification Job from Git
// (kropipe.io/verify-job) after each promotion, with kropipe.io/auto-rollback; staging takes only
// what develop verified, after a soak. kwok runs no containers, so the Job's test is modelled by
// kwok stage rules (e2e/stack/kwokstages.go): the pod fails with the smoke test's message when
// KROPIPE_VALUE is 1.2.3, and otherwise runs until the test releases it, then completes.
//
// 1.2.2 passes and reaches staging after the soak — its Job still running when the leader is
// SIGKILLed, so the standby adopts it (no second Job, no second commit). 1.2.3 fails: the
// smoke test's message is in `promoter status`, the API and an Event, auto-rollback commits
// `Roll back image from 1.2.3 to 1.2.2` once, staging never sees 1.2.3, and a restarted
// promoter still says why without running the Job again.
func TestController_VerificationJobGatesTheStage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	v := newVerifyPipeline(t, ctx)
	seed := v.seed()
	for _, ns := range []string{verifyDevelop, verifyStaging} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	v.bindVerifyRole(verifyDevelop)
	for _, app := range v.apps {
		v.syncByHand(app, seed)
	}
	for _, app := range v.apps {
		v.waitApp(app, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	}

	a := v.startPromoter("promoter-verify-a")
	v.waitLeader("promoter-verify-a")
	// 1.2.1 ran before kropipe: it is verified by the Job too.
	v.release("1.2.1")
	v.waitStage(a, verifyDevelop, "verified 1.2.1", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1"
	})
	b := v.startPromoter("promoter-verify-b")

	// 1.2.2: its Job runs when the leader dies; the standby adopts it.
	pushImage(t, st.RegistryAddr, "verify/frontend", "1.2.2")
	develop := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	job := v.waitRunningJob("1.2.2")
	if got := v.stage(a, verifyDevelop); got.VerifiedFreight == nil || got.VerifiedFreight.Value != "1.2.1" {
		t.Fatalf("develop verified %+v while 1.2.2's Job runs, want still 1.2.1", got.VerifiedFreight)
	}
	a.Kill()
	v.waitLeader("promoter-verify-b")
	v.waitStage(b, verifyDevelop, "verifying 1.2.2 with the adopted Job", func(s stageStatus) bool {
		return s.Verification != nil && s.Verification.Value == "1.2.2" && s.Verification.Phase == "Running" &&
			strings.Contains(s.Reason, "verifying: job "+job.Name+" (running ")
	})
	v.release("1.2.2")
	dv := v.waitStage(b, verifyDevelop, "verified 1.2.2", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	}).VerifiedFreight
	if dv.Commit != develop {
		t.Errorf("develop verified 1.2.2 at %s, want the promotion commit %s", dv.Commit, develop)
	}
	if jobs := v.jobs("1.2.2"); len(jobs) != 1 || jobs[0].UID != job.UID {
		t.Errorf("1.2.2's verification Jobs: %v, want only %s (uid %s), adopted by the new leader", names(jobs), job.Name, job.UID)
	}
	staging := v.waitCommit("staging/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", develop)
	if at := v.commitTime(staging); at.Before(dv.VerifiedAt.Add(v.soak).Truncate(time.Second)) {
		t.Errorf("staging promoted at %s, before develop's verification %s + soak %s", at, dv.VerifiedAt, v.soak)
	}
	if got := v.log(seed); strings.Count(strings.TrimSpace(got), "\n") != 1 {
		t.Errorf("commits since the seed:\n%s\nwant develop's and staging's promotion of 1.2.2, none repeated", got)
	}

	// 1.2.3 fails its smoke test: rolled back once, never in staging.
	pushImage(t, st.RegistryAddr, "verify/frontend", "1.2.3")
	bad := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.2 to 1.2.3", staging)
	rolledBack := v.waitCommit("develop/frontend/instance.yaml", "Roll back image from 1.2.3 to 1.2.2", bad)
	if rejected := strings.TrimSpace(v.git("log", "-1", "--format=%(trailers:key=Kropipe-Rejected,valueonly)", rolledBack)); rejected != "1.2.3" {
		t.Errorf("rollback commit trailer Kropipe-Rejected = %q, want 1.2.3", rejected)
	}
	// 1.2.2 runs again at the rollback commit: a new Job verifies it there (its first Job
	// judged the promotion commit); the test lets it pass.
	v.poll("a second verification pod of 1.2.2, for the rollback commit", syncTimeout, func() (bool, string) {
		pods, err := v.pods("1.2.2")
		if err != nil {
			return false, err.Error()
		}
		return len(pods) == 2, fmt.Sprintf("%d pods, Jobs %v", len(pods), names(v.jobs("1.2.2")))
	})
	v.release("1.2.2")
	why := v.waitStage(b, verifyDevelop, "back at 1.2.2, saying why 1.2.3 was rolled back", func(s stageStatus) bool {
		return s.CurrentTag == "1.2.2" && s.VerifiedFreight != nil && s.VerifiedFreight.Commit == rolledBack &&
			strings.Contains(s.Reason, "1.2.3 failed verification") && strings.Contains(s.Reason, smokeFailure)
	})
	v.waitStage(b, verifyDevelop, "two more passes", func(s stageStatus) bool { return s.CheckedAt.After(why.CheckedAt.Add(2 * crashInterval)) })
	if head := v.head(); head != rolledBack {
		t.Errorf("the promoter committed after its rollback:\n%s", v.log(rolledBack))
	}
	if got := v.git("log", "--format=%s", seed+"..HEAD", "--", "staging/frontend"); strings.TrimSpace(got) != "Promote image from 1.2.1 to 1.2.2" {
		t.Errorf("staging's commits:\n%s\nwant only its promotion of 1.2.2", got)
	}
	v.wantEvent(verifyDevelop, "PromotionFailed", smokeFailure)
	v.wantEvent(verifyDevelop, "RolledBack", "Roll back image from 1.2.3 to 1.2.2")
	table, err := exec.CommandContext(ctx, st.Binaries.Promoter, "status", "--addr", b.addr).CombinedOutput()
	if err != nil || !strings.Contains(string(table), smokeFailure) {
		t.Errorf("promoter status --addr %s: %v\n%s\nwant the smoke test's %q", b.addr, err, table, smokeFailure)
	}
	t.Logf("promoter status:\n%s", table)

	// A restarted promoter keeps the verdict: it says why, and runs no Job for 1.2.3 again.
	b.Stop()
	c := v.startPromoter("promoter-verify-c")
	v.waitLeader("promoter-verify-c")
	v.waitStage(c, verifyDevelop, "still saying why 1.2.3 was rolled back", func(s stageStatus) bool {
		return s.CurrentTag == "1.2.2" && strings.Contains(s.Reason, smokeFailure)
	})
	if jobs := v.jobs("1.2.3"); len(jobs) != 1 {
		t.Errorf("1.2.3's verification Jobs: %v, want the one that failed", names(jobs))
	}
	if head := v.head(); head != rolledBack {
		t.Errorf("the restarted promoter committed:\n%s", v.log(rolledBack))
	}
}

// The test's names: a Git repository, Applications, images and namespaces of its own, so it
// shares the package's stack with the others in any order.
const (
	verifyRepo    = "verify-gitops"
	verifyDevelop = "verify-develop"
	verifyStaging = "verify-staging"
	// smokeFailure is what the modelled smoke test prints when it fails.
	smokeFailure = "smoke: GET /healthz answered 500"
)

// smokeJob is develop's verification Job (develop/frontend/verify/smoke.yaml): its container
// prints failure and fails for failValue. kwok cannot run it; the annotations tell kwok's stage
// rules what it would do (hold: the pod keeps running until the test releases it).
func smokeJob(failValue, failure string, hold bool) string {
	held := ""
	if hold {
		held = "\n        " + stack.KwokHold + `: "true"`
	}
	return `# The frontend's smoke test, run by the promoter after each promotion to develop.
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        # kwok runs no containers: e2e/stack/kwokstages.go models this one with these.` + held + `
        ` + stack.KwokFailWhenValue + `: "` + failValue + `"
        ` + stack.KwokFailureMessage + `: "` + failure + `"
    spec:
      restartPolicy: Never
      containers:
        - name: smoke
          image: busybox:1.36
          command: [sh, -c, 'if [ "$KROPIPE_VALUE" = ` + failValue + ` ]; then echo "` + failure + `"; exit 1; fi']
          terminationMessagePolicy: FallbackToLogsOnError
`
}

type verifyPipeline struct{ *pipeline }

func newVerifyPipeline(t *testing.T, ctx context.Context) *verifyPipeline {
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, soak: 5 * time.Second, apps: []string{verifyDevelop, verifyStaging}}
	p.installPromoterRBAC()
	// Registered before the replicas start, so it runs after they stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	return &verifyPipeline{p}
}

// seed serves examples/gitops's RGDs and develop frontend (also as staging's) with images under
// verify/ and the smoke Job, pushes 1.2.1 and creates the two Applications.
func (v *verifyPipeline) seed() string {
	seed := v.seedRepo(verifyRepo, "verify", map[string]string{"develop/frontend/verify/smoke.yaml": smokeJob("1.2.3", smokeFailure, true)})
	v.createAppIn(verifyRepo, verifyDevelop, "develop/frontend", "verify/frontend", map[string]string{
		"kropipe.io/verify-job":     "verify",
		"kropipe.io/verify-timeout": "5m",
		"kropipe.io/auto-rollback":  "true",
	})
	v.createAppIn(verifyRepo, verifyStaging, "staging/frontend", "verify/frontend", map[string]string{
		"kropipe.io/upstream": verifyDevelop,
		"kropipe.io/soak":     v.soak.String(),
	})
	return seed
}

// seedRepo creates Git repository repo holding examples/gitops's RGDs and its develop frontend
// (also as staging's) at 1.2.1 with the image under prefix/ of the stack's registry, plus the
// files extra; it pushes prefix/frontend:1.2.1 and returns the seed commit.
func (v *verifyPipeline) seedRepo(repo, prefix string, extra map[string]string) string {
	t := v.t
	if err := v.srv.CreateRepo(v.ctx, repo); err != nil {
		t.Fatal(err)
	}
	co, err := v.srv.Clone(v.ctx, repo, filepath.Join(t.TempDir(), repo))
	if err != nil {
		t.Fatal(err)
	}
	v.co = co
	examples := filepath.Join(repoRoot, "examples", "gitops")
	if err := co.CopyTree(filepath.Join(examples, "rgds"), "rgds"); err != nil {
		t.Fatal(err)
	}
	instance, err := os.ReadFile(filepath.Join(examples, "develop", "frontend", "instance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(instance), "registry.example.com/team/", st.RegistryAddr+"/"+prefix+"/")
	if !tagLine.MatchString(s) {
		t.Fatal("examples/gitops/develop/frontend/instance.yaml: no deployment tag line")
	}
	s = tagLine.ReplaceAllString(s, `${1}"1.2.1"`)
	files := map[string]string{"develop/frontend/instance.yaml": s, "staging/frontend/instance.yaml": s}
	maps.Copy(files, extra)
	for path, data := range files {
		if err := co.WriteFile(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := co.CommitAndPush(v.ctx, "Seed from examples/gitops")
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, st.RegistryAddr, prefix+"/frontend", "1.2.1")
	return seed
}

// createAppIn creates Application name deploying path of Git repository repo into the
// namespace of its name, a stage taking image (under the stack's registry) with the
// annotations extra added.
func (v *verifyPipeline) createAppIn(repo, name, path, image string, extra map[string]string) {
	ann := map[string]string{
		"argocd.argoproj.io/manifest-generate-paths": ".;/rgds",
		"kropipe.io/image":                           st.RegistryAddr + "/" + image,
		"kropipe.io/strategy":                        "semver",
		"kropipe.io/constraint":                      "^1.2",
		"kropipe.io/auto-promote":                    "true",
		"kropipe.io/interval":                        crashInterval.String(),
	}
	for k, val := range extra {
		ann[k] = val
	}
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: stack.ArgoCDNamespace, Annotations: ann},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL: v.srv.RepoURL(repo), Path: path, TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{{Name: "rgd-paths", String_: ptr.To("rgds")}}},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: name},
		},
	}
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Create(v.ctx, app, metav1.CreateOptions{}); err != nil {
		v.t.Fatalf("create Application %s: %v", name, err)
	}
}

// bindVerifyRole applies manifests/promoter/verify-clusterrole.yaml and binds
// kropipe-promoter-verify in ns, as the README tells users to.
func (v *verifyPipeline) bindVerifyRole(ns string) {
	if err := st.ApplyFile(v.ctx, filepath.Join(repoRoot, "manifests", "promoter", "verify-clusterrole.yaml"), ""); err != nil {
		v.t.Fatal(err)
	}
	v.apply(&rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: "kropipe-promoter-verify", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "kropipe-promoter-verify"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kropipe-promoter", Namespace: stack.ArgoCDNamespace}},
	})
}

// jobs are develop's verification Jobs of value.
func (v *verifyPipeline) jobs(value string) []batchv1.Job {
	list, err := st.Kube.BatchV1().Jobs(verifyDevelop).List(v.ctx, metav1.ListOptions{LabelSelector: "kropipe.io/stage=" + verifyDevelop})
	if err != nil {
		v.t.Fatal(err)
	}
	var out []batchv1.Job
	for _, j := range list.Items {
		if j.Annotations["kropipe.io/value"] == value {
			out = append(out, j)
		}
	}
	return out
}

// pods are the pods of develop's verification Jobs of value.
func (v *verifyPipeline) pods(value string) ([]corev1.Pod, error) {
	list, err := st.Kube.CoreV1().Pods(verifyDevelop).List(v.ctx, metav1.ListOptions{LabelSelector: "kropipe.io/stage=" + verifyDevelop})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		for _, e := range p.Spec.Containers[0].Env {
			if e.Name == "KROPIPE_VALUE" && e.Value == value {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// waitRunningJob waits for value's verification Job and its running pod, and returns the Job.
func (v *verifyPipeline) waitRunningJob(value string) batchv1.Job {
	var job batchv1.Job
	v.poll("the verification Job of "+value+" running", syncTimeout, func() (bool, string) {
		jobs := v.jobs(value)
		pods, err := v.pods(value)
		if err != nil {
			return false, err.Error()
		}
		if len(jobs) != 1 || len(pods) != 1 || pods[0].Status.Phase != corev1.PodRunning {
			return false, fmt.Sprintf("jobs %v, %d pods", names(jobs), len(pods))
		}
		job = jobs[0]
		return true, ""
	})
	return job
}

// release lets the running verification pod of value complete (the kwok rule for held pods).
func (v *verifyPipeline) release(value string) {
	v.poll("the verification pod of "+value+" released", syncTimeout, func() (bool, string) {
		pods, err := v.pods(value)
		if err != nil {
			return false, err.Error()
		}
		if len(pods) == 0 {
			return false, "no pod yet"
		}
		for _, p := range pods {
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, stack.KwokReleased)
			if _, err := st.Kube.CoreV1().Pods(verifyDevelop).Patch(v.ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
}

func (v *verifyPipeline) stage(pr *promoter, name string) stageStatus {
	return v.waitStage(pr, name, "answering", func(stageStatus) bool { return true })
}

func names(jobs []batchv1.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.Name
	}
	return out
}
