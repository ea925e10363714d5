package page_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

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
		{"state=waiting-approval", 0, func(html string) error {
			if n := strings.Count(html, `data-state="wait waiting-approval"`); n != count(html) || n == 0 {
				return fmt.Errorf("%d of %d cards wait for approval", n, count(html))
			}
			return nil
		}},
		{"view=attention", f.attention(), func(html string) error {
			for _, m := range regexp.MustCompile(`data-state="([^"]*)"`).FindAllStringSubmatch(html, -1) {
				if !slices.ContainsFunc(strings.Fields(m[1]), func(s string) bool { return slices.Contains(stagefilter.States, stagefilter.State(s)) }) {
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
