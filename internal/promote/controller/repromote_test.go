package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

// The same freight promoted again after a rollback is a new deployment: its earlier
// promotion's Complete Job does not verify the new commit; a new Job does.
func TestController_RePromotionAfterRollbackRunsANewVerificationJob(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	e := newClusterEnvFor(t, host, map[string]any{"kropipe.io/verify-job": "verify"})
	c, logs, first := e.startPromoted(t, configFor(""))
	ctx := context.Background()
	jobs := e.kube.BatchV1().Jobs("frontend-develop")
	// completeJobOf waits for the Job verifying value at commit and completes it.
	completeJobOf := func(value, commit string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			list, err := jobs.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range list.Items {
				if j.Annotations[verify.AnnValue] == value && slices.Contains(j.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "KROPIPE_COMMIT", Value: commit}) {
					j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
					if _, err := jobs.UpdateStatus(ctx, &j, metav1.UpdateOptions{}); err != nil {
						t.Fatal(err)
					}
					return j.Name
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no verification Job of %s at %s: %d Jobs\n%s", value, commit, len(list.Items), logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	verifiedAt := func(value, commit string) func(stage.Status) bool {
		return func(st stage.Status) bool {
			return st.VerifiedFreight != nil && st.VerifiedFreight.Value == value && st.VerifiedFreight.Commit == commit
		}
	}
	e.finishSync(t, "develop-frontend", first)
	firstJob := completeJobOf("1.2.2", first)
	waitStage(t, c, logs, "verified 1.2.2", verifiedAt("1.2.2", first))

	if _, err := c.Rollback(ctx, "develop-frontend", "1.2.1", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	back := head(t, e.bare)
	e.waitSyncRequested(t, "develop-frontend", back, logs)
	e.finishSync(t, "develop-frontend", back)
	completeJobOf("1.2.1", back)
	waitStage(t, c, logs, "verified 1.2.1 after the rollback", verifiedAt("1.2.1", back))

	if _, err := c.Promote(ctx, "develop-frontend", "1.2.2", "1.2.1"); err != nil {
		t.Fatal(err)
	}
	again := head(t, e.bare)
	e.waitSyncRequested(t, "develop-frontend", again, logs)
	e.finishSync(t, "develop-frontend", again)
	st := waitStage2(t, c, logs, "verifying 1.2.2 again at the new commit", func(st stage.Status) bool {
		return st.CurrentTag == "1.2.2" && (strings.Contains(st.Reason, "verifying: job ") || verifiedAt("1.2.2", again)(st))
	})
	if verifiedAt("1.2.2", again)(st) || strings.Contains(st.Reason, firstJob) {
		t.Fatalf("1.2.2 at %s judged by the earlier promotion's Job %s: %+v", again, firstJob, st)
	}
	if name := completeJobOf("1.2.2", again); name == firstJob {
		t.Fatalf("the re-promotion's Job is the earlier one, %s", name)
	}
	waitStage(t, c, logs, "verified 1.2.2 at the new commit", verifiedAt("1.2.2", again))
}

// waitStage2 is waitStage returning the status that met ok.
func waitStage2(t *testing.T, c *api.Client, logs *syncBuffer, what string, ok func(stage.Status) bool) stage.Status {
	t.Helper()
	var got stage.Status
	waitStage(t, c, logs, what, func(st stage.Status) bool {
		got = st
		return ok(st)
	})
	return got
}
