package stagefilter

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

var (
	failed   = stage.Status{Name: "develop-frontend", Image: "registry.example.com/team/frontend", File: "develop/frontend/instance.yaml", CurrentTag: "1.2.1", Decision: stage.DecisionFailed, Reason: "push refused", Sync: &stage.SyncStatus{Application: "argocd/develop-frontend"}, Origin: stage.Origin{Namespace: "web-develop"}}
	approval = stage.Status{Name: "prod-frontend", Image: "registry.example.com/team/frontend", File: "prod/frontend/instance.yaml", CurrentTag: "1.2.0", Candidate: &freight.Freight{Tag: "1.2.2"}, Decision: stage.DecisionWait, Reason: "waiting for approval of 1.2.2", Origin: stage.Origin{ApplicationSet: "argocd/services", Project: "prod", File: "pipelines/prod.yaml"}}
	paused   = stage.Status{Name: "staging-backend", Image: "registry.example.com/team/backend", File: "staging/backend/instance.yaml", CurrentTag: "3.1.0", Decision: stage.DecisionHold, Reason: "paused", Paused: true, Group: "staging-shop"}
	odd      = stage.Status{Name: "develop-odd", Image: "registry.example.com/team/odd", CurrentTag: "0.1.0", Decision: stage.DecisionUpToDate, Verification: &stage.VerificationRun{Phase: "Inconclusive"}}
	shop     = stage.Status{Name: "staging-shop", Decision: stage.DecisionHold, Reason: "held", Members: []stage.MemberStatus{{Stage: "staging-backend", Current: "3.1.0"}}}
	fine     = stage.Status{Name: "develop-fine", Image: "registry.example.com/team/fine", CurrentTag: "2.0.0", Decision: stage.DecisionUpToDate}
	all      = []stage.Status{failed, approval, paused, odd, shop, fine}
)

func TestFilter_MatchesLikeAPersonLooks(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"develop-frontend", "prod-frontend", "staging-backend", "develop-odd", "staging-shop", "develop-fine"}},
		{"q=FRONTEND", []string{"develop-frontend", "prod-frontend"}},
		{"q=1.2.2", []string{"prod-frontend"}},          // the candidate's value
		{"q=team/backend", []string{"staging-backend"}}, // the image
		{"q=frontend+1.2.2", []string{"prod-frontend"}}, // every word, anywhere
		{"q=frontend+9.9.9", nil},
		{"view=attention", []string{"develop-frontend", "prod-frontend", "staging-backend", "develop-odd", "staging-shop"}},
		{"state=up-to-date", []string{"develop-odd", "develop-fine"}}, // a decision
		{"state=up-to-date&view=attention", []string{"develop-odd"}},
		{"state=failed", []string{"develop-frontend"}},
		{"state=waiting-approval,inconclusive", []string{"prod-frontend", "develop-odd"}},
		{"state=paused", []string{"staging-backend"}},
		{"state=held", []string{"staging-shop"}},
		{"group=staging-shop", []string{"staging-backend", "staging-shop"}},
		{"appset=argocd/services&project=prod", []string{"prod-frontend"}},
		{"namespace=web-develop", []string{"develop-frontend"}},
		{"file=develop", []string{"develop-frontend"}},
		{"file=pipelines/prod.yaml", []string{"prod-frontend"}},
		{"q=frontend&state=failed", []string{"develop-frontend"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			f, err := Parse(q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, st := range all {
				if f.Match(st) {
					got = append(got, st.Name)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s matches %v, want %v", tc.query, got, tc.want)
			}
			if back, _ := Parse(f.Values()); !reflect.DeepEqual(back, f) {
				t.Errorf("Values does not read back: %+v, want %+v", back, f)
			}
		})
	}
}

func TestParse_UnknownStateNamesTheKnownOnes(t *testing.T) {
	_, err := Parse(url.Values{"state": {"broken"}})
	if err == nil || !strings.Contains(err.Error(), "state=broken") || !strings.Contains(err.Error(), "waiting-approval") {
		t.Fatalf("err = %v", err)
	}
}
