package stagefilter_test

import (
	"net/url"
	"reflect"
	"slices"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// The filter box's words must each be in a stage's name, image or values; a state keeps
// the stages in it; the attention view keeps what needs a human: failed, waiting for
// approval, inconclusive, paused, held.
func TestFilter_MatchesWordsStatesAndAttentionAsThePageDoes(t *testing.T) {
	cand := freight.Freight{Image: "registry.example.com/team/frontend", Tag: "1.2.3", Digest: "sha256:abc"}
	sts := map[string]stage.Status{
		"ok":           {Name: "develop-frontend", Image: cand.Image, CurrentTag: "1.2.3", Candidate: &cand, Decision: stage.DecisionUpToDate},
		"failed":       {Name: "develop-backend", Image: "registry.example.com/team/backend", Decision: stage.DecisionFailed, Error: "push refused"},
		"approval":     {Name: "staging-frontend", Image: cand.Image, CurrentTag: "1.2.2", Candidate: &cand, Decision: stage.DecisionWait, Reason: "waiting for approval of 1.2.3"},
		"soak":         {Name: "prod-frontend", Image: cand.Image, CurrentTag: "1.2.2", Decision: stage.DecisionWait, Reason: "waiting for the upstream's soak, 4m left"},
		"inconclusive": {Name: "prod-eu-frontend", Image: cand.Image, Decision: stage.DecisionWait, Verification: &stage.VerificationRun{Phase: "Inconclusive"}},
		"paused":       {Name: "prod-backend", Decision: stage.DecisionHold, Paused: true},
		"held":         {Name: "prod-eu-backend", Decision: stage.DecisionHold, Reason: "1.2.1 would go backwards"},
		"group":        {Name: "develop/shop", Members: []stage.MemberStatus{{Stage: "develop-cart", Current: "3.1.0", Candidate: "3.2.0"}}},
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"approval", "failed", "group", "held", "inconclusive", "ok", "paused", "soak"}},
		{"q=frontend", []string{"approval", "inconclusive", "ok", "soak"}},
		{"q=FRONTEND+staging", []string{"approval"}},
		{"q=1.2.3", []string{"approval", "ok"}}, // a candidate's tag
		{"q=sha256:abc", []string{"approval", "ok"}},
		{"q=team/backend", []string{"failed"}},
		{"q=3.2.0", []string{"group"}}, // a member's candidate
		{"q=cart", []string{"group"}},
		{"state=failed", []string{"failed"}},
		{"state=waiting-approval", []string{"approval"}},
		{"state=wait", []string{"approval", "inconclusive", "soak"}},
		{"view=attention", []string{"approval", "failed", "held", "inconclusive", "paused"}},
		{"view=attention&q=frontend", []string{"approval", "inconclusive"}},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		f, err := stagefilter.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for k, st := range sts {
			if f.Match(st) {
				got = append(got, k)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("?%s keeps %v, want %v", tt.query, got, tt.want)
		}
		if again, _ := stagefilter.Parse(f.Values()); !reflect.DeepEqual(again, f) {
			t.Errorf("?%s: %+v reads back as %+v", tt.query, f, again)
		}
	}
}
