// Package page is the promoter's pipeline page: server-rendered HTML at / on the API's
// address, showing every stage as a card in its lane, with history, tags and the actions.
//
// Reading works without JavaScript; a small script (assets/page.js) only applies live
// updates from the event stream and counts soaks down. Actions are POST forms behind a
// confirmation page that names the exact change; each passes the API's same-site check,
// a per-page form token and, when the API has a token, a session cookie set by a login
// form. Assets are embedded: the page works offline, with a strict Content-Security-Policy.
package page

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Subscriber is implemented by a Controller that announces changes (*stage.Engine): the
// page's event stream waits on it instead of polling.
type Subscriber interface {
	Subscribe() (<-chan struct{}, func(), error)
}

// Option configures a Page.
type Option func(*Page)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(p *Page) { p.log = l } }

// WithClock sets the clock sessions expire by (default the real one).
func WithClock(c clock.PassiveClock) Option { return func(p *Page) { p.clock = c } }

// WithTitle sets the page's title (default "kropipe pipeline").
func WithTitle(t string) Option { return func(p *Page) { p.title = t } }

// Page serves the pipeline page.
type Page struct {
	c     api.Controller
	api   *api.Server
	log   *slog.Logger
	title string
	key   []byte // signs form tokens; new per process
	clock clock.PassiveClock
	// sessions are the logins (session.go); made once the options are applied.
	sessions *sessions
	tmpl     *template.Template

	// assetVersion fingerprints the embedded assets: their URLs carry it, so a browser
	// never runs an older promoter's script against a newer page.
	assetVersion string

	stop     chan struct{} // closed by Close: event streams end
	stopOnce sync.Once
}

// Mount serves the page for c on srv's routes: /, /stages/... and /freight/... to read, POST
// /stages/{name}/{action}, /login and /logout to act, /events for live updates and
// /assets/ for the page's style and script.
func Mount(srv *api.Server, c api.Controller, opts ...Option) *Page {
	p := &Page{c: c, api: srv, log: slog.Default(), title: "kropipe pipeline", key: make([]byte, 32), clock: clock.RealClock{}, stop: make(chan struct{})}
	_, _ = rand.Read(p.key)
	for _, o := range opts {
		o(p)
	}
	p.sessions = newSessions(p.clock)
	p.tmpl = template.Must(template.New("page").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))
	p.assetVersion = assetVersion()
	srv.Handle("GET /{$}", p.read(p.index))
	srv.Handle("GET /stages/{name}", p.read(p.detail))
	srv.Handle("GET /stages/{name}/confirm", p.read(p.confirm))
	srv.Handle("GET /freight/{id}", p.read(p.freight))
	srv.Handle("GET /freight/find", p.read(p.findFreight))
	srv.Handle("GET /events", p.read(p.events))
	assets, _ := fs.Sub(assetFS, "assets")
	files := http.StripPrefix("/assets/", http.FileServer(http.FS(assets)))
	srv.Handle("GET /assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		// The URLs carry the assets' version (Common.Assets): a new promoter's are new URLs.
		w.Header().Set("Cache-Control", "public, max-age=86400")
		if b, err := fs.ReadFile(assets, strings.TrimPrefix(r.URL.Path, "/assets/")); err == nil && acceptsGzip(r) {
			w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(r.URL.Path)))
			writeCompressed(w, r, http.StatusOK, b)
			return
		}
		files.ServeHTTP(w, r)
	}))
	srv.HandleWith("POST /stages/{name}/{action}", p.checkForm(true), http.HandlerFunc(p.act))
	srv.HandleWith("POST /login", p.checkForm(false), http.HandlerFunc(p.login))
	srv.HandleWith("POST /logout", p.checkForm(false), http.HandlerFunc(p.logout))
	return p
}

// Close ends the open event streams; call it when the server shuts down (an event stream
// never goes idle by itself, and http.Server.Shutdown waits for idle connections).
func (p *Page) Close() { p.stopOnce.Do(func() { close(p.stop) }) }

var funcs = template.FuncMap{
	// Times are absolute (UTC) in the HTML, so a card renders the same until its stage
	// changes; the script shows them relative and counts soaks down.
	"clock":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"lower":   strings.ToLower,
	"join": func(s []stagefilter.State) string {
		out := make([]string, len(s))
		for i, v := range s {
			out[i] = string(v)
		}
		return strings.Join(out, " ")
	},
	"short": short,
	// A release group's name holds a slash ("develop/shop"): escaped, it stays one path
	// segment, which the routes' {name} matches and gives back unescaped.
	"stagePath": url.PathEscape,
}

// Common is what every page's frame shows.
type Common struct {
	Title   string
	Form    string // the page's form token
	Login   bool   // a token is needed and the viewer has not logged in
	Logout  bool   // the viewer logged in with the token
	Standby string // why this promoter cannot serve the stages (a standby replica: where the leader is)
	Events  string // the event stream's URL; "" for none
	Path    string // this page's path, for the login form's return
	Assets  string // the assets' version, appended to their URLs
	// NeedAttention and Counts are the header's count of what needs a human (the
	// pipeline's page only).
	NeedAttention int
	Counts        []count
}

func assetVersion() string {
	h := fnv.New64a()
	_ = fs.WalkDir(assetFS, "assets", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := assetFS.ReadFile(path)
			h.Write(b)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum64())
}

func (p *Page) common(w http.ResponseWriter, r *http.Request) Common {
	cm := Common{Title: p.title, Form: p.formToken(w, r), Path: r.URL.Path, Assets: p.assetVersion}
	if _, err := r.Cookie(legacyTokenCookie); err == nil {
		// An older promoter kept the raw API token there: the browser forgets it.
		http.SetCookie(w, &http.Cookie{Name: legacyTokenCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	}
	if p.api.TokenNeeded() {
		cm.Logout = p.loggedIn(r)
		cm.Login = !cm.Logout
	}
	if a, ok := p.c.(api.Availability); ok {
		if err := a.Available(); err != nil {
			cm.Standby = err.Error()
		}
	}
	return cm
}

// read wraps the pages that only read: the Host check (a name rebound to this address
// cannot read the page and its form token) and the security headers.
func (p *Page) read(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		if err := p.api.CheckHost(r); err != nil {
			p.fail(w, r, http.StatusMisdirectedRequest, err)
			return
		}
		h(w, r)
	})
}

func (p *Page) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var b bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		p.log.Error("rendering the pipeline page failed", "template", name, "err", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	writeCompressed(w, r, code, b.Bytes())
}

// writeCompressed answers body gzipped when the browser accepts it: a pipeline of a
// thousand stages is a megabyte of repetitive HTML and a tenth of it compressed.
func writeCompressed(w http.ResponseWriter, r *http.Request, code int, body []byte) {
	w.Header().Add("Vary", "Accept-Encoding")
	if len(body) < 1024 || !acceptsGzip(r) {
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(code)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(w)
	_, _ = zw.Write(body)
	_ = zw.Close()
}

// gzipWriters are reused: a gzip.Writer's tables cost more to allocate than a page does to
// compress at BestSpeed.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

type errorView struct {
	Common
	Code    int
	Message string
}

// fail answers with an error page; the message goes through gitwrite.Redact like the API's.
func (p *Page) fail(w http.ResponseWriter, r *http.Request, code int, err error) {
	secureHeaders(w)
	p.render(w, r, code, "error", errorView{Common: p.common(w, r), Code: code, Message: gitwrite.Redact(err.Error())})
}

func (p *Page) specs() []stage.Spec {
	if s, ok := p.c.(Specs); ok {
		return s.Specs()
	}
	return nil
}

type indexView struct {
	Common
	Sections []section
	Version  string
	// Filter is what the query string asks for (?q=, ?state=, ?view=attention), GroupBy
	// the grouping (?group-by=); Shown of Total cards pass the filter.
	Filter       stagefilter.Filter
	GroupBy      string
	Groupings    []grouping
	States       []stagefilter.State
	Shown, Total int
}

// pipeline is the pipeline's cards as the page shows them: release groups folded (units),
// then filtered by f.
func (p *Page) pipeline(r *http.Request, f stagefilter.Filter) (all, shown []card) {
	all = units(cards(p.c.Status(), p.specs(), p.canAct(r)))
	return all, filterCards(all, f)
}

func (p *Page) index(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := stagefilter.Parse(q)
	if err != nil {
		p.fail(w, r, http.StatusBadRequest, err)
		return
	}
	cm := p.common(w, r)
	v := indexView{Common: cm, Filter: f, GroupBy: groupingOf(q.Get("group-by")).Key, Groupings: groupings, States: stagefilter.Known}
	if cm.Standby == "" {
		all, shown := p.pipeline(r, v.Filter)
		v.Sections, v.Version = sections(shown, groupingOf(v.GroupBy)), version(shown)
		v.Shown, v.Total = len(shown), len(all)
		v.NeedAttention, v.Counts = attentionCounts(all)
		if _, ok := p.c.(Subscriber); ok {
			ev := v.Filter.Values()
			ev.Set("v", v.Version)
			v.Events = "/events?" + ev.Encode()
		}
	}
	p.render(w, r, http.StatusOK, "index", v)
}

type detailView struct {
	Common
	Card       card
	History    []historyRow
	HistoryErr string
	Tags       []warehouse.TagVerdict
	TagsErr    string
	Done       string // what the last action did, from the redirect after it
	DoneURL    string
	Rollback   string // the value a rollback without a choice goes back to
}

type historyRow struct {
	gitwrite.Record
	Short string
	URL   string
	// PullRequest is the pull request the change went through, when the State remembers it.
	PullRequest *prLink
	// FreightURL is the freight page of the value written.
	FreightURL string
}

func (p *Page) card(r *http.Request, name string) (card, bool) {
	return findCard(cards(p.c.Status(), p.specs(), p.canAct(r)), name)
}

// findCard is the card of a stage or release group as its own page shows it: a group's with
// its members' rows.
func findCard(cs []card, name string) (card, bool) {
	for _, c := range units(cs) {
		if c.Name == name {
			return c, true
		}
	}
	for _, c := range cs { // a member, folded into its group above
		if c.Name == name {
			return c, true
		}
	}
	return card{}, false
}

func (p *Page) repoURL(name string) string {
	for _, s := range p.specs() {
		if s.Name == name {
			return s.RepoURL
		}
	}
	return ""
}

// stagePage is what a page about one stage starts from; when it answers false it has
// written the answer (a standby's page, or no such stage).
func (p *Page) stagePage(w http.ResponseWriter, r *http.Request, name string) (Common, card, bool) {
	cm := p.common(w, r)
	if cm.Standby != "" {
		p.render(w, r, http.StatusServiceUnavailable, "index", indexView{Common: cm})
		return cm, card{}, false
	}
	c, ok := p.card(r, name)
	if !ok {
		p.fail(w, r, http.StatusNotFound, fmt.Errorf("no stage %q here; the pipeline at / lists them", name))
	}
	return cm, c, ok
}

func (p *Page) detail(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cm, c, ok := p.stagePage(w, r, name)
	if !ok {
		return
	}
	v := detailView{Common: cm, Card: c}
	if _, ok := p.c.(Subscriber); ok {
		v.Events = "/events?stage=" + url.QueryEscape(name) + "&v=" + url.QueryEscape(version([]card{c}))
	}
	recs, err := p.c.History(r.Context(), name)
	if err != nil {
		// A stage whose annotations are wrong has no history to read, and its page should
		// still say what is wrong.
		v.HistoryErr = gitwrite.Redact(err.Error())
	}
	repo := p.repoURL(name)
	var prs []stage.PullRequest
	if l, ok := p.c.(api.PullRequestLogger); ok && err == nil {
		var lerr error
		// The links are a convenience: the history shows without them.
		if prs, lerr = l.PullRequestLog(r.Context(), name); lerr != nil {
			p.log.Warn("reading the pull request log for the history", "stage", name, "err", lerr)
		}
	}
	linked := api.NewHistory(name, recs, prs)
	for i, rec := range recs {
		row := historyRow{Record: rec, Short: short(rec.Commit), URL: commitURL(repo, rec.Commit), FreightURL: freightLink(rec)}
		if l := linked.Entries[i].PullRequest; l != nil {
			row.PullRequest = pullRequestLink(stage.PullRequest{PullRequest: forge.PullRequest{Number: l.Number, URL: l.URL, State: forge.Merged}})
		}
		v.History = append(v.History, row)
	}
	v.Rollback, _ = gitwrite.PreviousPromotion(recs, c.Current)
	if t, ok := p.c.(api.Tagger); ok {
		tags, err := t.Tags(r.Context(), name)
		if err != nil {
			v.TagsErr = gitwrite.Redact(err.Error())
		}
		v.Tags = tags
	}
	q := r.URL.Query()
	if did := q.Get("did"); doneWords[did] != "" {
		v.Done = doneWords[did]
		if val := q.Get("value"); validValue.MatchString(val) || validSet.MatchString(val) {
			v.Done += " " + val
		}
		if commit := q.Get("commit"); hexCommit.MatchString(commit) {
			v.Done += ": commit " + short(commit)
			v.DoneURL = commitURL(repo, commit)
		} else if did == "approve" {
			v.Done += "; the next pass promotes it (after its soak, if any)"
		}
	}
	p.render(w, r, http.StatusOK, "stage", v)
}

var doneWords = map[string]string{
	"promote": "Promoted", "rollback": "Rolled back to", "approve": "Approved",
	"pause": "Paused", "resume": "Resumed",
}

// validValue is what a tag or digest value may look like when the page repeats it.
var validValue = regexp.MustCompile(`^[\w][\w.:+-]{0,127}$`)

// confirmView is the confirmation of one action: Title names the exact change
// ("Roll back develop-frontend: 1.2.2 → 1.2.1"), Effect what it writes.
type confirmView struct {
	Common
	Card   card
	Action string
	Value  string
	Title  string
	Effect string
	Button string
	// For a member of a release group: Member is its name. Without Alone the confirmation
	// is its group's (Card is the group's) and AloneURL asks for the member alone; with
	// Alone the form acts on the member alone and Warning says what that costs.
	Member   string
	AloneURL string
	Alone    bool
	Warning  string
}

// groupAction is what a member's promotion or rollback moves: its whole group (the engine
// refuses a member alone unless asked, as the CLI's --member asks).
func groupAction(action string) bool { return action == "promote" || action == "rollback" }

func (p *Page) confirm(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cm, c, ok := p.stagePage(w, r, name)
	if !ok {
		return
	}
	q := r.URL.Query()
	action, value := q.Get("action"), strings.TrimSpace(q.Get("value"))
	v := confirmView{Common: cm, Card: c, Action: action}
	if c.Group != "" && groupAction(action) {
		v.Member = name
		if q.Get("alone") == "1" {
			v.Alone = true
			v.Warning = fmt.Sprintf("%s moves alone, outside release group %s: %s.", name, c.Group, stage.MemberAloneWarning)
		} else if g, ok := p.card(r, c.Group); ok {
			alone := url.Values{"action": {action}, "alone": {"1"}}
			if value != "" {
				alone.Set("value", value)
			}
			v.AloneURL = "/stages/" + url.PathEscape(name) + "/confirm?" + alone.Encode()
			// A value the viewer chose for the member is that member's in the group's set;
			// the other members keep theirs.
			if value != "" {
				value = name + "=" + value
			}
			name, c = g.Name, g
			v.Card = c
		}
	}
	st, _ := p.c.StatusOf(name)
	from := orNothing(c.Current)
	// change is the commit an action makes, in words: the exact line it changes.
	change := func(to string) string {
		if len(st.Members) > 0 {
			return fmt.Sprintf("one commit changes the members' files from %s to %s", from, to)
		}
		return fmt.Sprintf("one commit changes %s in %s from %s to %s", st.Key, st.File, from, to)
	}
	if v.Alone {
		v.Title = " alone"
	}
	switch action {
	case "promote", "approve":
		if value == "" {
			value = c.Candidate
		}
		if value == "" && len(c.Members) > 0 {
			value = candidateSet(c)
		}
		if value == "" {
			p.fail(w, r, http.StatusConflict, fmt.Errorf("stage %q has no candidate to %s; name a tag", name, action))
			return
		}
		if action == "promote" {
			v.Title = fmt.Sprintf("Promote %s%s: %s → %s", name, v.Title, from, value)
			v.Effect = "Now, bypassing soak, approval and pause: " + change(value) + "."
			v.Button = "Promote " + value
		} else {
			v.Title = fmt.Sprintf("Approve %s: %s → %s", name, from, value)
			v.Effect = "No commit now: the next pass promotes it (after its soak, if any), and " + change(value) + "."
			v.Button = "Approve " + value
		}
	case "rollback":
		if value == "" {
			recs, err := p.c.History(r.Context(), name)
			if err != nil {
				p.fail(w, r, api.ErrorStatus(err), err)
				return
			}
			prev, ok := gitwrite.PreviousPromotion(recs, c.Current)
			if !ok && v.AloneURL != "" {
				// The group cannot go back as a whole; the member alone still may.
				v.Title = fmt.Sprintf("Roll back %s", name)
				v.Effect = fmt.Sprintf("Release group %s has no earlier set in Git history to go back to (it was never promoted as a group from %s).", name, from)
				p.render(w, r, http.StatusOK, "confirm", v)
				return
			}
			if !ok {
				p.fail(w, r, http.StatusConflict, fmt.Errorf("stage %q: Git history has no promotion to %s here, so there is no previous value; choose one on the stage's page", name, from))
				return
			}
			value = prev
		}
		v.Title = fmt.Sprintf("Roll back %s%s: %s → %s", name, v.Title, from, value)
		v.Effect = fmt.Sprintf("Now: %s; %s is then never promoted here automatically again.", change(value), from)
		v.Button = "Roll back to " + value
	case "pause":
		v.Title, v.Effect, v.Button = "Pause "+name, "No commit: automatic promotions to "+name+" stop until it is resumed; manual ones still work.", "Pause"
	case "resume":
		v.Title, v.Effect, v.Button = "Resume "+name, "No commit: automatic promotions to "+name+" start again with the next pass.", "Resume"
	default:
		p.fail(w, r, http.StatusBadRequest, fmt.Errorf("unknown action %q: promote, approve, rollback, pause or resume", action))
		return
	}
	if value != "" && !validValue.MatchString(value) && !(len(c.Members) > 0 && validSet.MatchString(value)) {
		p.fail(w, r, http.StatusBadRequest, fmt.Errorf("%q is not a tag or digest", value))
		return
	}
	v.Value = value
	p.render(w, r, http.StatusOK, "confirm", v)
}

// candidateSet is the set a release group would run next, as its members' candidates
// ("develop-frontend=1.2.3, develop-backend=2.1.0"); "" when no member has a new one.
func candidateSet(g card) string {
	var parts []string
	changed := false
	for _, m := range g.Members {
		val := cmp.Or(m.Candidate, m.Current)
		changed = changed || val != m.Current
		parts = append(parts, m.Name+"="+val)
	}
	if !changed {
		return ""
	}
	return strings.Join(parts, ", ")
}

// validSet is a release group's value: member=value pairs.
var validSet = regexp.MustCompile(`^[\w./-]+=[\w][\w.:+-]{0,127}(, ?[\w./-]+=[\w][\w.:+-]{0,127})*$`)

func orNothing(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}

// maxForm bounds a form's body; the largest legitimate one holds a tag and two tokens.
const maxForm = 16 << 10

// checkForm is the page's credential check, after the API's same-site check: the form
// token, and with actions the API token from the session cookie when one is needed.
func (p *Page) checkForm(action bool) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			p.fail(w, r, http.StatusBadRequest, fmt.Errorf("reading the form: %w", err))
			return false
		}
		if err := p.checkFormToken(r); err != nil {
			p.log.Warn("refused a form without a valid form token", "path", r.URL.Path, "reason", err)
			p.fail(w, r, http.StatusForbidden, err)
			return false
		}
		if action && !p.canAct(r) {
			p.fail(w, r, http.StatusUnauthorized, errors.New("this promoter needs its API token to change stages: log in with it above"))
			return false
		}
		return true
	}
}

// act runs a confirmed action. The form names the value the stage ran when the
// confirmation was shown (expect); the action carries it (stage.Expect), so the Git write
// itself checks it: if the stage moved since, nothing is done and the answer is 409.
func (p *Page) act(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	name, action := r.PathValue("name"), r.PathValue("action")
	value, expect, alone := r.PostFormValue("value"), r.PostFormValue("expect"), r.PostFormValue("alone") == "1"
	if _, ok := p.c.StatusOf(name); !ok {
		p.fail(w, r, http.StatusNotFound, fmt.Errorf("no stage %q here", name))
		return
	}
	var opts []stage.ActionOption
	if expect != "" {
		opts = append(opts, stage.Expect(expect))
	}
	// Who asked: the name of the token the session logged in with.
	if by := p.sessions.name(cookieValue(r, sessionCookie)); by != "" {
		opts = append(opts, stage.RequestedBy(by))
	}
	ctx := r.Context()
	var (
		commit string
		err    error
	)
	promote, rollback := p.c.Promote, p.c.Rollback
	if alone && groupAction(action) {
		// The viewer confirmed the member alone, warned as the CLI's --member warns.
		m, ok := p.c.(api.MemberActor)
		if !ok {
			p.fail(w, r, http.StatusNotImplemented, errors.New("this promoter cannot act on a member of a release group alone"))
			return
		}
		promote, rollback = m.PromoteMember, m.RollbackMember
	}
	switch action {
	case "promote":
		var out stage.Outcome
		out, err = promote(ctx, name, value, opts...)
		commit, value = out.Commit, out.New
	case "rollback":
		var out stage.Outcome
		out, err = rollback(ctx, name, value, opts...)
		commit, value = out.Commit, out.New
	case "approve":
		value, err = p.c.Approve(ctx, name, value, opts...)
	case "pause":
		value, err = "", p.c.Pause(ctx, name, opts...)
	case "resume":
		value, err = "", p.c.Resume(ctx, name, opts...)
	default:
		p.fail(w, r, http.StatusNotFound, fmt.Errorf("unknown action %q: promote, approve, rollback, pause or resume", action))
		return
	}
	if err != nil {
		p.fail(w, r, api.ErrorStatus(err), err)
		return
	}
	p.log.Info("pipeline page action", "stage", name, "action", action, "alone", alone, "value", value, "commit", commit, "requestedBy", stage.Requester(opts...))
	q := url.Values{"did": {action}}
	if value != "" {
		q.Set("value", value)
	}
	if commit != "" {
		q.Set("commit", commit)
	}
	http.Redirect(w, r, "/stages/"+url.PathEscape(name)+"?"+q.Encode(), http.StatusSeeOther)
}

func (p *Page) login(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	if !p.api.TokenNeeded() {
		http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
		return
	}
	name, ok := p.api.TokenName(r.PostFormValue("token"))
	if !ok {
		p.log.Warn("pipeline page login with a wrong token")
		p.fail(w, r, http.StatusUnauthorized, errors.New("that is not this promoter's API token (the content of its --token-file or KROPIPE_TOKEN)"))
		return
	}
	// The cookie holds a session of this process, never the token (session.go says why).
	value, expires := p.sessions.issue(name)
	c := cookie(r, sessionCookie, value, int(sessionTTL/time.Second))
	c.Expires = expires
	http.SetCookie(w, c)
	http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
}

// logout ends the session here, so a copy of the cookie is refused too, and deletes it.
func (p *Page) logout(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	if v := cookieValue(r, sessionCookie); v != "" {
		p.sessions.end(v)
	}
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
}

// localPath keeps a redirect on this server: a path, never another host ("//evil").
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	return p
}
