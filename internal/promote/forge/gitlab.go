package forge

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// gitLab is a GitLab project's merge requests, through GitLab's own Go client
// (gitlab.com/gitlab-org/api/client-go): it follows the REST API closely, takes our
// *http.Client and a context per call, and URL-encodes the project's full path
// (group/subgroup/name) as the project id the way the API wants.
type gitLab struct {
	c     *gitlab.Client
	pid   string // the project's full path; the client escapes it
	token string // only to scrub it from messages
}

func newGitLab(r Repo, c Config, hc *http.Client) (Forge, error) {
	base := c.APIURL
	if base == "" {
		base = r.Scheme + "://" + r.Host + "/api/v4" // gitlab.com and self-managed alike
	}
	opts := []gitlab.ClientOptionFunc{
		gitlab.WithBaseURL(base),
		gitlab.WithHTTPClient(hc),
		// The engine retries a failed call on a later pass with its own back-off; the
		// client's retries would hold the pass and hide 5xx and 429 answers from it.
		gitlab.WithoutRetries(),
	}
	// A personal, project or group access token goes in PRIVATE-TOKEN; no token reads
	// public projects only.
	var as gitlab.AuthSource = gitlab.Unauthenticated{}
	if c.Token != "" {
		as = gitlab.AccessTokenAuthSource{Token: c.Token}
	}
	cl, err := gitlab.NewAuthSourceClient(as, opts...)
	if err != nil {
		return nil, fmt.Errorf("gitlab: API URL %q: %w", base, err)
	}
	return &gitLab{c: cl, pid: r.Path, token: c.Token}, nil
}

func (g *gitLab) Kind() Kind { return GitLab }

func (g *gitLab) Find(ctx context.Context, head, base string) (*PullRequest, error) {
	op := fmt.Sprintf("looking for the open merge request from %s into %s", head, base)
	mrs, resp, err := g.c.MergeRequests.ListProjectMergeRequests(g.pid, &gitlab.ListProjectMergeRequestsOptions{
		State:        gitlab.Ptr("opened"),
		SourceBranch: gitlab.Ptr(head),
		TargetBranch: gitlab.Ptr(base),
	}, gitlab.WithContext(ctx))
	if err != nil {
		return nil, g.fail(op, resp, err)
	}
	for _, m := range mrs {
		// A fork's merge request can carry the same branch name: only the project's own
		// branch is kropipe's.
		if m.State == "opened" && m.SourceBranch == head && m.TargetBranch == base && m.SourceProjectID == m.TargetProjectID {
			return g.Get(ctx, int(m.IID))
		}
	}
	return nil, nil
}

func (g *gitLab) Get(ctx context.Context, number int) (*PullRequest, error) {
	m, resp, err := g.c.MergeRequests.GetMergeRequest(g.pid, int64(number), nil, gitlab.WithContext(ctx))
	if err != nil {
		return nil, g.fail(fmt.Sprintf("reading merge request !%d", number), resp, err)
	}
	return gitLabPullRequest(m), nil
}

func (g *gitLab) Create(ctx context.Context, pr NewPullRequest) (*PullRequest, error) {
	op := fmt.Sprintf("opening a merge request from %s into %s", pr.Head, pr.Base)
	opt := &gitlab.CreateMergeRequestOptions{
		Title:        gitlab.Ptr(pr.Title),
		Description:  gitlab.Ptr(pr.Body),
		SourceBranch: gitlab.Ptr(pr.Head),
		TargetBranch: gitlab.Ptr(pr.Base),
	}
	if len(pr.Labels) > 0 {
		// GitLab creates a label the project does not have yet.
		opt.Labels = gitlab.Ptr(gitlab.LabelOptions(pr.Labels))
	}
	if len(pr.Reviewers) > 0 {
		ids, err := g.userIDs(ctx, pr.Reviewers)
		if err != nil {
			return nil, err
		}
		opt.ReviewerIDs = &ids
	}
	m, resp, err := g.c.MergeRequests.CreateMergeRequest(g.pid, opt, gitlab.WithContext(ctx))
	if err != nil {
		ferr := g.fail(op, resp, err)
		// "Another open merge request already exists for this source branch: !12": a
		// create that reached GitLab before a crash or a timeout. 409 today, 422 before.
		var fe *Error
		if errors.As(ferr, &fe) && (fe.Status == http.StatusConflict || fe.Status == http.StatusUnprocessableEntity) &&
			strings.Contains(strings.ToLower(fe.Msg), "already exists") {
			found, ferr2 := g.Find(ctx, pr.Head, pr.Base)
			if ferr2 != nil {
				return nil, ferr2
			}
			if found != nil {
				return found, nil
			}
		}
		return nil, ferr
	}
	return gitLabPullRequest(m), nil
}

// userIDs turns user names into the ids GitLab's reviewer_ids takes.
func (g *gitLab) userIDs(ctx context.Context, names []string) ([]int64, error) {
	ids := make([]int64, 0, len(names))
	for _, name := range names {
		name = strings.TrimPrefix(strings.TrimSpace(name), "@")
		op := fmt.Sprintf("looking up reviewer %q", name)
		users, resp, err := g.c.Users.ListUsers(&gitlab.ListUsersOptions{Username: gitlab.Ptr(name)}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, g.fail(op, resp, err)
		}
		var id int64
		for _, u := range users {
			if strings.EqualFold(u.Username, name) {
				id = u.ID
			}
		}
		if id == 0 {
			return nil, &Error{Forge: GitLab, Op: op,
				Msg: fmt.Sprintf("GitLab has no user %q: name reviewers by their GitLab user name", name), Err: ErrNotFound}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (g *gitLab) Update(ctx context.Context, number int, title, body string) error {
	_, resp, err := g.c.MergeRequests.UpdateMergeRequest(g.pid, int64(number), &gitlab.UpdateMergeRequestOptions{
		Title:       gitlab.Ptr(title),
		Description: gitlab.Ptr(body),
	}, gitlab.WithContext(ctx))
	if err != nil {
		return g.fail(fmt.Sprintf("updating merge request !%d", number), resp, err)
	}
	return nil
}

func (g *gitLab) Merge(ctx context.Context, number int, sha string, method MergeMethod, title, message string) (*PullRequest, error) {
	op := fmt.Sprintf("merging merge request !%d", number)
	if method == MethodRebase {
		// GitLab lands a merge request by the project's merge method; the API cannot
		// ask for a rebase per request, and rebasing first (PUT …/rebase) would move
		// the head kropipe pushed, which the sha guard below exists to refuse.
		return nil, &Error{Forge: GitLab, Op: op + " by rebase",
			Msg: "GitLab merges by the project's merge method: for a linear history set the project's Settings → Merge requests → Merge method to fast-forward merge and use merge method merge (or squash)",
			Err: ErrMethodUnsupported}
	}
	opt := &gitlab.AcceptMergeRequestOptions{}
	if sha != "" {
		opt.SHA = gitlab.Ptr(sha) // GitLab refuses (409) when the head is no longer sha
	}
	msg := commitMessage(title, message)
	switch method {
	case MethodSquash:
		opt.Squash = gitlab.Ptr(true)
		if msg != "" {
			opt.SquashCommitMessage = gitlab.Ptr(msg)
		}
	default:
		opt.Squash = gitlab.Ptr(false)
	}
	if msg != "" {
		// In a project that merges by merge commits a squash lands as a squash commit
		// and a merge commit: both say what was promoted.
		opt.MergeCommitMessage = gitlab.Ptr(msg)
	}
	m, resp, err := g.c.MergeRequests.AcceptMergeRequest(g.pid, int64(number), opt, gitlab.WithContext(ctx))
	if err == nil {
		return gitLabPullRequest(m), nil
	}
	ferr := g.fail(op, resp, err)
	var fe *Error
	if !errors.As(ferr, &fe) {
		return nil, ferr
	}
	switch fe.Status {
	case http.StatusConflict: // "SHA does not match HEAD of source branch"
		fe.Err = ErrHeadMoved
		fe.Msg += fmt.Sprintf(": the merge request's head is no longer %s", shortSHA(sha))
	case http.StatusMethodNotAllowed, http.StatusNotAcceptable, http.StatusUnprocessableEntity:
		// 405 also answers a merge request merged already: that one is done, not refused.
		return mergeRefused(ctx, g, number, sha, fe, false)
	}
	return nil, fe
}

func (g *gitLab) Close(ctx context.Context, number int, comment string) error {
	cur, err := g.Get(ctx, number)
	if err != nil {
		return err
	}
	if cur.State != Open {
		return nil
	}
	if comment != "" {
		if err := g.Comment(ctx, number, comment); err != nil {
			return err
		}
	}
	_, resp, err := g.c.MergeRequests.UpdateMergeRequest(g.pid, int64(number), &gitlab.UpdateMergeRequestOptions{
		StateEvent: gitlab.Ptr("close"),
	}, gitlab.WithContext(ctx))
	if err != nil {
		return g.fail(fmt.Sprintf("closing merge request !%d", number), resp, err)
	}
	return nil
}

func (g *gitLab) Comment(ctx context.Context, number int, body string) error {
	_, resp, err := g.c.Notes.CreateMergeRequestNote(g.pid, int64(number), &gitlab.CreateMergeRequestNoteOptions{
		Body: gitlab.Ptr(body),
	}, gitlab.WithContext(ctx))
	if err != nil {
		return g.fail(fmt.Sprintf("commenting on merge request !%d", number), resp, err)
	}
	return nil
}

// gitLabPullRequest reads a merge request as kropipe tracks it.
func gitLabPullRequest(m *gitlab.MergeRequest) *PullRequest {
	pr := &PullRequest{
		Number:  int(m.IID),
		URL:     m.WebURL,
		Title:   m.Title,
		Body:    m.Description,
		Head:    m.SourceBranch,
		Base:    m.TargetBranch,
		HeadSHA: m.SHA,
		Checks:  gitLabChecks(m.HeadPipeline),
	}
	switch m.State {
	case "merged":
		pr.State = Merged
	case "closed":
		pr.State = Closed
	default: // opened, and locked while GitLab is merging it
		pr.State = Open
		pr.Mergeable = gitLabMergeable(m.DetailedMergeStatus)
	}
	if pr.State == Merged {
		pr.MergeCommit = m.MergeCommitSHA
		if pr.MergeCommit == "" {
			pr.MergeCommit = m.SquashCommitSHA
		}
		if pr.MergeCommit == "" {
			// A fast-forward merge makes no commit: the head itself landed.
			pr.MergeCommit = m.SHA
		}
		//lint:ignore SA1019 GitLab before 14.7 answers merged_by alone, as the recorded merged answer shows
		mergedBy := m.MergedBy
		switch {
		case m.MergeUser != nil:
			pr.MergedBy = m.MergeUser.Username
		case mergedBy != nil:
			pr.MergedBy = mergedBy.Username
		}
	}
	if pr.State == Closed && m.ClosedBy != nil {
		pr.ClosedBy = m.ClosedBy.Username
	}
	for _, r := range m.Reviewers {
		if r != nil {
			pr.Reviewers = append(pr.Reviewers, r.Username)
		}
	}
	if m.UpdatedAt != nil {
		pr.UpdatedAt = *m.UpdatedAt
	}
	return pr
}

// gitLabMergeable reads detailed_merge_status: mergeable, or still being worked out, or
// something a human or a pipeline must settle first (conflict, need_rebase,
// not_approved, ci_must_pass, draft_status, discussions_not_resolved, …).
func gitLabMergeable(status string) *bool {
	switch status {
	case "mergeable":
		t := true
		return &t
	case "", "checking", "unchecked", "preparing", "approvals_syncing":
		return nil
	}
	f := false
	return &f
}

// gitLabChecks sums up the head pipeline, GitLab's required check.
func gitLabChecks(p *gitlab.Pipeline) Checks {
	if p == nil {
		return ChecksNone
	}
	switch p.Status {
	case "success", "skipped":
		return ChecksPassed
	case "failed", "canceled", "canceling":
		return ChecksFailed
	}
	// created, waiting_for_resource, preparing, pending, running, scheduled, manual:
	// not done yet.
	return ChecksPending
}

// fail turns a client error into an *Error that says what to do about it.
func (g *gitLab) fail(op string, resp *gitlab.Response, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("gitlab: %s: %w", op, err)
	}
	fe := &Error{Forge: GitLab, Op: op}
	var er *gitlab.ErrorResponse
	switch {
	case errors.As(err, &er):
		fe.Status = er.StatusCode
		fe.Msg = gitLabMessage(er)
		if er.Response != nil {
			fe.RetryAfter = headerRetryAfter(er.Response.Header, time.Now())
		}
	case resp != nil && resp.Response != nil && resp.StatusCode >= 300:
		fe.Status = resp.StatusCode
	default:
		fe.Err = err // no answer: a timeout, a refused connection
		return scrubError(fe, g.token)
	}
	if fe.Status == http.StatusNotFound && fe.Msg == "" {
		fe.Msg = "404 Not Found"
	}
	if resp != nil && resp.Response != nil && fe.RetryAfter == 0 {
		fe.RetryAfter = headerRetryAfter(resp.Header, time.Now())
	}
	fe.Err = statusSentinel(fe.Status, fe.RetryAfter)
	switch {
	case fe.Status == http.StatusUnauthorized:
		fe.Msg += ": GitLab refused the token (wrong, expired, revoked, or not allowed this): give kropipe a personal, project or group access token with the api scope, as the password of the repository's credentials"
	case fe.Status == http.StatusForbidden && fe.RetryAfter == 0:
		fe.Msg += fmt.Sprintf(": the token lacks the api scope, or its user lacks the Developer role (Maintainer to merge into a protected branch) on %s: give it both", g.pid)
	case fe.Status == http.StatusNotFound:
		fe.Msg += fmt.Sprintf(": GitLab shows this token no such merge request, branch or project %s (a private project answers 404 to a token without access)", g.pid)
	}
	return scrubError(fe, g.token)
}

// gitLabMessage is GitLab's own words: {"message": "…"} or {"message": ["…"]} from the
// API, {"error": …, "error_description": "…"} from its token checks; the client's
// rendering of other shapes otherwise.
func gitLabMessage(er *gitlab.ErrorResponse) string {
	var body struct {
		Message     json.RawMessage `json:"message"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	if json.Unmarshal(er.Body, &body) != nil {
		// Not JSON: a proxy's page (502) or a rate limiter's text; the status says it.
		return http.StatusText(er.StatusCode)
	}
	var one string
	var many []string
	switch {
	case json.Unmarshal(body.Message, &one) == nil && one != "":
		return strings.TrimRight(one, ".")
	case json.Unmarshal(body.Message, &many) == nil && len(many) > 0:
		return strings.TrimRight(strings.Join(many, "; "), ".")
	case body.Description != "":
		return body.Error + ": " + strings.TrimRight(body.Description, ".")
	case er.Message != "":
		return er.Message
	}
	return http.StatusText(er.StatusCode)
}

// statusSentinel is the sentinel an HTTP status means.
func statusSentinel(status int, retryAfter time.Duration) error {
	switch status {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		if retryAfter > 0 {
			return nil // a rate limit, not a permission
		}
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict, http.StatusUnprocessableEntity:
		return ErrConflict
	}
	return nil
}

// headerRetryAfter reads Retry-After: seconds, or an HTTP date.
func headerRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return time.Second // "now": still a sign to wait and ask again
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
		return time.Second
	}
	return 0
}

// scrubError takes a credential out of an error's message; a forge may echo what it
// was sent.
func scrubError(fe *Error, secrets ...string) *Error {
	for _, s := range secrets {
		if len(s) < 4 { // too short to tell from ordinary words
			continue
		}
		fe.Msg = strings.ReplaceAll(fe.Msg, s, "[redacted]")
		if fe.Err != nil && strings.Contains(fe.Err.Error(), s) {
			fe.Err = errors.New(strings.ReplaceAll(fe.Err.Error(), s, "[redacted]"))
		}
	}
	return fe
}

// commitMessage is a merge or squash commit's message: the subject, a blank line, the
// body.
func commitMessage(title, message string) string {
	switch {
	case title == "":
		return message
	case message == "":
		return title
	}
	return title + "\n\n" + message
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// parseGitLabEvent reads a GitLab webhook (Merge Request Hook, or a system hook about a
// merge request). The secret, when set, must come back in X-Gitlab-Token, compared in
// constant time. An event about something other than a merge request is GitLab's, with
// Number 0: nothing to wake.
func parseGitLabEvent(h http.Header, body []byte, secret string) (Event, bool, error) {
	kind := h.Get("X-Gitlab-Event")
	if kind == "" {
		return Event{}, false, nil
	}
	if secret != "" && subtle.ConstantTimeCompare([]byte(h.Get("X-Gitlab-Token")), []byte(secret)) != 1 {
		return Event{}, true, fmt.Errorf("gitlab webhook: X-Gitlab-Token does not match the webhook secret: set the same secret token in the project's Settings → Webhooks")
	}
	var p struct {
		ObjectKind string `json:"object_kind"`
		Project    struct {
			PathWithNamespace string `json:"path_with_namespace"`
		} `json:"project"`
		ObjectAttributes struct {
			IID             int    `json:"iid"`
			SourceBranch    string `json:"source_branch"`
			TargetBranch    string `json:"target_branch"`
			Action          string `json:"action"`
			State           string `json:"state"`
			SourceProjectID int64  `json:"source_project_id"`
			TargetProjectID int64  `json:"target_project_id"`
		} `json:"object_attributes"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, true, fmt.Errorf("gitlab webhook %q: body is not JSON: %w", kind, err)
	}
	ev := Event{Forge: GitLab, Repo: p.Project.PathWithNamespace, Action: kind}
	if p.ObjectKind != "merge_request" {
		return ev, true, nil
	}
	a := p.ObjectAttributes
	ev.Number, ev.Head, ev.Base, ev.Action = a.IID, a.SourceBranch, a.TargetBranch, a.Action
	if ev.Action == "" { // old GitLab versions: the state it reached
		ev.Action = a.State
	}
	return ev, true, nil
}
