package page

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// sessionTTL is how long a login lasts: a working day. The cookie expires with it too.
const sessionTTL = 8 * time.Hour

// A session cookie's value is base64url(id | expiry | mac): a random id, the expiry in Unix
// seconds, and HMAC-SHA256 over both under a key only this process knows. It never holds the
// API token: cookies ignore ports, so every other server the browser reaches at the same host
// (another http://localhost:<port>) receives it, and the token would act on every replica.
// What such a server gets instead is one session of this process, refused after sessionTTL,
// after a logout, by any other replica and by this one's successor.
//
// The key is random per process rather than derived from the token (HKDF), which would let
// every replica and every restart accept the session: only the process that issued a session
// can know it ended, so only a per-process key makes logout end it everywhere it is valid.
// The cost is a login after the promoter restarts or a port-forward lands on another replica
// (kubectl port-forward reaches one pod, and the API listens on loopback, so one browser
// talks to one process).
const (
	sessionID    = 16
	sessionBytes = sessionID + 8 + sha256.Size
)

// sessions issues, checks and ends the page's logins.
type sessions struct {
	key   []byte
	clock clock.PassiveClock

	mu sync.Mutex
	// ended are the sessions logged out before their expiry, until it: a copy of the cookie
	// (another server on the same host kept it) is refused from the logout on.
	ended map[[sessionID]byte]time.Time
	// names are the names of the API tokens the live sessions logged in with: who asked for
	// their actions (Kropipe-Requested-By). Kept here, not in the cookie, like the session.
	names map[[sessionID]byte]login
}

// login is a session's token name, until the session expires.
type login struct {
	name    string
	expires time.Time
}

func newSessions(c clock.PassiveClock) *sessions {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &sessions{key: key, clock: c, ended: map[[sessionID]byte]time.Time{}, names: map[[sessionID]byte]login{}}
}

func (s *sessions) mac(idAndExpiry []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("kropipe page session\x00"))
	m.Write(idAndExpiry)
	return m.Sum(nil)
}

// issue returns a new session's cookie value and its expiry; name is the name of the token
// it logged in with.
func (s *sessions) issue(name string) (string, time.Time) {
	now := s.clock.Now()
	expires := now.Add(sessionTTL).Truncate(time.Second)
	b := make([]byte, sessionID, sessionBytes)
	_, _ = rand.Read(b)
	b = binary.BigEndian.AppendUint64(b, uint64(expires.Unix()))
	b = append(b, s.mac(b)...)
	var id [sessionID]byte
	copy(id[:], b)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, l := range s.names {
		if !now.Before(l.expires) {
			delete(s.names, k)
		}
	}
	s.names[id] = login{name: name, expires: expires}
	return base64.RawURLEncoding.EncodeToString(b), expires
}

// name is the token name of session value, "" when it is not valid.
func (s *sessions) name(value string) string {
	if !s.valid(value) {
		return ""
	}
	id, _, _ := s.parse(value)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[id].name
}

// parse returns the id and expiry of a value this process signed, whatever its expiry.
func (s *sessions) parse(value string) (id [sessionID]byte, expires time.Time, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) != sessionBytes {
		return id, expires, false
	}
	body, sum := b[:sessionID+8], b[sessionID+8:]
	if !hmac.Equal(sum, s.mac(body)) { // constant time
		return id, expires, false
	}
	copy(id[:], b)
	return id, time.Unix(int64(binary.BigEndian.Uint64(b[sessionID:])), 0), true
}

// valid reports whether value is a session this process issued, not expired nor ended.
func (s *sessions) valid(value string) bool {
	id, expires, ok := s.parse(value)
	if !ok || !s.clock.Now().Before(expires) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ended := s.ended[id]
	return !ended
}

// end logs the session out: it is refused from now on, even where a copy of it survives.
func (s *sessions) end(value string) {
	id, expires, ok := s.parse(value)
	if !ok {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, exp := range s.ended { // an expired session is refused anyway
		if !now.Before(exp) {
			delete(s.ended, k)
		}
	}
	if now.Before(expires) {
		s.ended[id] = expires
	}
	delete(s.names, id)
}

// cookieName is name with the __Host- prefix over TLS: the browser then keeps the cookie to
// this exact host, sent only over TLS, for the whole site, and no sibling domain can set it.
func cookieName(r *http.Request, name string) string {
	if r.TLS != nil {
		return "__Host-" + name
	}
	return name
}
