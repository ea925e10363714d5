package page_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestPage_ReadsWithoutJavaScript(t *testing.T) {
	p := startPromoter(t, "")
	v := newVisitor(t, p.url)
	resp, err := v.c.Get(p.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	code, html := v.get("/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{
		`aria-label="lane team/frontend"`,
		`id="stage-develop-frontend"`,
		`id="stage-staging-frontend"`, "waiting for approval of 1.2.2",
		`href="/stages/staging-frontend/confirm?action=approve&amp;value=1.2.2"`,
		`<script src="/assets/page.js?v=`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the pipeline page lacks %s", want)
		}
	}
	// develop-frontend's value links to its freight page.
	if m := currentValue.FindStringSubmatch(html); m == nil || m[2] != "1.2.2" || !strings.HasPrefix(m[1], "/freight/") {
		t.Errorf("the pipeline page does not link develop-frontend's value 1.2.2 to its freight page: %q", m)
	}
	if strings.Contains(html, "<script>") || strings.Contains(html, "style=") {
		t.Error("the page has inline script or style, which its Content-Security-Policy refuses")
	}
	code, html = v.get("/stages/develop-frontend")
	if code != http.StatusOK {
		t.Fatalf("GET stage: %d", code)
	}
	for _, want := range []string{
		"Promote image from 1.2.1 to 1.2.2", // history from the Git trailers
		"<code>1.2.2</code></td><td>the candidate</td>",
		"<code>1.2.1</code></td><td>yes</td><td>within ^1.2; the highest is taken</td>",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the stage page lacks %s", want)
		}
	}
	for _, path := range []string{"/assets/page.css", "/assets/page.js"} {
		if code, _ := v.get(path); code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	// A page read through a name rebound to this address is refused: it would hand the
	// rebinding site the form token.
	req, _ := http.NewRequest(http.MethodGet, p.url+"/", nil)
	req.Host = "evil.example"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET / with Host evil.example: %d, want 421", resp.StatusCode)
	}
}

// TestPage_ActionsNeedTheFormTokenAndTheLogin posts the page's forms the ways a forger or
// a visitor without the token could: each is refused and changes nothing; the logged-in
// visitor's confirmed form acts.
func TestPage_ActionsNeedTheFormTokenAndTheLogin(t *testing.T) {
	const token = "s3cret-t0ken"
	p := startPromoter(t, token)
	v := newVisitor(t, p.url)
	_, html := v.get("/stages/develop-frontend/confirm?action=pause")
	form := url.Values{"csrf": {formToken(t, html)}}

	if code, body, _ := v.post("/stages/develop-frontend/pause", form, nil); code != http.StatusUnauthorized || !strings.Contains(body, "needs its API token") {
		t.Fatalf("pause before logging in: %d", code)
	}
	if code, _, _ := v.post("/login", url.Values{"csrf": form["csrf"], "token": {"wrong"}}, nil); code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong token: %d", code)
	}
	code, _, h := v.post("/login", url.Values{"csrf": form["csrf"], "token": {token}, "next": {"/"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	set := h.Get("Set-Cookie")
	if strings.Contains(set, token) {
		t.Errorf("the session cookie holds the API token: %q", set)
	}
	for _, want := range []string{"kropipe_session=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	refused := []struct {
		name   string
		form   url.Values
		header map[string]string
		code   int
	}{
		{"no form token", url.Values{}, nil, http.StatusForbidden},
		{"a made-up form token", url.Values{"csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, nil, http.StatusForbidden},
		{"cross-site", form, map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"another origin, no fetch metadata", form, map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": ""}, http.StatusForbidden},
		{"rebound name", form, map[string]string{"Host": "evil.example"}, http.StatusForbidden},
	}
	for _, r := range refused {
		if r.header["Host"] != "" {
			// net/http takes Host from the request, not the header map.
			req, _ := http.NewRequest(http.MethodPost, p.url+"/stages/develop-frontend/pause", strings.NewReader(r.form.Encode()))
			req.Host = r.header["Host"]
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := v.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != r.code {
				t.Errorf("%s: %d, want %d", r.name, resp.StatusCode, r.code)
			}
			continue
		}
		if code, _, _ := v.post("/stages/develop-frontend/pause", r.form, r.header); code != r.code {
			t.Errorf("%s: %d, want %d", r.name, code, r.code)
		}
	}
	// Another browser (no form cookie) cannot use this browser's form token.
	if code, _, _ := newVisitor(t, p.url).post("/stages/develop-frontend/pause", form, nil); code != http.StatusForbidden {
		t.Errorf("form token from another browser: %d", code)
	}
	if st, _ := p.engine.StatusOf("develop-frontend"); st.Paused {
		t.Fatal("a refused form paused the stage")
	}
	if code, _, h := v.post("/stages/develop-frontend/pause", form, nil); code != http.StatusSeeOther || h.Get("Location") != "/stages/develop-frontend?did=pause" {
		t.Fatalf("the confirmed pause: %d %s", code, h.Get("Location"))
	}
	if st, _ := p.engine.StatusOf("develop-frontend"); !st.Paused {
		t.Fatal("the confirmed pause did not pause the stage")
	}
	_, html = v.get("/")
	if strings.Contains(html, token) {
		t.Fatal("the page shows the API token")
	}
}

func TestPage_ConfirmationNamesTheExactChange(t *testing.T) {
	p := startPromoter(t, "")
	v := newVisitor(t, p.url)
	code, html := v.get("/stages/develop-frontend/confirm?action=rollback")
	if code != http.StatusOK || !strings.Contains(html, "Roll back develop-frontend: 1.2.2 → 1.2.1") ||
		!strings.Contains(html, "Now: one commit changes spec.values.deployment.tag in develop/frontend/instance.yaml from 1.2.2 to 1.2.1") {
		t.Fatalf("rollback confirmation: %d\n%s", code, html)
	}
	_, html = v.get("/stages/staging-frontend/confirm?action=approve")
	if !strings.Contains(html, "Approve staging-frontend: 1.2.1 → 1.2.2") {
		t.Fatalf("approve confirmation:\n%s", html)
	}
	// Confirmed against 1.2.1, but the stage runs 1.2.2 now: nothing is written.
	before := p.lastSubject(t)
	form := url.Values{"csrf": {formToken(t, html)}, "value": {"1.2.1"}, "expect": {"1.2.1"}}
	if code, body, _ := v.post("/stages/develop-frontend/rollback", form, nil); code != http.StatusConflict || !strings.Contains(body, "now runs 1.2.2, you expected 1.2.1") || !strings.Contains(body, "nothing was done") {
		t.Fatalf("stale confirmation: %d", code)
	}
	if after := p.lastSubject(t); after != before {
		t.Fatalf("a stale confirmation committed %q", after)
	}
	form.Set("expect", "1.2.2")
	code, _, h := v.post("/stages/develop-frontend/rollback", form, nil)
	if code != http.StatusSeeOther || p.lastSubject(t) != "Roll back image from 1.2.2 to 1.2.1" {
		t.Fatalf("rollback: %d, last commit %q", code, p.lastSubject(t))
	}
	_, html = v.get(h.Get("Location"))
	if !strings.Contains(html, "Rolled back to 1.2.1: commit ") || !strings.Contains(html, `<span class="rejected">rejected 1.2.2</span>`) {
		t.Fatalf("the stage page after the rollback does not show its commit and the rejected value:\n%s", html)
	}
	// Promote a chosen tag: the rejected 1.2.2, by hand.
	_, html = v.get("/stages/develop-frontend/confirm?action=promote&value=1.2.2")
	if !strings.Contains(html, "Promote develop-frontend: 1.2.1 → 1.2.2") {
		t.Fatalf("promote confirmation:\n%s", html)
	}
	form = url.Values{"csrf": {formToken(t, html)}, "value": {"1.2.2"}, "expect": {"1.2.1"}}
	if code, _, _ := v.post("/stages/develop-frontend/promote", form, nil); code != http.StatusSeeOther || p.lastSubject(t) != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("promote: %d, last commit %q", code, p.lastSubject(t))
	}
	// A tag the registry does not have is refused with the API's answer, and nothing is written.
	form.Set("value", "9.9.9")
	form.Set("expect", "1.2.2")
	if code, body, _ := v.post("/stages/develop-frontend/promote", form, nil); code != http.StatusUnprocessableEntity || !strings.Contains(body, "tag 9.9.9 not found") {
		t.Fatalf("promoting a missing tag: %d\n%s", code, body)
	}
	if got := p.lastSubject(t); got != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("a refused promotion committed %q", got)
	}
}

// A release group's name holds a slash; its card's links must still reach its page.
func TestPage_ReleaseGroupCardLinksToItsPage(t *testing.T) {
	p := startPromoter(t, "")
	group := stage.GroupSpec{Name: "develop/shop", Members: []string{"develop-frontend", "develop-backend"}}
	if err := p.engine.SetSpecs(p.engine.Specs(), group); err != nil {
		t.Fatal(err)
	}
	p.engine.Notify(p.registry + "/team/frontend")
	p.waitFor(t, "the group's status", func() bool {
		_, ok := p.engine.StatusOf(group.Name)
		return ok
	})
	v := newVisitor(t, p.url)
	code, html := v.get("/")
	if code != http.StatusOK || !strings.Contains(html, `href="/stages/develop%2fshop"`) && !strings.Contains(html, `href="/stages/develop%2Fshop"`) {
		t.Fatalf("GET /: %d; the group's card does not link to /stages/develop%%2Fshop", code)
	}
	code, html = v.get("/stages/develop%2Fshop")
	if code != http.StatusOK || !strings.Contains(html, "develop/shop") {
		t.Fatalf("GET /stages/develop%%2Fshop: %d, want the group's page", code)
	}
}
