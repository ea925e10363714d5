package stage

import (
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

func TestPullRequestSummary_SaysWhereItStandsAndWhoMustAct(t *testing.T) {
	no := false
	tests := []struct {
		name string
		pr   PullRequest
		want string
	}{
		{"open, checks pending, a human must merge",
			PullRequest{PullRequest: forge.PullRequest{Number: 12, State: forge.Open, Checks: forge.ChecksPending}, Action: "waiting for a human to merge"},
			"#12 open, checks pending, waiting for a human to merge"},
		{"no checks reported", PullRequest{PullRequest: forge.PullRequest{Number: 12, State: forge.Open, Checks: forge.ChecksNone}}, "#12 open"},
		{"conflicts", PullRequest{PullRequest: forge.PullRequest{Number: 3, State: forge.Open, Checks: forge.ChecksPassed, Mergeable: &no}},
			"#3 open, checks passed, the forge says it cannot be merged"},
		{"merged", PullRequest{PullRequest: forge.PullRequest{Number: 12, State: forge.Merged, MergedBy: "alice", Checks: forge.ChecksPassed}}, "#12 merged by alice"},
		{"closed unmerged", PullRequest{PullRequest: forge.PullRequest{Number: 12, State: forge.Closed, ClosedBy: "bob"}}, "#12 closed unmerged by bob"},
		{"the forge fails and is retried",
			PullRequest{PullRequest: forge.PullRequest{Head: "kropipe/prod-frontend"}, LastError: "gitea: opening a pull request: HTTP 503", Attempts: 2, NextAttempt: time.Date(2026, 12, 7, 15, 0, 30, 0, time.UTC)},
			"from kropipe/prod-frontend not opened yet, the forge failed 2 time(s), the last: gitea: opening a pull request: HTTP 503; next attempt 15:00:30Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pr.Summary(); got != tt.want {
				t.Fatalf("Summary() = %q\nwant %q", got, tt.want)
			}
		})
	}
}
