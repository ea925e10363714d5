package argocd

import (
	"context"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestRecorder_EventsOnTheApplication(t *testing.T) {
	client := kubefake.NewClientset()
	r := NewRecorder(client, WithRecorderClock(clocktesting.NewFakePassiveClock(tStart)))
	ctx := context.Background()
	fe := AppRef{Namespace: "argocd", Name: "develop-frontend", UID: "uid-develop-frontend"}
	steps := []struct {
		emit        func() error
		reason, typ string
		message     string
	}{
		{func() error { return r.Promoted(ctx, fe, "Promote image from 1.2.1 to 1.2.2") }, ReasonPromoted, corev1.EventTypeNormal, "Promote image from 1.2.1 to 1.2.2"},
		{func() error {
			return r.Failed(ctx, fe, "application unhealthy after promotion: develop-frontend is Degraded")
		}, ReasonPromotionFailed, corev1.EventTypeWarning, "application unhealthy after promotion: develop-frontend is Degraded"},
		{func() error { return r.RolledBack(ctx, fe, "Roll back image from 1.2.2 to 1.2.1") }, ReasonRolledBack, corev1.EventTypeNormal, "Roll back image from 1.2.2 to 1.2.1"},
		{func() error { return r.Misconfigured(ctx, fe, strings.Repeat("x", 2000)) }, ReasonMisconfigured, corev1.EventTypeWarning, strings.Repeat("x", 1021) + "..."},
	}
	for _, s := range steps {
		if err := s.emit(); err != nil {
			t.Fatal(err)
		}
	}
	list, err := client.CoreV1().Events("argocd").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != len(steps) {
		t.Fatalf("%d events, want %d", len(list.Items), len(steps))
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	for i, s := range steps {
		ev := list.Items[i]
		io := ev.InvolvedObject
		if ev.Reason != s.reason || ev.Type != s.typ || ev.Message != s.message || io.Kind != "Application" || io.APIVersion != "argoproj.io/v1alpha1" ||
			io.Name != "develop-frontend" || io.Namespace != "argocd" || io.UID != "uid-develop-frontend" || ev.Source.Component != "kropipe-promoter" || !ev.LastTimestamp.Time.Equal(tStart) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
}
