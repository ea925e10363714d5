package printers

import (
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestTable_SyncColumnOnlyWhenAToolReports(t *testing.T) {
	local := []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.1", Decision: stage.DecisionWait, Reason: "up to date"}}
	synced := []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.2", LastCommit: "0123456789abcdef", Decision: stage.DecisionWait, Reason: "up to date",
		Sync: &stage.SyncStatus{Status: "Synced", Health: "Healthy", Revision: "0123456789abcdef", Operation: "Running"}}}
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	owed := []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.2", Decision: stage.DecisionFailed, Reason: "verification failed for 1.2.2",
		Owed: []stage.OwedAction{{Kind: "rollback", From: "1.2.2", Reason: "verification failed for 1.2.2", Since: t0, Attempts: 2, LastError: "pre-receive hook declined", NextAttempt: t0.Add(30 * time.Second)}}}}
	tests := []struct {
		name string
		sts  []stage.Status
		want []string
		not  []string
	}{
		{name: "local mode", sts: local, want: []string{"STAGE", "develop-frontend", "1.2.1", "-"}, not: []string{"SYNC"}},
		{name: "Argo CD mode", sts: synced, want: []string{"SYNC", "0123456", "Synced/Healthy at 0123456, sync running"}},
		{name: "hydrator", sts: []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.2", LastCommit: "5e6f7a8eeee", Decision: stage.DecisionUpToDate, Reason: "up to date",
			Sync: &stage.SyncStatus{Status: "Synced", Health: "Healthy", Revision: "1d1d1d1d1d1d", Hydration: &stage.Hydration{Phase: "Hydrated", DryCommit: "5e6f7a8eeee", HydratedCommit: "1d1d1d1d1d1d"}}}},
			want: []string{"Synced/Healthy at 1d1d1d1 (dry 5e6f7a8)"}},
		{name: "hydration failed", sts: []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.2", Decision: stage.DecisionFailed, Reason: "hydration failed",
			Sync: &stage.SyncStatus{Status: "Synced", Health: "Healthy", Revision: "0d0d0d0d0d", Hydration: &stage.Hydration{Phase: "Failed", DryCommit: "5e6f7a8eeee", LastHydratedCommit: "0d0d0d0d0d"}}}},
			want: []string{"Synced/Healthy at 0d0d0d0, hydration of 5e6f7a8 failed"}},
		{name: "a newer tag not signed as required", sts: []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.2", Decision: stage.DecisionUpToDate, Reason: "up to date at 1.2.2",
			Skipped: []string{"1.2.3: no signature by https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1 (issuer https://token.actions.githubusercontent.com)"}}},
			want: []string{"up to date at 1.2.2 (not signed as required: 1.2.3: no signature by https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1 (issuer https://token.actions.githubusercontent.com))"}},
		{name: "an owed automatic rollback", sts: owed, want: []string{"(rollback from 1.2.2 owed since 15:00:00Z (verification failed for 1.2.2); 2 attempt(s) failed, the last: pre-receive hook declined; next attempt 15:00:30Z)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			Table(&b, tt.sts)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("table has %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestOutcome_SaysWhatWasCommitted(t *testing.T) {
	tests := []struct {
		o    stage.Outcome
		want string
	}{
		{stage.Outcome{Stage: "dev", Old: "1.2.1", New: "1.2.2", Commit: "0123456789", Kind: "promotion"}, "promoted dev: 1.2.1 → 1.2.2 in 0123456\n"},
		{stage.Outcome{Stage: "dev", Old: "1.2.2", New: "1.2.1", Commit: "0123456789", Kind: "rollback"}, "rolled back dev: 1.2.2 → 1.2.1 in 0123456\n"},
		{stage.Outcome{Stage: "dev", New: "1.2.2", Skipped: true}, "dev already holds 1.2.2: nothing committed\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		Outcome(&b, tt.o)
		if b.String() != tt.want {
			t.Errorf("Outcome(%+v) = %q, want %q", tt.o, b.String(), tt.want)
		}
	}
}

func TestStatus_PullRequestLineAndURLInWideAndJSON(t *testing.T) {
	prod := []stage.Status{{Name: "prod-frontend", CurrentTag: "1.2.1", Decision: stage.DecisionWait, Reason: "waiting for pull request #12 to be merged",
		PullRequest: &stage.PullRequest{PullRequest: forge.PullRequest{Number: 12, URL: "https://git.example.com/org/gitops/pulls/12", State: forge.Open, Checks: forge.ChecksPending},
			Action: "waiting for a human to merge", FreightID: "f1", Value: "1.2.2"}}}
	tests := []struct {
		format string
		want   []string
		not    []string
	}{
		{"", []string{"prod-frontend", "\n  pull request #12 open, checks pending, waiting for a human to merge\n"}, []string{"https://"}},
		{"wide", []string{"  pull request #12 open, checks pending, waiting for a human to merge  https://git.example.com/org/gitops/pulls/12\n"}, nil},
		{"json", []string{`"pullRequest": {`, `"number": 12`, `"url": "https://git.example.com/org/gitops/pulls/12"`, `"state": "open"`, `"checks": "pending"`, `"action": "waiting for a human to merge"`}, nil},
	}
	for _, tt := range tests {
		t.Run("format "+tt.format, func(t *testing.T) {
			var b strings.Builder
			if err := Status(&b, prod, tt.format); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("output has %q:\n%s", w, b.String())
				}
			}
		})
	}
	// The pull request's line does not widen the table's columns.
	var with, without strings.Builder
	Table(&with, prod)
	noPR := append([]stage.Status(nil), prod...)
	noPR[0].PullRequest = nil
	Table(&without, noPR)
	if first := strings.SplitN(with.String(), "\n", 2)[0]; first != strings.SplitN(without.String(), "\n", 2)[0] {
		t.Errorf("header moved: %q vs %q", first, strings.SplitN(without.String(), "\n", 2)[0])
	}
	if err := Status(&with, prod, "yaml"); err == nil || !strings.Contains(err.Error(), "table, wide, json") {
		t.Fatalf("unknown format: %v", err)
	}
}

func TestHistory_LinksPullRequests(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	recs := []gitwrite.Record{
		{Commit: "squash0123456789", Time: t0.Add(time.Hour), Kind: gitwrite.Promote, Previous: "1.2.2", Value: "1.2.3"},
		{Commit: "proposed01234567", Time: t0, Kind: gitwrite.Promote, Previous: "1.2.1", Value: "1.2.2"},
		{Commit: "direct0123456789", Time: t0.Add(-time.Hour), Kind: gitwrite.Rollback, Previous: "1.2.2", Value: "1.2.1"},
	}
	prs := []stage.PullRequest{
		{Commit: "proposed01234567", PullRequest: forge.PullRequest{Number: 12, URL: "https://git.example.com/org/gitops/pulls/12", MergeCommit: "merge0123456789"}},
		{Commit: "head0123456789ab", PullRequest: forge.PullRequest{Number: 13, URL: "https://git.example.com/org/gitops/pulls/13", MergeCommit: "squash0123456789"}},
	}
	var b strings.Builder
	History(&b, api.NewHistory("prod-frontend", recs, prs))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "PULL-REQUEST") {
		t.Fatalf("history:\n%s", b.String())
	}
	for i, want := range []string{"PR #13 https://git.example.com/org/gitops/pulls/13", "PR #12 https://git.example.com/org/gitops/pulls/12", "-"} {
		if !strings.HasSuffix(lines[i+1], want) {
			t.Errorf("line %q does not end with %q", lines[i+1], want)
		}
	}
}
