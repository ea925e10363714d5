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

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestRecorder_PullRequestEventsFromStatusTransitions(t *testing.T) {
	const url = "https://git.example.com/org/gitops/pulls/12"
	pr := func(number int, state forge.State, value string) *stage.PullRequest {
		p := &stage.PullRequest{Kind: "promote", FreightID: "f-" + value, Value: value, From: "1.2.1"}
		p.Number, p.URL, p.State = number, url, state
		return p
	}
	merged := pr(12, forge.Merged, "1.2.2")
	merged.MergedBy, merged.MergeCommit = "alice", "0123456789abcdef"
	rollback := pr(12, forge.Open, "1.2.0")
	rollback.Kind = "rollback"
	withdrawn := pr(12, forge.Closed, "1.2.2")
	withdrawn.Action = "superseded by the rollback to 1.2.0, which was pushed"
	type want struct{ reason, typ, message string }
	tests := []struct {
		name string
		t    PullRequestTransition
		want []want
	}{
		{"opened", PullRequestTransition{After: pr(12, forge.Open, "1.2.2")},
			[]want{{ReasonPullRequestOpened, corev1.EventTypeNormal, "stage prod-frontend: opened pull request #12 " + url + ": 1.2.2 (from 1.2.1)"}}},
		{"nothing changed", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), After: pr(12, forge.Open, "1.2.2")}, nil},
		{"updated with newer freight", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), After: pr(12, forge.Open, "1.2.3")},
			[]want{{ReasonPullRequestUpdated, corev1.EventTypeNormal, "pull request #12 " + url + " now proposes 1.2.3 (from 1.2.1) (was 1.2.2 (from 1.2.1))"}}},
		{"a rollback supersedes the pending promotion", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), After: rollback},
			[]want{{ReasonPullRequestUpdated, corev1.EventTypeNormal, "now proposes rollback to 1.2.0"}}},
		{"merged, from the log", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), Log: []stage.PullRequest{*pr(11, forge.Merged, "1.2.1"), *merged}},
			[]want{{ReasonPullRequestMerged, corev1.EventTypeNormal, "pull request #12 " + url + " merged by alice: 1.2.2 (from 1.2.1), merge commit 0123456789ab"}}},
		{"merged, still shown", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), After: merged},
			[]want{{ReasonPullRequestMerged, corev1.EventTypeNormal, "merged by alice"}}},
		{"merged is told once", PullRequestTransition{Before: merged, After: merged}, nil},
		{"closed unmerged by a human", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), Log: []stage.PullRequest{*pr(12, forge.Closed, "1.2.2")},
			Refused: []stage.Refusal{{FreightID: "f-1.2.2", Value: "1.2.2", Number: 12, URL: url, ClosedBy: "bob"}}},
			[]want{{ReasonPullRequestClosed, corev1.EventTypeWarning, "pull request #12 " + url + " closed unmerged by bob: 1.2.2 is rejected for the stage and not proposed again"}}},
		{"closed unmerged, only the refusal remembers it", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"),
			Refused: []stage.Refusal{{Value: "1.2.2", Number: 12, ClosedBy: "bob"}}},
			[]want{{ReasonPullRequestClosed, corev1.EventTypeWarning, "closed unmerged by bob"}}},
		{"withdrawn by kropipe, and the next one opened", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2"), After: pr(13, forge.Open, "1.2.0"), Log: []stage.PullRequest{*withdrawn}},
			[]want{
				{ReasonPullRequestWithdrawn, corev1.EventTypeNormal, "kropipe closed pull request #12 " + url + " (1.2.2 (from 1.2.1)): superseded by the rollback to 1.2.0, which was pushed"},
				{ReasonPullRequestOpened, corev1.EventTypeNormal, "opened pull request #13"},
			}},
		{"gone without a trace: nothing is guessed", PullRequestTransition{Before: pr(12, forge.Open, "1.2.2")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := kubefake.NewClientset()
			r := NewRecorder(client, WithRecorderClock(clocktesting.NewFakePassiveClock(tStart)))
			ctx := context.Background()
			app := AppRef{Namespace: "argocd", Name: "prod-frontend", UID: "uid-prod-frontend"}
			tt.t.Stage = "prod-frontend"
			if err := r.PullRequest(ctx, app, tt.t); err != nil {
				t.Fatal(err)
			}
			list, err := client.CoreV1().Events("argocd").List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != len(tt.want) {
				t.Fatalf("%d events, want %d: %+v", len(list.Items), len(tt.want), list.Items)
			}
			sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
			for i, w := range tt.want {
				ev := list.Items[i]
				if ev.Reason != w.reason || ev.Type != w.typ || !strings.Contains(ev.Message, w.message) || ev.InvolvedObject.Name != "prod-frontend" || ev.InvolvedObject.Kind != "Application" {
					t.Errorf("event %d: %s %s %q\nwant %s %s containing %q", i, ev.Type, ev.Reason, ev.Message, w.typ, w.reason, w.message)
				}
			}
		})
	}
}
