package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// DefaultTokenName is the name of a token file that holds one token: what the commits of
// the actions it allows say asked for them.
const DefaultTokenName = "api"

// Tokens are the API tokens by the name recorded as who asked (Kropipe-Requested-By).
type Tokens map[string]string

// tokenName is what a token's name may hold: it goes into commit trailers and Events.
var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]*$`)

// namedLine is one "name: token" line of a token file.
var namedLine = regexp.MustCompile(`^([^\s:#]+):\s+(\S+)$`)

// ParseTokens reads the content of --token-file (or KROPIPE_TOKEN): either one token, named
// "api", or lines "name: token" (blank lines and # comments aside), one per person or
// system that may act. Errors never quote a token.
func ParseTokens(content string) (Tokens, error) {
	content = strings.TrimSpace(content)
	if content == "" {
		return Tokens{}, nil
	}
	var lines []string
	for _, l := range strings.Split(content, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 1 && !namedLine.MatchString(lines[0]) {
		return Tokens{DefaultTokenName: lines[0]}, nil
	}
	out, seen := Tokens{}, map[string]string{}
	for i, l := range lines {
		m := namedLine.FindStringSubmatch(l)
		switch {
		case m == nil:
			return nil, fmt.Errorf("token file line %d is not \"name: token\"; write one token alone, or one \"name: token\" per line", i+1)
		case !tokenName.MatchString(m[1]):
			return nil, fmt.Errorf("token file line %d: the name %q may hold letters, digits and . _ @ + - only", i+1, m[1])
		case out[m[1]] != "":
			return nil, fmt.Errorf("token file line %d: the name %q is given twice", i+1, m[1])
		case seen[m[2]] != "":
			return nil, fmt.Errorf("token file line %d: %q has the same token as %q; give each name its own", i+1, m[1], seen[m[2]])
		}
		out[m[1]], seen[m[2]] = m[2], m[1]
	}
	return out, nil
}

// Name is the name of token got, compared in constant time with every token; ok is false
// when got is none of them.
func (t Tokens) Name(got string) (name string, ok bool) {
	for n, tok := range t {
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
			name, ok = n, true
		}
	}
	return name, ok
}

// Pick is the token a client sends: the one named name, or with name "" the only one (or
// the one named "api").
func (t Tokens) Pick(name string) (string, error) {
	if name != "" {
		if tok, ok := t[name]; ok {
			return tok, nil
		}
		return "", fmt.Errorf("--token-name %s: the token file has no token of that name; it names %s", name, strings.Join(t.names(), ", "))
	}
	if len(t) == 1 {
		for _, tok := range t {
			return tok, nil
		}
	}
	if tok, ok := t[DefaultTokenName]; ok {
		return tok, nil
	}
	if len(t) == 0 {
		return "", nil
	}
	return "", fmt.Errorf("the token file names %d tokens (%s): say which to send with --token-name", len(t), strings.Join(t.names(), ", "))
}

// Primary is the token the replicas send each other when no --peer-secret is given: the
// one named "api", else the first by name.
func (t Tokens) Primary() string {
	if tok, ok := t[DefaultTokenName]; ok {
		return tok
	}
	if names := t.names(); len(names) > 0 {
		return t[names[0]]
	}
	return ""
}

func (t Tokens) names() []string {
	var out []string
	for n := range t {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// RequestedByHeader carries who asked for an action the API cannot name itself: a request
// another replica passed on (the name it authenticated there), or the promoter command's
// $USER@host when the API takes actions without a token.
const RequestedByHeader = "X-Kropipe-Requested-By"

type requesterKey struct{}

// WithRequester is ctx carrying who asks for the actions of its request: the pipeline
// page's login sets it for its forms.
func WithRequester(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, requesterKey{}, name)
}

// RequesterFrom is who ctx says asks, "" when nobody is known.
func RequesterFrom(ctx context.Context) string {
	name, _ := ctx.Value(requesterKey{}).(string)
	return name
}

// CheckRequester refuses a name that cannot go into a commit trailer.
func CheckRequester(name string) error {
	if len(name) > 200 || strings.ContainsAny(name, "\r\n\u0085\u2028\u2029") || strings.TrimSpace(name) != name {
		return errors.New("header " + RequestedByHeader + ": a name of one line, without surrounding space, at most 200 bytes")
	}
	return nil
}

// requester is who asks for r: the token's name when it carries one, unless it is the
// replicas' credential passing another replica's caller on; the header's claim when the
// API takes actions without a token.
func (s *Server) requester(r *http.Request) (string, error) {
	claim := r.Header.Get(RequestedByHeader)
	if err := CheckRequester(claim); err != nil {
		return "", err
	}
	got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if bearer && s.forwarders != "" && claim != "" && r.Header.Get(ForwardedHeader) != "" &&
		subtle.ConstantTimeCompare([]byte(got), []byte(s.forwarders)) == 1 {
		return claim, nil
	}
	if bearer {
		if name, ok := s.tokens.Name(got); ok {
			return name, nil
		}
	}
	if !s.TokenNeeded() {
		return claim, nil
	}
	return "", nil
}

// TokenName is the name of the API token got, for the pipeline page's login.
func (s *Server) TokenName(got string) (string, bool) { return s.tokens.Name(got) }
