package verify_test

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/verify"
)

// A verification runs in the Application's destination cluster: its Job, the pod log read
// for a failure, and promoter verify's delete all go there, never to the promoter's own.
func TestJobRunner_RunsInTheRequestsCluster(t *testing.T) {
	ctx := context.Background()
	local, remote := fake.NewClientset(), fake.NewClientset()
	r := verify.NewJobRunner(local)
	req := request("c0ffee00")
	req.Cluster = &verify.Cluster{Name: "prod-eu", Kube: remote}
	if res, err := r.Run(ctx, req, smokeJob); err != nil || res.Phase != verify.Running {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if creates(local) != 0 || creates(remote) != 1 {
		t.Fatalf("Jobs created: %d in the promoter's cluster, %d in the destination; want 0 and 1", creates(local), creates(remote))
	}
	name := verify.JobName(req.Stage, "smoke", req.Freight.ID(), req.Commit)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-x7k2p", Namespace: ns, Labels: map[string]string{"job-name": name}}, Status: corev1.PodStatus{
		Phase:             corev1.PodFailed,
		ContainerStatuses: []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "checked prod-eu: 500"}}}},
	}}
	if _, err := remote.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setCondition(t, remote, name, batchv1.JobFailed, "BackoffLimitExceeded")
	res, err := r.Run(ctx, req, smokeJob)
	if err != nil || res.Phase != verify.Failed || res.Log != "checked prod-eu: 500" {
		t.Fatalf("Run = %+v, %v; want the destination's Job failed with its pod's message", res, err)
	}
	if n, err := r.Forget(ctx, req.Cluster, ns, req.Stage, req.Value); err != nil || n != 1 {
		t.Fatalf("Forget = %d, %v; want the destination's Job deleted", n, err)
	}
	if list, _ := remote.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("Jobs left in the destination: %d", len(list.Items))
	}
}

func TestAnalysisRunner_RunsInTheRequestsCluster(t *testing.T) {
	ctx := context.Background()
	local := newAnalysisFixture(false)
	remote := newAnalysisFixture(true, template("AnalysisTemplate", ns, "http", []string{"http"}))
	kube := fake.NewClientset()
	kube.Fake.Resources = remote.disc.Resources
	req := request("c0ffee00")
	req.Cluster = &verify.Cluster{Name: "prod-eu", Kube: kube, Dynamic: remote.dyn}
	res, err := local.runner().Run(ctx, req, []verify.TemplateRef{{Name: "http"}})
	if err != nil || res.Phase != verify.Running {
		t.Fatalf("Run = %+v, %v; want the AnalysisRun running in the destination (its templates and Rollouts are there)", res, err)
	}
	if local.count("create") != 0 || remote.count("create") != 1 {
		t.Fatalf("AnalysisRuns created: %d in the promoter's cluster, %d in the destination; want 0 and 1", local.count("create"), remote.count("create"))
	}
	if n, err := local.runner().Forget(ctx, req.Cluster, ns, req.Stage, req.Value); err != nil || n != 1 {
		t.Fatalf("Forget = %d, %v; want the destination's run deleted", n, err)
	}
}
