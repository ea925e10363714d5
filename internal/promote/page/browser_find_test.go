package page_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// visibleCards counts the cards the browser shows (the filter hides the others).
const visibleCards = `[...document.querySelectorAll("article.card")].filter(c => c.offsetParent !== null).length`

// TestBrowser_ReleaseGroups: with two release groups each member shows once, as a row of
// its group's card; rolling a member back asks first about the group, and acting on the
// member alone shows the CLI's warning before it commits.
func TestBrowser_ReleaseGroups(t *testing.T) {
	exe := chromium(t)
	p := startPromoter(t, "")
	withGroups(t, p)
	ctx := browser(t, exe)
	do(t, ctx, "opening the pipeline",
		chromedp.EmulateViewport(1100, 800),
		chromedp.Navigate(p.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[id="stage-develop/shop"]`)),
	)
	for m, g := range map[string]string{"develop-frontend": "develop/shop", "develop-backend": "develop/shop", "staging-frontend": "staging/shop", "staging-backend": "staging/shop"} {
		where := run(t, ctx, "finding "+m, chromedp.Evaluate[[]string](fmt.Sprintf(
			`[...document.querySelectorAll('a[href="/stages/%s"]')].map(a => a.closest("article").id)`, m)))
		if len(where) != 1 || where[0] != "stage-"+g {
			t.Errorf("member %s shows in %v, want once, in stage-%s", m, where, g)
		}
	}
	screenshot(t, ctx, "pipeline-page-groups.png")
	do(t, ctx, "narrowing to 320 px", chromedp.EmulateViewport(320, 640), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[id="stage-develop/shop"]`)))
	if w := run(t, ctx, "measuring", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 320 {
		wide := run(t, ctx, "finding", chromedp.Evaluate[[]string](`[...document.querySelectorAll("*")].filter(e => e.getBoundingClientRect().right > 320).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`))
		t.Errorf("at 320 px the page with release groups is %d px wide: %v", w, wide)
	}
	do(t, ctx, "widening", chromedp.EmulateViewport(1100, 800), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`[id="stage-develop/shop"]`)))

	click(t, ctx, `#member-develop-frontend a.member-rollback`)
	if h := run(t, ctx, "reading the confirmation", chromedp.Text(chromedp.CSS(`.confirm h2`))); !strings.HasPrefix(h, "Roll back develop/shop") {
		t.Fatalf("a member's rollback confirms %q, want its group's", h)
	}
	click(t, ctx, `.confirm .alone a`)
	warning := run(t, ctx, "reading the warning", chromedp.Text(chromedp.CSS(`.alone-warning`)))
	if !strings.Contains(warning, stage.MemberAloneWarning) {
		t.Fatalf("acting alone warns %q, want the CLI's %q", warning, stage.MemberAloneWarning)
	}
	if h := run(t, ctx, "reading the confirmation", chromedp.Text(chromedp.CSS(`.confirm h2`))); h != "Roll back develop-frontend alone: 1.2.2 → 1.2.1" {
		t.Fatalf("the member-alone confirmation %q", h)
	}
	click(t, ctx, `.confirm button[type=submit]`)
	waitJS(t, ctx, "the rollback's result", `(document.querySelector(".done") || {}).textContent?.startsWith("Rolled back to 1.2.1: commit ")`)
	if got := p.lastSubject(t); got != "Roll back image from 1.2.2 to 1.2.1" {
		t.Fatalf("newest commit %q", got)
	}
}

// TestBrowser_FindYourWayIn1000Stages: on a fleet of 1,000 stages, typing in the filter box
// narrows the lanes at once (no reload), and the attention view lists only what needs a
// human, as many as the header counts.
func TestBrowser_FindYourWayIn1000Stages(t *testing.T) {
	exe := chromium(t)
	f, srv := serveFleet(t, 1000)
	ctx := browser(t, exe)
	do(t, ctx, "opening the pipeline",
		chromedp.EmulateViewport(1100, 800),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#q`)),
		chromedp.Evaluate[chromedp.Void](`window.kropipeMarker = 1`),
	)
	if n := run(t, ctx, "counting cards", chromedp.Evaluate[int](visibleCards)); n != 998 {
		t.Fatalf("%d cards before filtering", n)
	}
	do(t, ctx, "typing in the filter", chromedp.SendKeys(chromedp.CSS(`#q`), "svc042"))
	waitJS(t, ctx, "four cards", visibleCards+` === 4`)
	lanes := run(t, ctx, "counting lanes", chromedp.Evaluate[int](`[...document.querySelectorAll("section.lane")].filter(l => l.offsetParent !== null).length`))
	if lanes != 1 {
		t.Errorf("%d lanes shown for svc042, want its one", lanes)
	}
	if !run(t, ctx, "reading the marker", chromedp.Evaluate[bool](`window.kropipeMarker === 1 && location.search === "?q=svc042"`)) {
		t.Error("filtering reloaded the page, or the address does not hold the filter")
	}
	if s := run(t, ctx, "reading the count", chromedp.Text(chromedp.CSS(`#shown`))); s != "4 of 998" {
		t.Errorf("the count says %q", s)
	}

	want := f.attention()
	if h := run(t, ctx, "reading the header", chromedp.Text(chromedp.CSS(`.attention a.all`))); h != fmt.Sprintf("Needs attention %d", want) {
		t.Errorf("the header says %q, want %d needing attention", h, want)
	}
	click(t, ctx, `.attention a.all`)
	if n := run(t, ctx, "counting cards", chromedp.Evaluate[int](visibleCards)); n != want {
		t.Errorf("the attention view shows %d cards, want %d", n, want)
	}
	other := run(t, ctx, "reading the states", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("article.card")].map(c => c.dataset.state).filter(s => !s.split(" ").some(x => ["failed","waiting-approval","inconclusive","paused","held"].includes(x)))`))
	if len(other) > 0 {
		t.Errorf("the attention view shows cards that need nobody: %v", other)
	}
}

// TestBrowser_FreightJourney: from develop-frontend's value, the freight page follows 1.2.2
// through develop → staging → prod with each stage's commit.
func TestBrowser_FreightJourney(t *testing.T) {
	exe := chromium(t)
	p := startPromoter(t, "")
	commits := takeToProd(t, p)
	ctx := browser(t, exe)
	do(t, ctx, "opening the pipeline",
		chromedp.EmulateViewport(1100, 800),
		chromedp.Navigate(p.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#stage-develop-frontend a.current`)),
	)
	click(t, ctx, `#stage-develop-frontend a.current`)
	do(t, ctx, "waiting for the journey", chromedp.WaitVisible(chromedp.CSS(`ol.journey`)))
	order := run(t, ctx, "reading the journey", chromedp.Evaluate[[]string](`[...document.querySelectorAll(".journey-stage.runs h3 a")].map(a => a.textContent)`))
	if strings.Join(order, " → ") != "develop-frontend → staging-frontend → prod-frontend" {
		t.Fatalf("1.2.2 runs in %v", order)
	}
	for s, c := range commits {
		text := run(t, ctx, "reading "+s, chromedp.Text(chromedp.CSS(`#journey-`+s)))
		if !strings.Contains(text, "promoted from 1.2.1") || !strings.Contains(text, c) {
			t.Errorf("%s's journey lacks its promotion commit %s:\n%s", s, c, text)
		}
	}
	screenshot(t, ctx, "freight-page.png")
}
