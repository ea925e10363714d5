package page_test

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// The filter box's words must each be in a stage's name, image or values; a state keeps
// the stages in it; the attention view keeps what needs a human: failed, waiting for
// approval, inconclusive, paused, held.
func TestFilter_MatchesWordsStatesAndAttention(t *testing.T) {
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
		{"state=approval", []string{"approval"}},
		{"state=wait", []string{"approval", "inconclusive", "soak"}},
		{"view=attention", []string{"approval", "failed", "held", "inconclusive", "paused"}},
		{"view=attention&q=frontend", []string{"approval", "inconclusive"}},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		f := page.ParseFilter(q)
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
		if again := page.ParseFilter(f.Values()); again != f {
			t.Errorf("?%s: %+v reads back as %+v", tt.query, f, again)
		}
	}
}

// Without JavaScript, on a fleet of 1,000 stages: the filter box's query parameters narrow
// the cards, the attention view lists only what needs a human, its count is in the header,
// and ?group-by= puts the lanes under collapsible headings.
func TestPage_FindYourWayWithoutJavaScript(t *testing.T) {
	f, srv := serveFleet(t, 1000)
	v := newVisitor(t, srv.URL)
	count := func(html string) int { return strings.Count(html, `<article class="card`) }
	_, all := v.get("/")
	if n := count(all); n != 1000-4+2 { // four members folded into two groups
		t.Fatalf("the whole pipeline shows %d cards", n)
	}
	wantHeader := fmt.Sprintf(`Needs attention <b>%d</b>`, f.attention())
	if !strings.Contains(all, wantHeader) {
		t.Errorf("the header lacks %q", wantHeader)
	}
	tests := []struct {
		query string
		cards int
		check func(html string) error
	}{
		{"q=svc042", 4, nil},
		{"q=prod-eu+svc04", 10, nil}, // prod-eu-svc040 … 049
		{"q=registry.example.com/team/svc007", 4, nil},
		{"state=approval", 0, func(html string) error {
			if n := strings.Count(html, `data-state="wait approval"`); n != count(html) || n == 0 {
				return fmt.Errorf("%d of %d cards wait for approval", n, count(html))
			}
			return nil
		}},
		{"view=attention", f.attention(), func(html string) error {
			for _, m := range regexp.MustCompile(`data-state="([^"]*)"`).FindAllStringSubmatch(html, -1) {
				if !slices.ContainsFunc(strings.Fields(m[1]), func(s string) bool { return slices.Contains(page.Attention, s) }) {
					return fmt.Errorf("the attention view shows a card that is %q", m[1])
				}
			}
			return nil
		}},
		{"group-by=project&q=svc00", 0, func(html string) error {
			// svc000 … svc007 are team-00's, svc008 and svc009 team-01's.
			if !strings.Contains(html, `<details class="section" open><summary><h2>team-00</h2>`) || !strings.Contains(html, "<h2>team-01</h2>") || strings.Contains(html, "<h2>team-02</h2>") {
				return errors.New("svc00x's lanes are not under their projects team-00 and team-01")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		_, html := v.get("/?" + tt.query)
		if tt.cards > 0 && count(html) != tt.cards {
			t.Errorf("?%s shows %d cards, want %d", tt.query, count(html), tt.cards)
		}
		if tt.check != nil {
			if err := tt.check(html); err != nil {
				t.Errorf("?%s: %v", tt.query, err)
			}
		}
		if !strings.Contains(html, `<form class="find" id="find" method="get" action="/"`) {
			t.Errorf("?%s: no filter form", tt.query)
		}
	}
}
