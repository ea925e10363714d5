package page_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// sessionPromoter is a page without stages on a fake clock: enough to log in, out, and be
// refused or let through to an action (which then answers 404: no such stage).
func sessionPromoter(t *testing.T, token string, clk *clocktesting.FakeClock) *httptest.Server {
	t.Helper()
	return startSessionPromoter(t, token, clk, httptest.NewServer)
}

func startSessionPromoter(t *testing.T, token string, clk *clocktesting.FakeClock, serve func(http.Handler) *httptest.Server) *httptest.Server {
	t.Helper()
	e, err := stage.New(nil, stage.WithGit(t.TempDir()), stage.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(e, api.WithToken(token), api.WithLogger(quiet()))
	p := page.Mount(h, e, page.WithLogger(quiet()), page.WithClock(clk))
	srv := serve(h)
	t.Cleanup(func() { p.Close(); srv.Close() })
	return srv
}

// login logs v in with token and returns the session cookie the page set.
func login(t *testing.T, v *visitor, token string) *http.Cookie {
	t.Helper()
	_, html := v.get("/")
	code, body, h := v.post("/login", url.Values{"csrf": {formToken(t, html)}, "token": {token}, "next": {"/"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("login: %d %.300s", code, body)
	}
	resp := http.Response{Header: h}
	for _, c := range resp.Cookies() {
		if c.Name == "kropipe_session" || c.Name == "__Host-kropipe_session" {
			return c
		}
	}
	t.Fatalf("login set no kropipe_session cookie: %q", h.Values("Set-Cookie"))
	return nil
}

// acts reports whether the page lets a browser with session (nil: none) act: past the
// login check, an action on a stage that does not exist is a 404, before it a 401.
func acts(t *testing.T, srv *httptest.Server, session *http.Cookie) bool {
	t.Helper()
	v := newVisitor(t, srv.URL)
	u, _ := url.Parse(srv.URL)
	if session != nil {
		v.c.Jar.SetCookies(u, []*http.Cookie{{Name: session.Name, Value: session.Value, Path: "/"}})
	}
	_, html := v.get("/")
	code, body, _ := v.post("/stages/no-such-stage/pause", url.Values{"csrf": {formToken(t, html)}}, nil)
	switch code {
	case http.StatusNotFound:
		return true
	case http.StatusUnauthorized:
		return false
	}
	t.Fatalf("an action with session %v: %d %.300s", session, code, body)
	return false
}

func TestSession_CookieNeverHoldsTheToken(t *testing.T) {
	const token = "s3cret-t0ken-0123456789"
	srv := sessionPromoter(t, token, clocktesting.NewFakeClock(time.Now()))
	v := newVisitor(t, srv.URL)
	_, html := v.get("/")
	_, _, h := v.post("/login", url.Values{"csrf": {formToken(t, html)}, "token": {token}, "next": {"/"}}, nil)
	sets := h.Values("Set-Cookie")
	if len(sets) == 0 {
		t.Fatal("login set no cookie")
	}
	encodings := []string{token, url.QueryEscape(token), base64.StdEncoding.EncodeToString([]byte(token)),
		base64.RawURLEncoding.EncodeToString([]byte(token))}
	for _, set := range sets {
		for _, enc := range encodings {
			if strings.Contains(set, enc) {
				t.Errorf("login's cookie holds the API token: %q", set)
			}
		}
	}
	session := login(t, newVisitor(t, srv.URL), token)
	set := ""
	for _, s := range sets {
		if strings.HasPrefix(s, "kropipe_session=") {
			set = s
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	if !acts(t, srv, session) {
		t.Fatal("a fresh session cannot act")
	}
}

func TestSession_RefusesForgedExpiredAndEndedSessions(t *testing.T) {
	const token = "s3cret-t0ken-0123456789"
	clk := clocktesting.NewFakeClock(time.Now())
	srv := sessionPromoter(t, token, clk)
	other := sessionPromoter(t, token, clocktesting.NewFakeClock(time.Now()))
	otherToken := sessionPromoter(t, "an0ther-t0ken-0123456789", clocktesting.NewFakeClock(time.Now()))

	tamper := func(c *http.Cookie, f func([]byte)) *http.Cookie {
		raw, err := base64.RawURLEncoding.DecodeString(c.Value)
		if err != nil {
			t.Fatalf("session cookie %q is not base64url: %v", c.Value, err)
		}
		f(raw)
		return &http.Cookie{Name: c.Name, Value: base64.RawURLEncoding.EncodeToString(raw)}
	}
	tests := []struct {
		name string
		srv  *httptest.Server
		// session makes the cookie sent, from a fresh login to srv.
		session func(fresh *http.Cookie) *http.Cookie
		acts    bool
	}{
		{"a fresh session", srv, func(c *http.Cookie) *http.Cookie { return c }, true},
		{"a session seven hours old", srv, func(c *http.Cookie) *http.Cookie { clk.Step(7 * time.Hour); return c }, true},
		{"no session", srv, func(*http.Cookie) *http.Cookie { return nil }, false},
		{"the raw token in the session cookie", srv, func(*http.Cookie) *http.Cookie { return &http.Cookie{Name: "kropipe_session", Value: token} }, false},
		{"the raw token in the old cookie", srv, func(*http.Cookie) *http.Cookie { return &http.Cookie{Name: "kropipe_token", Value: token} }, false},
		{"a made-up session", srv, func(c *http.Cookie) *http.Cookie {
			return &http.Cookie{Name: c.Name, Value: strings.Repeat("A", len(c.Value))}
		}, false},
		{"a forged signature", srv, func(c *http.Cookie) *http.Cookie { return tamper(c, func(b []byte) { b[len(b)-1] ^= 1 }) }, false},
		{"an extended expiry", srv, func(c *http.Cookie) *http.Cookie { return tamper(c, func(b []byte) { b[16] ^= 0x40 }) }, false},
		{"an expired session", srv, func(c *http.Cookie) *http.Cookie { clk.Step(8*time.Hour + time.Second); return c }, false},
		{"another process's session", other, func(c *http.Cookie) *http.Cookie { return c }, false},
		{"a session issued under another token", otherToken, func(c *http.Cookie) *http.Cookie { return c }, false},
		{"a session after logging out", srv, func(c *http.Cookie) *http.Cookie { return c }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVisitor(t, srv.URL)
			fresh := login(t, v, token)
			if tt.name == "a session after logging out" {
				_, html := v.get("/")
				if code, _, _ := v.post("/logout", url.Values{"csrf": {formToken(t, html)}, "next": {"/"}}, nil); code != http.StatusSeeOther {
					t.Fatalf("logout: %d", code)
				}
			}
			if got := acts(t, tt.srv, tt.session(fresh)); got != tt.acts {
				t.Errorf("acts = %v, want %v", got, tt.acts)
			}
		})
	}
}

// Over TLS the session cookie is Secure with the __Host- prefix: the browser keeps it to this
// host alone, and sends it over TLS only.
func TestSession_HostPrefixOverTLS(t *testing.T) {
	const token = "s3cret-t0ken-0123456789"
	srv := startSessionPromoter(t, token, clocktesting.NewFakeClock(time.Now()), httptest.NewTLSServer)
	v := newVisitor(t, srv.URL)
	v.c.Transport = srv.Client().Transport
	_, html := v.get("/")
	_, _, h := v.post("/login", url.Values{"csrf": {formToken(t, html)}, "token": {token}, "next": {"/"}}, nil)
	set := ""
	for _, s := range h.Values("Set-Cookie") {
		if strings.HasPrefix(s, "__Host-kropipe_session=") {
			set = s
		}
	}
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(set, "Domain=") {
		t.Errorf("a __Host- cookie names no domain: %q", set)
	}
	// The browser sends it back: the logged-in page offers the logout.
	if _, html := v.get("/"); !strings.Contains(html, `action="/logout"`) {
		t.Error("after logging in over TLS the page offers no logout")
	}
}

// A browser that logged in to an older promoter still holds the raw token in kropipe_token:
// the first page it loads makes it forget the cookie.
func TestSession_ForgetsTheOldTokenCookie(t *testing.T) {
	const token = "s3cret-t0ken-0123456789"
	srv := sessionPromoter(t, token, clocktesting.NewFakeClock(time.Now()))
	v := newVisitor(t, srv.URL)
	u, _ := url.Parse(srv.URL)
	v.c.Jar.SetCookies(u, []*http.Cookie{{Name: "kropipe_token", Value: token, Path: "/"}})
	v.get("/")
	for _, c := range v.c.Jar.Cookies(u) {
		if c.Name == "kropipe_token" || strings.Contains(c.Value, token) {
			t.Fatalf("after a page load the browser still keeps %s=%s", c.Name, c.Value)
		}
	}
}
