package promoter_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// Verification in a hub-and-spoke Argo CD: spoke-develop deploys to the stack's second cluster
// (its own kube-apiserver, registered as the Argo CD cluster Secret "spoke", reachable only with
// that Secret's token), and its verification Job runs there, never in the promoter's own
// cluster. The Job gates the stage: 1.2.2 passes in the spoke and is verified; 1.2.3 fails there
// with the smoke test's message and is rolled back.
func TestController_VerificationJobRunsInTheDestinationCluster(t *testing.T) {
	if st.Spoke == nil {
		t.Fatal("the stack runs no spoke cluster (stack.WithSpokeCluster)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	v := newVerifyPipeline(t, ctx)
	v.apps = []string{spokeDevelop}
	seed := v.seedRepo(spokeRepo, "spoke", map[string]string{"develop/frontend/verify/smoke.yaml": smokeJob("1.2.3", spokeSmokeFailure, false)})
	if _, err := st.Spoke.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: spokeDevelop}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	v.createSpokeApp()
	v.syncByHand(spokeDevelop, seed)
	v.waitApp(spokeDevelop, "Synced and Healthy at the seed in the spoke", syncedHealthyAt(seed))

	a := v.startPromoter("promoter-spoke")
	v.waitLeader("promoter-spoke")
	v.waitStage(a, spokeDevelop, "verified 1.2.1 in the spoke", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1"
	})

	pushImage(t, st.RegistryAddr, "spoke/frontend", "1.2.2")
	develop := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	verified := v.waitStage(a, spokeDevelop, "verified 1.2.2 by the spoke's Job", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	})
	if verified.VerifiedFreight.Commit != develop || verified.Verification == nil || !strings.Contains(verified.Verification.Message, "in Argo CD cluster "+stack.SpokeClusterName) {
		t.Errorf("develop verified %+v, verification %+v; want 1.2.2 at %s by a Job in cluster %s", verified.VerifiedFreight, verified.Verification, develop, stack.SpokeClusterName)
	}
	if jobs := spokeJobs(t, ctx, st.Spoke.Kube, "1.2.2"); len(jobs) != 1 || !jobComplete(jobs[0]) {
		t.Errorf("1.2.2's Jobs in the spoke: %v, want one, Complete", names(jobs))
	}
	if jobs := spokeJobs(t, ctx, st.Kube, ""); len(jobs) != 0 {
		t.Errorf("verification Jobs in the promoter's own cluster: %v, want none", names(jobs))
	}

	pushImage(t, st.RegistryAddr, "spoke/frontend", "1.2.3")
	bad := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.2 to 1.2.3", develop)
	v.waitCommit("develop/frontend/instance.yaml", "Roll back image from 1.2.3 to 1.2.2", bad)
	v.waitStage(a, spokeDevelop, "back at 1.2.2, saying the spoke's Job failed 1.2.3", func(s stageStatus) bool {
		return s.CurrentTag == "1.2.2" && strings.Contains(s.Reason, "1.2.3 failed verification") && strings.Contains(s.Reason, spokeSmokeFailure)
	})
	if jobs := spokeJobs(t, ctx, st.Spoke.Kube, "1.2.3"); len(jobs) != 1 {
		t.Errorf("1.2.3's Jobs in the spoke: %v, want the one that failed", names(jobs))
	}
}

const (
	spokeRepo    = "spoke-gitops"
	spokeDevelop = "spoke-develop"
	// spokeSmokeFailure is what the modelled smoke test prints when it fails in the spoke.
	spokeSmokeFailure = "smoke (spoke): GET /healthz answered 500"
)

// createSpokeApp creates Application spoke-develop deploying develop/frontend of spokeRepo to
// the spoke cluster, verified by its smoke Job, rolled back when it fails.
func (v *verifyPipeline) createSpokeApp() {
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: spokeDevelop, Namespace: stack.ArgoCDNamespace, Annotations: map[string]string{
			"argocd.argoproj.io/manifest-generate-paths": ".;/rgds",
			"kropipe.io/image":                           st.RegistryAddr + "/spoke/frontend",
			"kropipe.io/strategy":                        "semver",
			"kropipe.io/constraint":                      "^1.2",
			"kropipe.io/auto-promote":                    "true",
			"kropipe.io/interval":                        crashInterval.String(),
			"kropipe.io/verify-job":                      "verify",
			"kropipe.io/verify-timeout":                  "5m",
			"kropipe.io/auto-rollback":                   "true",
		}},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL: v.srv.RepoURL(spokeRepo), Path: "develop/frontend", TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{{Name: "rgd-paths", String_: ptr.To("rgds")}}},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.Spoke.APIServerURL, Namespace: spokeDevelop},
		},
	}
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Create(v.ctx, app, metav1.CreateOptions{}); err != nil {
		v.t.Fatalf("create Application %s: %v", spokeDevelop, err)
	}
}

// spokeJobs are spoke-develop's verification Jobs of value ("" for all) in the cluster kube reaches.
func spokeJobs(t *testing.T, ctx context.Context, kube kubernetes.Interface, value string) []batchv1.Job {
	t.Helper()
	list, err := kube.BatchV1().Jobs(spokeDevelop).List(ctx, metav1.ListOptions{LabelSelector: "kropipe.io/stage=" + spokeDevelop})
	if err != nil {
		t.Fatal(err)
	}
	var out []batchv1.Job
	for _, j := range list.Items {
		if value == "" || j.Annotations["kropipe.io/value"] == value {
			out = append(out, j)
		}
	}
	return out
}

func jobComplete(j batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
