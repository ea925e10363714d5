// Package api serves the promoter's debug HTTP API: stage status and history to
// read, and promote, approve, rollback, pause and resume to act, as JSON.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// DefaultAddr is where the API listens unless told otherwise: loopback only, so
// reaching it from elsewhere takes a port-forward or an explicit --addr and a token.
const DefaultAddr = "127.0.0.1:8080"

// Controller is what the API drives; *stage.Engine implements it.
type Controller interface {
	Status() []stage.Status
	StatusOf(name string) (stage.Status, bool)
	History(ctx context.Context, stage string) ([]gitwrite.Record, error)
	// Promote, Rollback and Approve take stage.Expect: the value the caller saw the stage
	// run; the action is then refused (stage.ErrMoved, 409) when Git holds another.
	Promote(ctx context.Context, stage, tag string, opts ...stage.ActionOption) (stage.Outcome, error)
	Rollback(ctx context.Context, stage, to string, opts ...stage.ActionOption) (stage.Outcome, error)
	Approve(ctx context.Context, stage, tag string, opts ...stage.ActionOption) (string, error)
	// Pause and Resume take stage.RequestedBy like the other actions: who asked is kept
	// with the pause.
	Pause(ctx context.Context, stage string, opts ...stage.ActionOption) error
	Resume(ctx context.Context, stage string, opts ...stage.ActionOption) error
	Passes() int
}

// Reverifier is implemented by a Controller that can run a stage's verification again
// (POST /api/v1/stages/{name}/verify); *stage.Engine does.
type Reverifier interface {
	Reverify(ctx context.Context, stage string) (string, error)
}

// Attester is implemented by a Controller that remembers a stage's verifications and
// approvals (GET /api/v1/stages/{name}/attestations; the pipeline page's freight pages);
// *stage.Engine does.
type Attester interface {
	Attestations(ctx context.Context, stage string) (stage.Attestations, error)
}

// Tagger is implemented by a Controller that can list the tags a stage's warehouse sees,
// each with why it is or is not a candidate (GET /api/v1/stages/{name}/tags; the pipeline
// page's tag table); *stage.Engine does.
type Tagger interface {
	Tags(ctx context.Context, stage string) ([]warehouse.TagVerdict, error)
}

// ErrUnavailable is wrapped by a Controller's errors when this process cannot act
// at all right now (a standby replica): the API answers 503 with the error, which
// should say where to go instead.
var ErrUnavailable = errors.New("this promoter cannot serve the stages now")

// StatusError is an answer another promoter replica gave (a request passed on to the replica
// that owns the stage): the API answers with the same status and message.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// Availability is implemented by a Controller that cannot always serve (a standby
// replica has no stages). While Available returns an error, every /api/v1 call is
// answered 503 with it, instead of an empty list or an "unknown stage".
type Availability interface {
	Available() error
}

// Option configures a Server.
type Option func(*Server)

// WithToken requires "Authorization: Bearer <token>" on every mutating request; token is the
// content of --token-file (ParseTokens: one token, or "name: token" lines whose names are
// recorded as who asked). An empty token with WithRequireToken refuses every mutating
// request, and so does a content ParseTokens refuses (the command checks it first).
func WithToken(token string) Option {
	return func(s *Server) {
		ts, err := ParseTokens(token)
		if err != nil {
			ts, s.requireToken = Tokens{}, true
		}
		s.tokens = ts
	}
}

// WithForwarders trusts RequestedByHeader on requests another replica passes on
// (ForwardedHeader) with credential, the replicas' shared token: the name the caller
// authenticated with where the request came in.
func WithForwarders(credential string) Option { return func(s *Server) { s.forwarders = credential } }

// WithRequireToken makes mutating requests need the token; the command sets it
// when the listener is not loopback.
func WithRequireToken(on bool) Option { return func(s *Server) { s.requireToken = on } }

// WithReadiness answers GET /readyz with h instead of "ready after the first
// pass": a replica that stands by on purpose is ready too.
func WithReadiness(h http.Handler) Option { return func(s *Server) { s.readyz = h } }

// WithLogger sets the request logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// Server is the API's http.Handler.
type Server struct {
	c            Controller
	mux          *http.ServeMux
	tokens       Tokens
	forwarders   string
	requireToken bool
	readyz       http.Handler
	log          *slog.Logger
	allowedHosts map[string]bool
	// routes are the patterns registered, in order: the OpenAPI test calls each.
	routes []string
	docState
}

// New returns the API for c.
func New(c Controller, opts ...Option) *Server {
	s := &Server{c: c, mux: http.NewServeMux(), log: slog.Default(), allowedHosts: map[string]bool{}}
	for _, o := range opts {
		o(s)
	}
	s.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Health{Status: "ok"})
	}))
	if s.readyz == nil {
		s.readyz = http.HandlerFunc(s.ready)
	}
	s.Handle("GET /readyz", s.readyz)
	s.Handle("GET "+OpenAPIPath, http.HandlerFunc(s.serveOpenAPI))
	s.Handle("GET /api/v1/stages", http.HandlerFunc(s.stages))
	s.Handle("GET /api/v1/stages/{name}", http.HandlerFunc(s.stage))
	s.Handle("GET /api/v1/stages/{name}/history", http.HandlerFunc(s.history))
	s.Handle("GET /api/v1/stages/{name}/tags", http.HandlerFunc(s.tags))
	s.Handle("GET /api/v1/stages/{name}/attestations", http.HandlerFunc(s.attestations))
	s.Handle("POST /api/v1/stages/{name}/promote", http.HandlerFunc(s.promote))
	s.Handle("POST /api/v1/stages/{name}/rollback", http.HandlerFunc(s.rollback))
	s.Handle("POST /api/v1/stages/{name}/approve", http.HandlerFunc(s.approve))
	s.Handle("POST /api/v1/stages/{name}/verify", http.HandlerFunc(s.reverify))
	s.Handle("POST /api/v1/stages/{name}/pause", http.HandlerFunc(s.pause(true)))
	s.Handle("POST /api/v1/stages/{name}/resume", http.HandlerFunc(s.pause(false)))
	return s
}

// Handle adds a route (a Go 1.22 ServeMux pattern); routes whose method changes
// state get the same-site and token checks. The Argo CD mode adds its routes this way.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.routes = append(s.routes, pattern)
	method, _, _ := strings.Cut(pattern, " ")
	switch method {
	case http.MethodGet, http.MethodHead:
		s.mux.Handle(pattern, h)
	default:
		s.mux.Handle(pattern, s.authorize(h))
	}
}

// Routes are the patterns of every route registered so far (New's, then Handle's and
// HandleWith's), in order.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	if a, ok := s.c.(Availability); ok && strings.HasPrefix(r.URL.Path, "/api/v1/") {
		if err := a.Available(); err != nil {
			writeError(rw, http.StatusServiceUnavailable, err)
			return
		}
	}
	s.mux.ServeHTTP(rw, r)
	s.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "status", rw.code, "took", time.Since(start).String())
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer: the pipeline page's
// event stream flushes through it.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) authorize(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.SameSite(r); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		if err := notAForm(r); err != nil {
			writeError(w, http.StatusUnsupportedMediaType, err)
			return
		}
		if s.TokenNeeded() {
			got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !bearer || !s.TokenValid(got) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="kropipe-promoter"`)
				writeError(w, http.StatusUnauthorized, errors.New("this call changes state and needs the API token: pass --token-file (or KROPIPE_TOKEN) to the promoter command, or send Authorization: Bearer <token>"))
				return
			}
		}
		by, err := s.requester(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if by != "" {
			r = r.WithContext(WithRequester(r.Context(), by))
		}
		h.ServeHTTP(w, r)
	})
}

// SameSite refuses (and logs) a state-changing request a web page of another site could
// have made: the check every POST of the API and of the pipeline page passes first.
func (s *Server) SameSite(r *http.Request) error {
	if err := s.sameSite(r); err != nil {
		s.log.Warn("refused a state-changing request from another site", "method", r.Method, "path", r.URL.Path, "reason", err)
		return fmt.Errorf("refused: %w: only the promoter command and pages served by this promoter may change stages", err)
	}
	return nil
}

// CheckHost refuses a request that names a Host other than this server's, localhost or an
// allowed name: the pipeline page applies it to reading too, so a rebound name cannot read
// the page (and its form token).
func (s *Server) CheckHost(r *http.Request) error { return s.checkHost(r) }

// TokenNeeded says whether state-changing requests must carry the API token.
func (s *Server) TokenNeeded() bool { return s.requireToken || len(s.tokens) > 0 }

// TokenValid reports whether got is the API token (compared in constant time). With the
// token required but none configured, nothing is valid.
func (s *Server) TokenValid(got string) bool {
	_, ok := s.tokens.Name(got)
	return ok
}

// HandleWith adds a state-changing route that passes the same-site check and then check
// instead of the bearer token: the pipeline page's forms carry the token in a session
// cookie and a per-page form token, which the page checks itself. check answers the
// request itself when it returns false.
func (s *Server) HandleWith(pattern string, check func(http.ResponseWriter, *http.Request) bool, h http.Handler) {
	if check == nil {
		panic("api: HandleWith " + pattern + " without a credential check")
	}
	s.routes = append(s.routes, pattern)
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.SameSite(r); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		if !check(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// ErrorStatus is the HTTP status the API answers an engine error with (404 for an unknown
// stage, 409 when there is nothing to do, ...); the pipeline page answers the same.
func ErrorStatus(err error) int { return statusOf(err) }

// HistoryEntry is one promotion or rollback from Git, as the API shows it.
type HistoryEntry struct {
	Commit   string    `json:"commit"`
	Time     time.Time `json:"time"`
	Subject  string    `json:"subject"`
	Kind     string    `json:"kind"` // promote, rollback or approve (no commit)
	Image    string    `json:"image,omitempty"`
	Value    string    `json:"value"`
	Previous string    `json:"previous,omitempty"`
	Freight  string    `json:"freight,omitempty"`
	Rejected string    `json:"rejected,omitempty"`
	// RequestedBy is who asked for a manual promotion or rollback (the commit's
	// Kropipe-Requested-By); empty for an automatic one.
	RequestedBy string `json:"requestedBy,omitempty"`
	// PullRequest is the pull request the change went through (pull-request mode), when
	// the promoter still remembers it.
	PullRequest *HistoryPullRequest `json:"pullRequest,omitempty"`
}

// HistoryPullRequest links a history entry to its pull request.
type HistoryPullRequest struct {
	Number int    `json:"number"`
	URL    string `json:"url"`
}

// PullRequestLogger is implemented by a Controller that remembers the pull requests
// stages went through (stage.State.PullRequestLog); the history then links them.
// *stage.Engine does.
type PullRequestLogger interface {
	PullRequestLog(ctx context.Context, stage string) ([]stage.PullRequest, error)
}

// NewHistory is the history of stage name from its Git records, newest first, each linked
// to the pull request in prs whose proposed commit (Commit) or merge commit (MergeCommit)
// it is: a merge keeps the proposed commit, a squash or rebase lands a new one.
func NewHistory(name string, recs []gitwrite.Record, prs []stage.PullRequest) History {
	byCommit := map[string]*HistoryPullRequest{}
	for _, pr := range prs {
		link := &HistoryPullRequest{Number: pr.Number, URL: pr.URL}
		for _, c := range []string{pr.Commit, pr.MergeCommit} {
			if c != "" {
				byCommit[c] = link
			}
		}
	}
	h := History{Stage: name, Entries: []HistoryEntry{}}
	for _, rec := range recs {
		h.Entries = append(h.Entries, HistoryEntry{
			Commit: rec.Commit, Time: rec.Time, Subject: rec.Subject, Kind: rec.Kind.String(),
			Image: rec.Image, Value: rec.Value, Previous: rec.Previous, Freight: rec.Freight, Rejected: rec.Rejected,
			RequestedBy: rec.RequestedBy, PullRequest: byCommit[rec.Commit],
		})
	}
	return h
}

// KindApprove is the kind of a history entry for an approval: it wrote no commit, the
// State remembers it (stage.Approval).
const KindApprove = "approve"

// ApprovalLogger is implemented by a Controller that remembers who approved what
// (stage.State.Approvals); the history then lists the approvals. *stage.Engine does.
type ApprovalLogger interface {
	Approvals(ctx context.Context, stage string) ([]stage.Approval, error)
}

// WithApprovals is h with an entry of kind approve per approval, among the others by time,
// newest first. Git keeps a commit's time in seconds: an approval and the promotion it let
// happen in the same second are ordered approval first (listed after it).
func (h History) WithApprovals(as []stage.Approval) History {
	if len(as) == 0 {
		return h
	}
	entries := slices.Clone(h.Entries)
	for _, a := range as {
		entries = append(entries, HistoryEntry{Time: a.ApprovedAt, Subject: "Approve " + a.Value, Kind: KindApprove, Value: a.Value, RequestedBy: a.RequestedBy})
	}
	slices.SortStableFunc(entries, func(a, b HistoryEntry) int {
		return b.Time.Truncate(time.Second).Compare(a.Time.Truncate(time.Second))
	})
	h.Entries = entries
	return h
}

// Approvals are the approvals h lists, oldest first, for a replica that passes a history on.
func (h History) Approvals() []stage.Approval {
	var out []stage.Approval
	for _, e := range slices.Backward(h.Entries) {
		if e.Kind == KindApprove {
			out = append(out, stage.Approval{Value: e.Value, ApprovedAt: e.Time, RequestedBy: e.RequestedBy})
		}
	}
	return out
}

// PullRequests are the pull requests h links, for a replica that passes a history on.
func (h History) PullRequests() []stage.PullRequest {
	var out []stage.PullRequest
	for _, e := range h.Entries {
		if e.PullRequest != nil {
			pr := stage.PullRequest{Commit: e.Commit}
			pr.Number, pr.URL = e.PullRequest.Number, e.PullRequest.URL
			out = append(out, pr)
		}
	}
	return out
}

// History is the body of GET /api/v1/stages/{name}/history.
type History struct {
	Stage   string         `json:"stage"`
	Entries []HistoryEntry `json:"entries"`
}

// Approved is the body answered by approve.
type Approved struct {
	Stage string `json:"stage"`
	Value string `json:"value"`
}

// Reverified is the body answered by verify: the value whose verification runs again on
// the next pass.
type Reverified struct {
	Stage string `json:"stage"`
	Value string `json:"value"`
}

// Paused is the body answered by pause and resume.
type Paused struct {
	Stage  string `json:"stage"`
	Paused bool   `json:"paused"`
}

// Error is the body of every failed call.
type Error struct {
	Error string `json:"error"`
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.c.Passes() == 0 {
		writeError(w, http.StatusServiceUnavailable, errors.New("the first pass has not finished yet"))
		return
	}
	writeJSON(w, http.StatusOK, Health{Status: "ready"})
}

func (s *Server) stage(w http.ResponseWriter, r *http.Request) {
	st, ok := s.c.StatusOf(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, errors.New("unknown stage "+quote(r.PathValue("name"))))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	recs, err := s.c.History(r.Context(), name)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	var prs []stage.PullRequest
	if l, ok := s.c.(PullRequestLogger); ok {
		// The links are a convenience: a history without them beats no history.
		if prs, err = l.PullRequestLog(r.Context(), name); err != nil {
			s.log.Warn("reading the pull request log for the history", "stage", name, "err", err)
			prs = nil
		}
	}
	h := NewHistory(name, recs, prs)
	if l, ok := s.c.(ApprovalLogger); ok {
		// Like the links, the approvals are a convenience: a history without them beats none.
		as, err := l.Approvals(r.Context(), name)
		if err != nil {
			s.log.Warn("reading the approvals for the history", "stage", name, "err", err)
		}
		h = h.WithApprovals(as)
	}
	writeJSON(w, http.StatusOK, h)
}

// Tags is the body of GET /api/v1/stages/{name}/tags. A stage with an upstream has no tags
// of its own (it takes the upstream's verified freight): Tags is empty and Upstream says so.
type Tags struct {
	Stage    string                 `json:"stage"`
	Upstream string                 `json:"upstream,omitempty"`
	Tags     []warehouse.TagVerdict `json:"tags"`
}

func (s *Server) tags(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	tg, ok := s.c.(Tagger)
	if !ok {
		writeError(w, http.StatusNotImplemented, fmt.Errorf("stage %q: this promoter cannot list tags", name))
		return
	}
	st, ok := s.c.StatusOf(name)
	if !ok {
		writeError(w, http.StatusNotFound, errors.New("unknown stage "+quote(name)))
		return
	}
	vs, err := tg.Tags(r.Context(), name)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, Tags{Stage: name, Upstream: st.Upstream, Tags: append([]warehouse.TagVerdict{}, vs...)})
}

func (s *Server) attestations(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	at, ok := s.c.(Attester)
	if !ok {
		writeError(w, http.StatusNotImplemented, fmt.Errorf("stage %q: this promoter keeps no verifications or approvals", name))
		return
	}
	if _, ok := s.c.StatusOf(name); !ok {
		writeError(w, http.StatusNotFound, errors.New("unknown stage "+quote(name)))
		return
	}
	a, err := at.Attestations(r.Context(), name)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	a.Verifications = append([]stage.Verification{}, a.Verifications...)
	a.Approvals = append([]stage.Approval{}, a.Approvals...)
	writeJSON(w, http.StatusOK, a)
}

// PromoteRequest is the optional body of promote and approve.
type PromoteRequest struct {
	Tag string `json:"tag,omitempty"`
	// Expect is the value the caller saw the stage run (a release group: its set as its
	// status's currentTag shows it): the action is done only while Git still holds it, and
	// answered 409 with nothing done otherwise. The promoter command always sends it; a
	// call without it acts on whatever the stage runs, so retrying it is not safe.
	Expect string `json:"expect,omitempty"`
	// Member forces a member of a release group alone (promoter promote --member).
	Member bool `json:"member,omitempty"`
}

// RollbackRequest is the optional body of rollback.
type RollbackRequest struct {
	To string `json:"to,omitempty"`
	// Expect is as PromoteRequest's: a rollback retried with it never rolls back twice.
	Expect string `json:"expect,omitempty"`
	// Member forces a member of a release group alone (promoter rollback --member).
	Member bool `json:"member,omitempty"`
}

// MemberActor is implemented by a Controller that can act on a member of a release group
// alone (a request with member: true); *stage.Engine does.
type MemberActor interface {
	PromoteMember(ctx context.Context, stage, tag string, opts ...stage.ActionOption) (stage.Outcome, error)
	RollbackMember(ctx context.Context, stage, to string, opts ...stage.ActionOption) (stage.Outcome, error)
}

// memberActor is the Controller as a MemberActor, or an error saying it is none.
func (s *Server) memberActor() (MemberActor, error) {
	if m, ok := s.c.(MemberActor); ok {
		return m, nil
	}
	return nil, errors.New("this promoter cannot act on a member of a release group alone")
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	var req PromoteRequest
	if !readBody(w, r, &req) {
		return
	}
	promote := s.c.Promote
	if req.Member {
		m, err := s.memberActor()
		if err != nil {
			writeError(w, http.StatusNotImplemented, err)
			return
		}
		promote = m.PromoteMember
	}
	out, err := promote(r.Context(), r.PathValue("name"), req.Tag, actionOptions(r, req.Expect)...)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var req RollbackRequest
	if !readBody(w, r, &req) {
		return
	}
	rollback := s.c.Rollback
	if req.Member {
		m, err := s.memberActor()
		if err != nil {
			writeError(w, http.StatusNotImplemented, err)
			return
		}
		rollback = m.RollbackMember
	}
	out, err := rollback(r.Context(), r.PathValue("name"), req.To, actionOptions(r, req.Expect)...)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	var req PromoteRequest
	if !readBody(w, r, &req) {
		return
	}
	name := r.PathValue("name")
	v, err := s.c.Approve(r.Context(), name, req.Tag, actionOptions(r, req.Expect)...)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, Approved{Stage: name, Value: v})
}

func (s *Server) reverify(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rv, ok := s.c.(Reverifier)
	if !ok {
		writeError(w, http.StatusNotImplemented, fmt.Errorf("stage %q: this promoter cannot run verification again", name))
		return
	}
	v, err := rv.Reverify(r.Context(), name)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusAccepted, Reverified{Stage: name, Value: v})
}

func (s *Server) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		fn := s.c.Resume
		if paused {
			fn = s.c.Pause
		}
		if err := fn(r.Context(), name, actionOptions(r, "")...); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, Paused{Stage: name, Paused: paused})
	}
}

// actionOptions are the action options of a request: its expected value, and who asks.
func actionOptions(r *http.Request, expect string) []stage.ActionOption {
	var out []stage.ActionOption
	if expect != "" {
		out = append(out, stage.Expect(expect))
	}
	if by := RequesterFrom(r.Context()); by != "" {
		out = append(out, stage.RequestedBy(by))
	}
	return out
}

// maxBody bounds request bodies; the largest legitimate one is a tag name.
const maxBody = 64 << 10

// readBody decodes an optional JSON body; an empty body leaves v as it is.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return false
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, errors.New("request body: "+err.Error()+`; send {"tag": "1.2.2", "expect": "1.2.1"} (promote, approve) or {"to": "1.2.1", "expect": "1.2.2"} (rollback)`))
		return false
	}
	return true
}

// statusOf maps engine errors to HTTP statuses.
func statusOf(err error) int {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, stage.ErrUnknownStage):
		return http.StatusNotFound
	case errors.Is(err, warehouse.ErrTagNotFound):
		return http.StatusUnprocessableEntity
	case errors.Is(err, stage.ErrNothingToDo), errors.Is(err, gitwrite.ErrConflict), errors.Is(err, stage.ErrGroupMember), errors.Is(err, stage.ErrMoved):
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers with the error's text, redacted: a Git URL with credentials
// must never leave the process.
func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, Error{Error: gitwrite.Redact(err.Error())})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
