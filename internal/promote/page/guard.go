package page

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
)

// Cookies the page sets. Both are HttpOnly and SameSite=Strict: no script reads them and
// no other site's request carries them.
const (
	// sessionCookie holds the API token after the login form accepted it.
	sessionCookie = "kropipe_token"
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

func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// formToken returns a fresh token for one page's forms, creating the browser's form cookie
// when it has none. The token is a random nonce and an HMAC, under a key only this process
// knows, of the cookie and the nonce: a form posted with it proves it was rendered by this
// promoter for this browser (a page of another site can neither read the page nor set the
// cookie). The Origin and Sec-Fetch-Site checks come first; this is the second lock.
func (p *Page) formToken(w http.ResponseWriter, r *http.Request) string {
	seed := ""
	if c, err := r.Cookie(formCookie); err == nil && len(c.Value) >= 16 {
		seed = c.Value
	} else {
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
	c, err := r.Cookie(formCookie)
	if err != nil || c.Value == "" {
		return errNoFormCookie
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.PostFormValue(formField))
	if err != nil || len(raw) != 12+16 {
		return errFormToken
	}
	if !hmac.Equal(raw[12:], p.mac(c.Value, raw[:12])) {
		return errFormToken
	}
	return nil
}

// loggedIn reports whether the request carries the API token in its session cookie.
func (p *Page) loggedIn(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	return err == nil && p.api.TokenValid(c.Value)
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
