package page_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/kropipe/kropipe/internal/promote/registrytest"
)

// chromium finds the browser. Without one the test skips on a developer's machine, but
// fails under CI (CI set to anything but "" or "false", as .ci/run does): there the
// browser proof must run.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatal("CI is set but no chromium is installed: the browser test must run (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); set CI=1 to make this a failure")
	return ""
}

// browser starts headless Chromium with a fresh profile, ended when the test ends.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "kropipe-chromium-*")
	if err != nil {
		t.Fatal(err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		// Chromium's helpers may still write into the profile for a moment after it ends.
		_ = os.RemoveAll(profile)
	})
	// Start the browser on a context without a timeout: a timeout would end it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// click clicks what sel finds and waits for the page it navigates to.
func click(t *testing.T, ctx context.Context, sel string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("clicking %s: %v", sel, err)
	}
	return resp.Status
}

// press sends keys to the focused element and waits for the page they navigate to.
func press(t *testing.T, ctx context.Context, keys string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.KeyEvent(keys)); err != nil {
		t.Fatalf("pressing %q: %v", keys, err)
	}
}

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	run(t, ctx, "waiting for "+what, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second)))
}

// TestBrowser_PipelinePage drives real headless Chromium against `promoter run` (real Git
// server, real registry): the lanes, a live update without reload, approve and roll back
// from the page with their commits on the Git server, refused forms, and the page at
// 320 px, in dark mode and by keyboard.
func TestBrowser_PipelinePage(t *testing.T) {
	exe := chromium(t)
	const token = "browser-t0ken"
	p := startPromoter(t, token)
	ctx := browser(t, exe)

	do(t, ctx, "opening the pipeline",
		chromedp.EmulateViewport(1100, 700),
		chromedp.Navigate(p.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#stage-staging-frontend`)),
	)
	lane := run(t, ctx, "reading the lane", chromedp.Text(chromedp.CSS(`section[aria-label="lane team/frontend"]`)))
	for _, want := range []string{"develop-frontend", "1.2.2", "staging-frontend", "1.2.1", "waiting for approval of 1.2.2"} {
		if !strings.Contains(lane, want) {
			t.Errorf("the lane does not show %q:\n%s", want, lane)
		}
	}
	if n := run(t, ctx, "counting actions", chromedp.Evaluate[int](`document.querySelectorAll(".actions a").length`)); n != 0 {
		t.Errorf("%d actions offered before logging in with the token", n)
	}

	// Log in with the API token, by keyboard.
	do(t, ctx, "typing the token", chromedp.SendKeys(chromedp.CSS(`#token`), token))
	if code := click(t, ctx, `form.login button`); code != 200 {
		t.Fatalf("logging in ended on %d", code)
	}
	do(t, ctx, "waiting for the actions", chromedp.WaitVisible(chromedp.CSS(`#stage-staging-frontend a[href*="action=approve"]`)))
	// The browser keeps a session, never the token: every other server on this host sees
	// the cookies (they ignore ports).
	jar := cookies(t, ctx, p.url)
	if jar["kropipe_session"] == "" {
		t.Fatalf("logged in, the browser keeps no session cookie: %v", jar)
	}
	for name, value := range jar {
		if strings.Contains(value, token) {
			t.Fatalf("the browser's cookie %s holds the API token", name)
		}
	}

	// A new tag: the develop card changes without a reload (the marker survives).
	do(t, ctx, "marking the page", chromedp.Evaluate[chromedp.Void](`window.kropipeMarker = 1`))
	waitJS(t, ctx, "the event stream", `document.body.getAttribute("data-live") === "open"`)
	registrytest.Push(t, p.registry, "team/frontend", "1.2.3")
	p.engine.Notify(p.registry + "/team/frontend")
	waitJS(t, ctx, "develop-frontend at 1.2.3", `document.querySelector("#stage-develop-frontend .current").textContent === "1.2.3"`)
	if !run(t, ctx, "reading the marker", chromedp.Evaluate[bool](`window.kropipeMarker === 1`)) {
		t.Fatal("the page reloaded to show the new tag")
	}
	waitJS(t, ctx, "staging-frontend offering 1.2.3 for approval",
		`!!document.querySelector('#stage-staging-frontend a[href$="action=approve&value=1.2.3"]')`)
	// The header's attention counts follow too: a pause counts at once, and uncounts.
	if err := p.engine.Pause(context.Background(), "develop-backend"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "one paused stage counted", `document.querySelector(".attention a.a-paused b").textContent === "1"`)
	if err := p.engine.Resume(context.Background(), "develop-backend"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "no paused stage counted", `document.querySelector(".attention a.a-paused b").textContent === "0"`)

	// Approve on the card: the confirmation names the change, the pass commits it, and the
	// stage's page shows the commit in its history.
	click(t, ctx, `#stage-staging-frontend a[href*="action=approve"]`)
	if h := run(t, ctx, "reading the confirmation", chromedp.Text(chromedp.CSS(`.confirm h2`))); h != "Approve staging-frontend: 1.2.1 → 1.2.3" {
		t.Fatalf("approve confirmation %q", h)
	}
	click(t, ctx, `.confirm button[type=submit]`)
	waitJS(t, ctx, "the approved promotion in the history",
		`[...document.querySelectorAll("table.history .subject")].some(e => e.textContent === "Promote image from 1.2.1 to 1.2.3")`)
	if got := p.lastSubject(t); got != "Promote image from 1.2.1 to 1.2.3" {
		t.Fatalf("newest commit on the Git server after approving: %q", got)
	}

	// Roll back develop from its card, by keyboard: Enter on the focused link, then Enter on
	// the confirmation, whose button has the focus.
	do(t, ctx, "opening the pipeline", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS(`#stage-develop-frontend`)))
	do(t, ctx, "focusing Roll back", chromedp.Focus(chromedp.CSS(`#stage-develop-frontend a[href*="action=rollback"]`)))
	press(t, ctx, "\r")
	if h := run(t, ctx, "reading the confirmation", chromedp.Text(chromedp.CSS(`.confirm h2`))); h != "Roll back develop-frontend: 1.2.3 → 1.2.2" {
		t.Fatalf("rollback confirmation %q", h)
	}
	if f := run(t, ctx, "reading the focus", chromedp.Evaluate[string](`document.activeElement.textContent`)); f != "Roll back to 1.2.2" {
		t.Fatalf("the confirmation focuses %q, want its button", f)
	}
	press(t, ctx, "\r")
	if got := p.lastSubject(t); got != "Roll back image from 1.2.3 to 1.2.2" {
		t.Fatalf("newest commit on the Git server after the rollback: %q", got)
	}
	// The commit lands before the browser has the answer's page: wait for that page, not for
	// whatever .done the page being replaced still shows.
	waitJS(t, ctx, "the rollback's result", `(document.querySelector(".done") || {}).textContent?.startsWith("Rolled back to 1.2.2: commit ")`)

	// A POST without the form token is refused, even from the logged-in page itself.
	status := run(t, ctx, "posting without the form token", chromedp.Evaluate[int](
		`fetch("/stages/develop-frontend/pause", {method: "POST", body: new URLSearchParams({value: ""})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Errorf("a POST without the form token: %d, want 403", status)
	}
	// And a confirmed form from a browser that has not logged in (a fresh profile context).
	anon, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	if err := chromedp.Do(anon); err != nil { // its tab lives as long as this first call's context
		t.Fatal(err)
	}
	do(t, anon, "opening a confirmation without logging in", chromedp.Navigate(p.url+"/stages/develop-frontend/confirm?action=pause"))
	if code := click(t, anon, `.confirm button[type=submit]`); code != 401 {
		t.Errorf("a confirmed form without the token: %d, want 401", code)
	}
	if st, _ := p.engine.StatusOf("develop-frontend"); st.Paused {
		t.Fatal("a refused POST paused the stage")
	}

	// A pass later prod-frontend soaks the 1.2.3 staging took: a live countdown.
	p.engine.Notify(p.registry + "/team/frontend")
	do(t, ctx, "opening the pipeline", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS(`#stage-prod-frontend`)))
	waitJS(t, ctx, "prod-frontend's soak countdown",
		`/^in (9|10)m[0-9]{2}s$/.test((document.querySelector("#stage-prod-frontend time.countdown") || {}).textContent)`)
	screenshot(t, ctx, "pipeline-page.png")
	// Dark mode follows the system.
	do(t, ctx, "preferring dark", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return err
	}))
	if bg := run(t, ctx, "reading the background", chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`)); bg != "rgb(13, 17, 23)" {
		t.Errorf("dark mode background %s", bg)
	}
	screenshot(t, ctx, "pipeline-page-dark.png")

	// Readable at 320 px: nothing wider than the screen.
	do(t, ctx, "narrowing to 320 px", chromedp.EmulateViewport(320, 640), chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS(`#stage-develop-frontend`)))
	if w := run(t, ctx, "measuring", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 320 {
		t.Errorf("at 320 px the page is %d px wide", w)
	}
	screenshot(t, ctx, "pipeline-page-320.png")
	// Keyboard: Tab reaches the skip link first, then the stages' links and actions.
	do(t, ctx, "tabbing", chromedp.KeyEvent("\t"))
	if f := run(t, ctx, "reading the focus", chromedp.Evaluate[string](`document.activeElement.textContent`)); f != "Skip to content" {
		t.Errorf("the first Tab focuses %q, want the skip link", f)
	}

	// Log out: the actions are gone, the cookie too, and a form posted with the old session
	// (a copy another server on this host kept) is refused.
	session := jar["kropipe_session"]
	do(t, ctx, "widening", chromedp.EmulateViewport(1100, 700), chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS(`#stage-develop-frontend`)))
	if code := click(t, ctx, `form.login button`); code != 200 {
		t.Fatalf("logging out ended on %d", code)
	}
	do(t, ctx, "waiting for the login form", chromedp.WaitVisible(chromedp.CSS(`#token`)))
	if n := run(t, ctx, "counting actions", chromedp.Evaluate[int](`document.querySelectorAll(".actions a").length`)); n != 0 {
		t.Errorf("%d actions offered after logging out", n)
	}
	if v := cookies(t, ctx, p.url)["kropipe_session"]; v != "" {
		t.Errorf("after logging out the browser still keeps a session cookie")
	}
	do(t, ctx, "restoring the old session", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: "kropipe_session", Value: session, URL: p.url, Path: "/"})
		return err
	}))
	do(t, ctx, "opening a confirmation with the old session", chromedp.Navigate(p.url+"/stages/develop-frontend/confirm?action=pause"))
	if code := click(t, ctx, `.confirm button[type=submit]`); code != 401 {
		t.Errorf("a confirmed form with a logged-out session: %d, want 401", code)
	}
	if st, _ := p.engine.StatusOf("develop-frontend"); st.Paused {
		t.Fatal("a logged-out session paused the stage")
	}
}

// cookies returns the browser's cookies for url by name.
func cookies(t *testing.T, ctx context.Context, url string) map[string]string {
	t.Helper()
	got := run(t, ctx, "reading the cookies", chromedp.Action[*network.GetCookiesResult](func(ctx context.Context, tg *chromedp.Target) (*network.GetCookiesResult, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		return &res, err
	}))
	out := map[string]string{}
	for _, c := range got.Cookies {
		out[c.Name] = c.Value
	}
	return out
}

// screenshot saves the whole page as name into the test's directory, or into
// $KROPIPE_PAGE_SCREENSHOTS when set (the README's pictures come from there).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := run(t, ctx, "taking a screenshot", chromedp.FullScreenshot(100))
	dir := os.Getenv("KROPIPE_PAGE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", filepath.Join(dir, name))
}
