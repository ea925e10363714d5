package forge

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// answerError builds the *Error for a failed request of the Gitea and GitHub clients:
// the sentinel the status matches, what the user must do for a refused credential, and
// when to ask again. Every text is scrubbed of the secrets given.
func answerError(kind Kind, op string, status int, h http.Header, msg string, cause error, secrets ...string) *Error {
	e := &Error{Forge: kind, Op: op, Status: status, Msg: oneLine(scrubSecrets(msg, secrets...))}
	switch status {
	case 0:
		if cause != nil {
			e.Err = &scrubbedError{err: cause, secrets: secrets}
		}
		e.Msg = ""
		return e
	case http.StatusUnauthorized:
		e.Err = ErrUnauthorized
		e.Msg = joinMsg(e.Msg, "the token is wrong or expired: renew it in the repository's credentials (the Argo CD repository Secret, or promoter.yaml)")
	case http.StatusForbidden:
		e.Err = ErrForbidden
		e.RetryAfter = retryAfter(h)
		if e.RetryAfter == 0 {
			e.Msg = joinMsg(e.Msg, "the token lacks a permission: give it write access to the repository's contents and pull requests")
		}
	case http.StatusNotFound:
		e.Err = ErrNotFound
	case http.StatusConflict, http.StatusUnprocessableEntity:
		e.Err = ErrConflict
	case http.StatusTooManyRequests:
		e.RetryAfter = retryAfter(h)
		if e.RetryAfter == 0 {
			e.RetryAfter = time.Minute // asked to wait without saying how long
		}
	}
	return e
}

// oneLine keeps a forge's message readable in a status line: one line, and not a whole
// HTML error page from a proxy.
func oneLine(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	const limit = 300
	if len(msg) > limit {
		msg = strings.ToValidUTF8(msg[:limit], "") + "…"
	}
	return msg
}

func joinMsg(msg, hint string) string {
	if msg == "" {
		return hint
	}
	return msg + " (" + hint + ")"
}

// retryAfter reads how long a forge asked to wait: Retry-After in seconds, or, when the
// rate limit is spent (x-ratelimit-remaining: 0), until x-ratelimit-reset. Zero when
// the answer is no rate limit.
func retryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
			return max(time.Duration(s)*time.Second, time.Second)
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t), time.Second)
		}
	}
	if h.Get("X-Ratelimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			return max(time.Until(time.Unix(s, 0)), time.Second)
		}
		return time.Minute
	}
	return 0
}

// scrubSecrets replaces every non-empty secret in s.
func scrubSecrets(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// scrubbedError is a transport error whose text cannot carry a secret; errors.Is and As
// still reach the cause (a timeout, a refused connection).
type scrubbedError struct {
	err     error
	secrets []string
}

func (e *scrubbedError) Error() string { return scrubSecrets(e.err.Error(), e.secrets...) }
func (e *scrubbedError) Unwrap() error { return e.err }

// short is a commit's abbreviation for messages.
func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// mergeRefused reads a pull request again after the forge refused to merge it (fe) and says
// what the refusal was: merged already (a merge that reached the forge before a crash; returned
// without error), its head moved from sha (ErrHeadMoved; headMoved when the forge's own
// answer says so), or it cannot be merged now (ErrNotMergeable, a merge kropipe tries again).
func mergeRefused(ctx context.Context, f Forge, number int, sha string, fe *Error, headMoved bool) (*PullRequest, error) {
	pr, err := f.Get(ctx, number)
	switch {
	case err == nil && pr.State == Merged:
		return pr, nil
	case headMoved, err == nil && sha != "" && pr.HeadSHA != "" && !strings.HasPrefix(pr.HeadSHA, sha):
		fe.Err = ErrHeadMoved
	default:
		fe.Err = ErrNotMergeable
		if err == nil && pr.State == Closed {
			fe.Msg += ": the pull request is closed"
		}
	}
	return nil, fe
}
