package page_test

import (
	htmlpkg "html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// withGroups makes develop-frontend + develop-backend release group develop/shop and the
// staging pair staging/shop, and waits for their statuses.
func withGroups(t *testing.T, p *promoter) {
	t.Helper()
	groups := []stage.GroupSpec{
		{Name: "develop/shop", Members: []string{"develop-frontend", "develop-backend"}},
		{Name: "staging/shop", Members: []string{"staging-frontend", "staging-backend"}},
	}
	if err := p.engine.SetSpecs(p.engine.Specs(), groups...); err != nil {
		t.Fatal(err)
	}
	p.engine.Notify(p.registry+"/team/frontend", p.registry+"/team/backend")
	p.waitFor(t, "the groups' statuses", func() bool {
		dev, _ := p.engine.StatusOf("develop/shop")
		stg, _ := p.engine.StatusOf("staging/shop")
		return dev.CurrentTag != "" && stg.CurrentTag != ""
	})
}

var cardRE = regexp.MustCompile(`(?s)<article class="card[^"]*" id="stage-([^"]+)".*?</article>`)

// With two release groups, each member shows once on the pipeline, as a row inside its
// group's card, and in no image lane; the group's card has no run-on value heading.
func TestPage_ReleaseGroupIsOneCardWithItsMembers(t *testing.T) {
	p := startPromoter(t, "")
	withGroups(t, p)
	_, html := newVisitor(t, p.url).get("/")
	cards := map[string]string{}
	for _, m := range cardRE.FindAllStringSubmatch(html, -1) {
		cards[m[1]] = m[0]
	}
	members := map[string]string{
		"develop-frontend": "develop/shop", "develop-backend": "develop/shop",
		"staging-frontend": "staging/shop", "staging-backend": "staging/shop",
	}
	for m, g := range members {
		if _, ok := cards[m]; ok {
			t.Errorf("member %s has a card of its own", m)
		}
		if n := strings.Count(html, `href="/stages/`+m+`"`); n != 1 {
			t.Errorf("member %s is linked %d times on the page, want once", m, n)
		}
		if !strings.Contains(cards[g], `<tr id="member-`+m+`"`) {
			t.Errorf("group %s's card has no row for %s", g, m)
		}
	}
	if !strings.Contains(cards["develop/shop"], "release group") || strings.Contains(cards["develop/shop"], `<p class="value">`) {
		t.Errorf("develop/shop's card: want a release group's card with member rows, no value heading:\n%s", cards["develop/shop"])
	}
	// The group's own page shows the same card, members as rows.
	if _, page := newVisitor(t, p.url).get("/stages/develop%2Fshop"); !strings.Contains(page, `<tr id="member-develop-frontend"`) || strings.Contains(page, `<p class="value">`) {
		t.Errorf("develop/shop's page does not show its members as rows")
	}
	if _, ok := cards["prod-frontend"]; !ok {
		t.Error("prod-frontend, no member of a group, lost its card")
	}
}

// Rolling back a member from the page confirms its group's rollback; acting on the member
// alone takes a second choice, which shows the CLI's --member warning, and then rolls back
// that member only.
func TestPage_MemberActionAsksBeforeActingAlone(t *testing.T) {
	p := startPromoter(t, "")
	withGroups(t, p)
	v := newVisitor(t, p.url)
	code, html := v.get("/stages/develop-frontend/confirm?action=rollback")
	if code != http.StatusOK || !strings.Contains(html, "Roll back develop/shop") {
		t.Fatalf("a member's rollback: %d, want the group's confirmation:\n%s", code, html)
	}
	alone := regexp.MustCompile(`<p class="alone"><a href="([^"]+)">`).FindStringSubmatch(html)
	if alone == nil {
		t.Fatalf("the group's confirmation offers no way to act on the member alone:\n%s", html)
	}
	code, html = v.get(strings.ReplaceAll(alone[1], "&amp;", "&"))
	if code != http.StatusOK || !strings.Contains(html, htmlpkg.EscapeString(stage.MemberAloneWarning)) || !strings.Contains(html, "Roll back develop-frontend alone: 1.2.2 → 1.2.1") {
		t.Fatalf("the member-alone confirmation: %d, want the CLI's warning %q:\n%s", code, stage.MemberAloneWarning, html)
	}
	form := url.Values{"csrf": {formToken(t, html)}, "value": {"1.2.1"}, "expect": {"1.2.2"}, "alone": {"1"}}
	if code, body, _ := v.post("/stages/develop-frontend/rollback", form, nil); code != http.StatusSeeOther {
		t.Fatalf("rolling back the member alone: %d %s", code, body)
	}
	if got := p.lastSubject(t); got != "Roll back image from 1.2.2 to 1.2.1" {
		t.Fatalf("newest commit %q, want the member's own rollback", got)
	}
	if st, _ := p.engine.StatusOf("develop-backend"); st.CurrentTag != "2.1.0" {
		t.Errorf("the other member moved too: %s", st.CurrentTag)
	}
	// Without the choice, the same form is refused as the CLI refuses it without --member.
	form.Set("expect", "1.2.1")
	form.Del("alone")
	if code, body, _ := v.post("/stages/develop-frontend/rollback", form, nil); code == http.StatusSeeOther || !strings.Contains(body, "--member") {
		t.Fatalf("a member's rollback without choosing it alone: %d, want the engine's refusal", code)
	}
}
