package forge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// bitbucket is a Bitbucket Cloud repository's pull requests, through REST API 2.0
// called by hand with net/http and encoding/json.
//
// Written by hand because the Go client kropipe's peers use
// (github.com/ktrysmt/go-bitbucket v0.10.0, Kargo's) does not serve this use: its
// executeWithContext drops the context (req.WithContext's result is discarded), so no
// call can be cancelled or bounded by the pass; Get and Update take no context at
// all; every answer is an untyped map; its errors keep the status but not the headers
// (no Retry-After); and its Update sends "reviewers": [] on every PUT, which would
// remove the reviewers a pull request was opened with. kropipe needs six calls, each a
// few lines here.
type bitbucket struct {
	hc        *http.Client
	api       string // https://api.bitbucket.org/2.0, without a trailing slash
	workspace string
	slug      string
	username  string // with Token: an app password (basic auth); without: Token is an access token
	token     string
}

func newBitbucket(r Repo, c Config, hc *http.Client) (Forge, error) {
	ws, slug := r.Owner(), r.Name()
	if ws == "" || strings.Contains(ws, "/") {
		return nil, fmt.Errorf("bitbucket: repository path %q is not workspace/repository", r.Path)
	}
	api := strings.TrimRight(c.APIURL, "/")
	if api == "" {
		api = "https://api.bitbucket.org/2.0" // Bitbucket Cloud's API is on its own host
	}
	if _, err := url.Parse(api); err != nil {
		return nil, fmt.Errorf("bitbucket: API URL %q: %w", api, err)
	}
	return &bitbucket{hc: hc, api: api, workspace: ws, slug: slug, username: c.Username, token: c.Token}, nil
}

func (b *bitbucket) Kind() Kind { return Bitbucket }

// bbPullRequest is the part of Bitbucket's pullrequest object kropipe reads.
type bbPullRequest struct {
	ID          int        `json:"id"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	State       string     `json:"state"`
	Draft       bool       `json:"draft"`
	Source      bbEndpoint `json:"source"`
	Destination bbEndpoint `json:"destination"`
	MergeCommit *bbCommit  `json:"merge_commit"`
	ClosedBy    *bbUser    `json:"closed_by"`
	Reviewers   []bbUser   `json:"reviewers"`
	UpdatedOn   time.Time  `json:"updated_on"`
	Links       struct {
		HTML struct {
			Href string `json:"href"`
		} `json:"html"`
	} `json:"links"`
}

type bbEndpoint struct {
	Branch struct {
		Name string `json:"name"`
	} `json:"branch"`
	Commit     *bbCommit `json:"commit"`
	Repository *struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

type bbCommit struct {
	Hash string `json:"hash"`
}

type bbUser struct {
	UUID        string `json:"uuid,omitempty"`
	AccountID   string `json:"account_id,omitempty"`
	Nickname    string `json:"nickname,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Username    string `json:"username,omitempty"` // answers from before 2019
}

func (u *bbUser) name() string {
	if u == nil {
		return ""
	}
	for _, s := range []string{u.Nickname, u.Username, u.DisplayName, u.AccountID, u.UUID} {
		if s != "" {
			return s
		}
	}
	return ""
}

func (b *bitbucket) Find(ctx context.Context, head, base string) (*PullRequest, error) {
	q := url.Values{}
	q.Set("state", "OPEN")
	q.Set("q", fmt.Sprintf("source.branch.name=%s AND destination.branch.name=%s", bbqlString(head), bbqlString(base)))
	q.Set("pagelen", "50")
	var page struct {
		Values []bbPullRequest `json:"values"`
	}
	if err := b.do(ctx, "looking for the open pull request from "+head+" into "+base, http.MethodGet, "/pullrequests", q, nil, &page); err != nil {
		return nil, err
	}
	for _, p := range page.Values {
		if p.State == "OPEN" && p.Source.Branch.Name == head && p.Destination.Branch.Name == base && !bbFromFork(p) {
			return b.Get(ctx, p.ID)
		}
	}
	return nil, nil
}

// bbFromFork reports a pull request from another repository's branch of the same name.
func bbFromFork(p bbPullRequest) bool {
	return p.Source.Repository != nil && p.Destination.Repository != nil &&
		!strings.EqualFold(p.Source.Repository.FullName, p.Destination.Repository.FullName)
}

// bbqlString quotes a value for Bitbucket's query language.
func bbqlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func (b *bitbucket) Get(ctx context.Context, number int) (*PullRequest, error) {
	p, err := b.get(ctx, number)
	if err != nil {
		return nil, err
	}
	return b.pullRequest(ctx, p)
}

func (b *bitbucket) get(ctx context.Context, number int) (*bbPullRequest, error) {
	var p bbPullRequest
	if err := b.do(ctx, fmt.Sprintf("reading pull request #%d", number), http.MethodGet, fmt.Sprintf("/pullrequests/%d", number), nil, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// pullRequest reads a pull request as kropipe tracks it, with the checks of its source
// commit. Bitbucket names commits in a pull request by a 12-digit prefix; kropipe
// compares and checks out full hashes, so it asks for them.
func (b *bitbucket) pullRequest(ctx context.Context, p *bbPullRequest) (*PullRequest, error) {
	pr := &PullRequest{
		Number:    p.ID,
		URL:       p.Links.HTML.Href,
		Title:     p.Title,
		Body:      p.Description,
		Head:      p.Source.Branch.Name,
		Base:      p.Destination.Branch.Name,
		UpdatedAt: p.UpdatedOn,
	}
	for i := range p.Reviewers {
		pr.Reviewers = append(pr.Reviewers, p.Reviewers[i].name())
	}
	switch p.State {
	case "MERGED":
		pr.State = Merged
		pr.MergedBy = p.ClosedBy.name()
	case "DECLINED", "SUPERSEDED":
		pr.State = Closed
		pr.ClosedBy = p.ClosedBy.name()
	default: // OPEN, and DRAFT or QUEUED where the API says so
		pr.State = Open
	}
	var err error
	if p.Source.Commit != nil && p.Source.Commit.Hash != "" {
		if pr.HeadSHA, err = b.fullHash(ctx, p.Source.Commit.Hash); err != nil {
			return nil, err
		}
	}
	if pr.State == Merged && p.MergeCommit != nil && p.MergeCommit.Hash != "" {
		if pr.MergeCommit, err = b.fullHash(ctx, p.MergeCommit.Hash); err != nil {
			return nil, err
		}
	}
	pr.Checks = ChecksNone
	if pr.HeadSHA != "" {
		if pr.Checks, err = b.checks(ctx, pr.HeadSHA); err != nil {
			return nil, err
		}
	}
	if pr.State == Open {
		pr.Mergeable = bbMergeable(pr.Checks, p.Draft)
	}
	return pr, nil
}

// bbMergeable is what can be said before merging: Bitbucket Cloud reports neither
// conflicts nor its merge checks (required approvals, builds) until a merge is tried,
// so a pull request is mergeable unless its checks failed (false) or still run (nil,
// like a forge still computing). A merge the forge then refuses comes back from Merge
// as ErrNotMergeable.
func bbMergeable(c Checks, draft bool) *bool {
	switch {
	case c == ChecksPending:
		return nil
	case c == ChecksFailed, draft:
		f := false
		return &f
	}
	t := true
	return &t
}

func (b *bitbucket) fullHash(ctx context.Context, hash string) (string, error) {
	if len(hash) >= 40 {
		return hash, nil
	}
	var c bbCommit
	if err := b.do(ctx, "reading commit "+hash, http.MethodGet, "/commit/"+url.PathEscape(hash), nil, nil, &c); err != nil {
		return "", err
	}
	if c.Hash == "" {
		return hash, nil
	}
	return c.Hash, nil
}

// checks sums up the commit statuses (builds) of a commit: the latest of each key.
func (b *bitbucket) checks(ctx context.Context, sha string) (Checks, error) {
	q := url.Values{}
	q.Set("pagelen", "100")
	var page struct {
		Values []struct {
			State string `json:"state"`
		} `json:"values"`
	}
	if err := b.do(ctx, "reading the build statuses of "+shortSHA(sha), http.MethodGet, "/commit/"+url.PathEscape(sha)+"/statuses", q, nil, &page); err != nil {
		return "", err
	}
	if len(page.Values) == 0 {
		return ChecksNone, nil
	}
	sum := ChecksPassed
	for _, s := range page.Values {
		switch s.State {
		case "FAILED", "STOPPED": // a stopped build did not pass
			return ChecksFailed, nil
		case "INPROGRESS":
			sum = ChecksPending
		}
	}
	return sum, nil
}

func (b *bitbucket) Create(ctx context.Context, pr NewPullRequest) (*PullRequest, error) {
	op := fmt.Sprintf("opening a pull request from %s into %s", pr.Head, pr.Base)
	body := map[string]any{
		"title":       pr.Title,
		"description": pr.Body,
		"source":      map[string]any{"branch": map[string]string{"name": pr.Head}},
		"destination": map[string]any{"branch": map[string]string{"name": pr.Base}},
		// kropipe/<stage> is kropipe's own, reused by the next promotion.
		"close_source_branch": false,
	}
	// Bitbucket Cloud pull requests have no labels: pr.Labels has nowhere to go.
	if len(pr.Reviewers) > 0 {
		body["reviewers"] = bbReviewers(pr.Reviewers)
	}
	var p bbPullRequest
	err := b.do(ctx, op, http.MethodPost, "/pullrequests", nil, body, &p)
	if err == nil {
		// An open pull request from the same branch into the same base is updated and
		// returned as it is: a create that reached Bitbucket before a crash.
		return b.pullRequest(ctx, &p)
	}
	var fe *Error
	if errors.As(err, &fe) && (fe.Status == http.StatusBadRequest || fe.Status == http.StatusConflict) {
		lower := strings.ToLower(fe.Msg)
		switch {
		case strings.Contains(lower, "already exists") || strings.Contains(lower, "already open"):
			found, ferr := b.Find(ctx, pr.Head, pr.Base)
			if ferr != nil {
				return nil, ferr
			}
			if found != nil {
				return found, nil
			}
		case strings.Contains(lower, "no changes"):
			fe.Msg += fmt.Sprintf(": %s holds nothing that %s lacks: the change is on %s already", pr.Head, pr.Base, pr.Base)
			fe.Err = ErrConflict
		}
	}
	return nil, err
}

// bbReviewers names reviewers as Bitbucket Cloud takes them: {uuid} in braces, or an
// Atlassian account id. Bitbucket stopped taking user names in 2019.
func bbReviewers(names []string) []bbUser {
	out := make([]bbUser, 0, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if strings.HasPrefix(n, "{") {
			out = append(out, bbUser{UUID: n})
		} else {
			out = append(out, bbUser{AccountID: n})
		}
	}
	return out
}

func (b *bitbucket) Update(ctx context.Context, number int, title, body string) error {
	// A PUT replaces the pull request: the destination and the reviewers go back as
	// they are, or Bitbucket would move it to the main branch and drop its reviewers.
	cur, err := b.get(ctx, number)
	if err != nil {
		return err
	}
	reviewers := make([]bbUser, 0, len(cur.Reviewers))
	for _, r := range cur.Reviewers {
		reviewers = append(reviewers, bbUser{UUID: r.UUID, AccountID: r.AccountID})
	}
	req := map[string]any{
		"title":       title,
		"description": body,
		"destination": map[string]any{"branch": map[string]string{"name": cur.Destination.Branch.Name}},
		"reviewers":   reviewers,
	}
	return b.do(ctx, fmt.Sprintf("updating pull request #%d", number), http.MethodPut, fmt.Sprintf("/pullrequests/%d", number), nil, req, nil)
}

func (b *bitbucket) Merge(ctx context.Context, number int, sha string, method MergeMethod, title, message string) (*PullRequest, error) {
	op := fmt.Sprintf("merging pull request #%d", number)
	cur, err := b.Get(ctx, number)
	if err != nil {
		return nil, err
	}
	switch cur.State {
	case Merged:
		return cur, nil // merged before a crash, or by a human
	case Closed:
		return nil, &Error{Forge: Bitbucket, Op: op, Msg: "the pull request is declined", Err: ErrNotMergeable}
	}
	// Bitbucket's merge takes no expected head: compare first. A push between this
	// read and the merge is not caught; kropipe is the only one pushing its branch.
	if sha != "" && !strings.HasPrefix(cur.HeadSHA, sha) && !strings.HasPrefix(sha, cur.HeadSHA) {
		return nil, &Error{Forge: Bitbucket, Op: op,
			Msg: fmt.Sprintf("its head is %s, not %s", shortSHA(cur.HeadSHA), shortSHA(sha)), Err: ErrHeadMoved}
	}
	req := map[string]any{"type": "pullrequest_merge_parameters", "close_source_branch": false}
	switch method {
	case MethodSquash:
		req["merge_strategy"] = "squash"
	case MethodRebase:
		// Fast-forward: kropipe's branch sits on the base's tip, so it lands as it is;
		// Bitbucket refuses when the base moved (ErrNotMergeable).
		req["merge_strategy"] = "fast_forward"
	default:
		req["merge_strategy"] = "merge_commit"
	}
	if msg := commitMessage(title, message); msg != "" && method != MethodRebase {
		req["message"] = msg
	}
	var p bbPullRequest
	status, err := b.doStatus(ctx, op, http.MethodPost, fmt.Sprintf("/pullrequests/%d/merge", number), nil, req, &p)
	if err == nil {
		if status == http.StatusAccepted || p.ID == 0 {
			// Merging in the background (a long merge): read where it stands.
			return b.Get(ctx, number)
		}
		return b.pullRequest(ctx, &p)
	}
	var fe *Error
	if !errors.As(err, &fe) {
		return nil, err
	}
	switch {
	case fe.Status == 555:
		fe.Msg += ": Bitbucket's merge timed out; kropipe asks again (a merge that finished meanwhile is found merged)"
	case fe.Status == http.StatusBadRequest || fe.Status == http.StatusConflict || fe.Status == http.StatusMethodNotAllowed:
		// Merge checks, conflicts, a fast-forward the base no longer allows, or a
		// concurrent merge: see where the pull request stands.
		return mergeRefused(ctx, b, number, sha, fe, false)
	}
	return nil, fe
}

func (b *bitbucket) Close(ctx context.Context, number int, comment string) error {
	cur, err := b.get(ctx, number)
	if err != nil {
		return err
	}
	if cur.State != "OPEN" && cur.State != "DRAFT" {
		return nil
	}
	if comment != "" {
		if err := b.Comment(ctx, number, comment); err != nil {
			return err
		}
	}
	return b.do(ctx, fmt.Sprintf("declining pull request #%d", number), http.MethodPost, fmt.Sprintf("/pullrequests/%d/decline", number), nil, map[string]any{}, nil)
}

func (b *bitbucket) Comment(ctx context.Context, number int, body string) error {
	req := map[string]any{"content": map[string]string{"raw": body}}
	return b.do(ctx, fmt.Sprintf("commenting on pull request #%d", number), http.MethodPost, fmt.Sprintf("/pullrequests/%d/comments", number), nil, req, nil)
}

func (b *bitbucket) do(ctx context.Context, op, method, path string, q url.Values, in, out any) error {
	_, err := b.doStatus(ctx, op, method, path, q, in, out)
	return err
}

// doStatus sends one request about the repository and decodes a 2xx answer into out.
func (b *bitbucket) doStatus(ctx context.Context, op, method, path string, q url.Values, in, out any) (int, error) {
	u := b.api + "/repositories/" + url.PathEscape(b.workspace) + "/" + url.PathEscape(b.slug) + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("bitbucket: %s: %w", op, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, fmt.Errorf("bitbucket: %s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case b.username != "" && b.token != "":
		req.SetBasicAuth(b.username, b.token) // an app password (or API token) with its user
	case b.token != "":
		req.Header.Set("Authorization", "Bearer "+b.token) // a repository, project or workspace access token
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 0, fmt.Errorf("bitbucket: %s: %w", op, err)
		}
		return 0, scrubError(&Error{Forge: Bitbucket, Op: op, Err: err}, b.token)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, scrubError(&Error{Forge: Bitbucket, Op: op, Err: err}, b.token)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, b.fail(op, resp, data)
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, &Error{Forge: Bitbucket, Op: op, Status: resp.StatusCode,
				Msg: "the answer is not the JSON Bitbucket Cloud's API 2.0 gives: check the API URL (kropipe.io/forge-api-url)"}
		}
	}
	return resp.StatusCode, nil
}

// fail reads Bitbucket's error answer: {"type": "error", "error": {"message": …,
// "detail": … }}, where a 403 for a missing scope details the scopes required.
func (b *bitbucket) fail(op string, resp *http.Response, data []byte) error {
	fe := &Error{Forge: Bitbucket, Op: op, Status: resp.StatusCode, RetryAfter: headerRetryAfter(resp.Header, time.Now())}
	var e struct {
		Error struct {
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
			Fields  map[string]any  `json:"fields"`
		} `json:"error"`
	}
	var required []string
	if json.Unmarshal(data, &e) == nil {
		fe.Msg = strings.TrimRight(e.Error.Message, ".")
		var detail string
		var scopes struct {
			Required []string `json:"required"`
		}
		if json.Unmarshal(e.Error.Detail, &detail) == nil && detail != "" {
			fe.Msg += ": " + detail
		} else if json.Unmarshal(e.Error.Detail, &scopes) == nil {
			required = scopes.Required
		}
		for k, v := range e.Error.Fields {
			fe.Msg += fmt.Sprintf(" (%s: %v)", k, v)
		}
	}
	if fe.Msg == "" {
		fe.Msg = http.StatusText(resp.StatusCode)
	}
	fe.Err = statusSentinel(fe.Status, fe.RetryAfter)
	repo := b.workspace + "/" + b.slug
	switch {
	case fe.Status == http.StatusUnauthorized:
		fe.Msg += ": Bitbucket refused the credentials (wrong, expired or revoked): give kropipe a repository, project or workspace access token, or an app password with its username, with the pullrequest:write scope"
	case fe.Status == http.StatusForbidden && fe.RetryAfter == 0:
		if len(required) == 0 {
			required = []string{"pullrequest:write"}
		}
		fe.Msg += fmt.Sprintf(": the credentials lack the %s scope, or write access to %s: give them both", strings.Join(required, ", "), repo)
	case fe.Status == http.StatusNotFound:
		fe.Msg += fmt.Sprintf(": Bitbucket shows these credentials no such pull request, branch or repository %s", repo)
	}
	return scrubError(fe, b.token)
}

// parseBitbucketEvent reads a Bitbucket Cloud webhook (X-Event-Key pullrequest:…). With
// a secret, X-Hub-Signature must be sha256= the HMAC of the body with it. An event
// about something other than a pull request is Bitbucket's, with Number 0: nothing to
// wake.
func parseBitbucketEvent(h http.Header, body []byte, secret string) (Event, bool, error) {
	key := h.Get("X-Event-Key")
	if key == "" {
		return Event{}, false, nil
	}
	if secret != "" {
		sig, ok := strings.CutPrefix(h.Get("X-Hub-Signature"), "sha256=")
		got, err := hex.DecodeString(sig)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if !ok || err != nil || !hmac.Equal(got, mac.Sum(nil)) {
			return Event{}, true, fmt.Errorf("bitbucket webhook %q: X-Hub-Signature is not the body's HMAC with the webhook secret: set the same secret on the repository's webhook", key)
		}
	}
	kind, action, _ := strings.Cut(key, ":")
	var p struct {
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
		PullRequest struct {
			ID          int        `json:"id"`
			Source      bbEndpoint `json:"source"`
			Destination bbEndpoint `json:"destination"`
		} `json:"pullrequest"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, true, fmt.Errorf("bitbucket webhook %q: body is not JSON: %w", key, err)
	}
	ev := Event{Forge: Bitbucket, Repo: p.Repository.FullName, Action: key}
	if kind != "pullrequest" {
		return ev, true, nil
	}
	ev.Number, ev.Head, ev.Base, ev.Action = p.PullRequest.ID, p.PullRequest.Source.Branch.Name, p.PullRequest.Destination.Branch.Name, action
	return ev, true, nil
}
