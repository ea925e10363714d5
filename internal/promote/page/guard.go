package page

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
)

// Cookies the page sets. Both are HttpOnly and SameSite=Strict, for the whole site (Path=/)
// and, over TLS, Secure with the __Host- prefix (cookieName): no script reads them and no
// other site's request carries them.
const (
	// sessionCookie holds a login: a signed, expiring session (session.go), never the token.
	sessionCookie = "kropipe_session"
	// legacyTokenCookie is where older promoters kept the raw API token; the page expires it.
	legacyTokenCookie = "kropipe_token"
	// formCookie is the browser's random half of the form tokens (see formToken).
	formCookie = "kropipe_form"
	// formField is the form field that carries a page's form token.
	formField = "csrf"
)

// contentSecurityPolicy allows the page's own script, style and event stream and nothing
// else: no inline script or style, no frames, forms only to this server.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// cookie is the page's cookie name (cookieName adds __Host- over TLS); maxAge 0 lasts the
// browser's session, a negative one deletes the cookie.
func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: cookieName(r, name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// cookieValue is the value of the page's cookie name in r ("" for none).
func cookieValue(r *http.Request, name string) string {
	if c, err := r.Cookie(cookieName(r, name)); err == nil {
		return c.Value
	}
	return ""
}

// formToken returns a fresh token for one page's forms, creating the browser's form cookie
// when it has none. The token is a random nonce and an HMAC, under a key only this process
// knows, of the cookie and the nonce: a form posted with it proves it was rendered by this
// promoter for this browser (a page of another site can neither read the page nor set the
// cookie). The Origin and Sec-Fetch-Site checks come first; this is the second lock.
func (p *Page) formToken(w http.ResponseWriter, r *http.Request) string {
	seed := cookieValue(r, formCookie)
	if len(seed) < 16 {
		seed = random(18)
		http.SetCookie(w, cookie(r, formCookie, seed, 0))
	}
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(append(nonce, p.mac(seed, nonce)...))
}

func (p *Page) mac(seed string, nonce []byte) []byte {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(seed))
	m.Write([]byte{0})
	m.Write(nonce)
	return m.Sum(nil)[:16]
}

var (
	errNoFormCookie = errors.New("refused: the browser sent no form cookie with this form; reload the page and try again (cookies must be allowed for this address)")
	errFormToken    = errors.New("refused: the form token is missing or not one this promoter issued (the page is older than the promoter, or the form came from elsewhere); reload the page and try again")
)

// checkFormToken accepts a form whose token formToken issued for the browser's cookie.
func (p *Page) checkFormToken(r *http.Request) error {
	seed := cookieValue(r, formCookie)
	if seed == "" {
		return errNoFormCookie
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.PostFormValue(formField))
	if err != nil || len(raw) != 12+16 {
		return errFormToken
	}
	if !hmac.Equal(raw[12:], p.mac(seed, raw[:12])) {
		return errFormToken
	}
	return nil
}

// loggedIn reports whether the request carries a live session of this process.
func (p *Page) loggedIn(r *http.Request) bool {
	v := cookieValue(r, sessionCookie)
	return v != "" && p.sessions.valid(v)
}

// canAct reports whether the viewer may act: no token is needed, or it is logged in.
func (p *Page) canAct(r *http.Request) bool {
	return !p.api.TokenNeeded() || p.loggedIn(r)
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
