package printers

import (
	"strings"
	"testing"
	"time"

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
