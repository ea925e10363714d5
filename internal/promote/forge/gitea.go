package forge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"code.gitea.io/sdk/gitea"
)

// giteaForge speaks Gitea's API (v1), which Forgejo keeps: one client for both, the kind
// only names the forge in messages.
type giteaForge struct {
	kind        Kind
	repo        Repo
	owner, name string
	base        string // the server's root URL; the SDK appends /api/v1
	token       string
	hc          *http.Client
}

func newGitea(kind Kind, r Repo, c Config, hc *http.Client) (Forge, error) {
	base := c.APIURL
	if base == "" {
		base = r.Scheme + "://" + r.Host
	}
	// Config.APIURL is documented as https://HOST/api/v1; the SDK wants the root.
	base = strings.TrimSuffix(strings.TrimSuffix(base, "/"), "/api/v1")
	return &giteaForge{kind: kind, repo: r, owner: r.Owner(), name: r.Name(), base: base, token: c.Token, hc: hc}, nil
}

func (g *giteaForge) Kind() Kind { return g.kind }

// client is an SDK client bound to ctx. The SDK takes its context per client, not per
// call, and building one costs nothing: SetGiteaVersion("") keeps it from asking the
// server's version (a request per client) and turns off the SDK's version gates, which
// only matter for servers older than 1.14 that kropipe does not support.
func (g *giteaForge) client(ctx context.Context) (*gitea.Client, error) {
	opts := []gitea.ClientOption{
		gitea.SetHTTPClient(g.hc),
		gitea.SetContext(ctx),
		gitea.SetGiteaVersion(""),
		gitea.SetUserAgent("kropipe"),
	}
	if g.token != "" {
		opts = append(opts, gitea.SetToken(g.token))
	}
	return gitea.NewClient(g.base, opts...)
}

// fail turns an SDK error into *Error, scrubbed of the token.
func (g *giteaForge) fail(op string, resp *gitea.Response, err error) error {
	var status int
	var h http.Header
	if resp != nil && resp.Response != nil {
		status, h = resp.StatusCode, resp.Header
	}
	msg := ""
	if status != 0 && err != nil {
		msg = err.Error()
	}
	return answerError(g.kind, op, status, h, msg, err, g.token)
}

func (g *giteaForge) Find(ctx context.Context, head, base string) (*PullRequest, error) {
	c, err := g.client(ctx)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("finding the open pull request from %s into %s in %s", head, base, g.repo.Path)
	opt := gitea.ListPullRequestsOptions{State: gitea.StateOpen, ListOptions: gitea.ListOptions{Page: 1, PageSize: 50}}
	for {
		prs, resp, err := c.ListRepoPullRequests(g.owner, g.name, opt)
		if err != nil {
			return nil, g.fail(op, resp, err)
		}
		for _, p := range prs {
			if p.Head == nil || p.Base == nil || p.Head.Ref != head || p.Base.Ref != base {
				continue
			}
			// A fork's branch of the same name is not kropipe's.
			if p.Head.RepoID != 0 && p.Base.RepoID != 0 && p.Head.RepoID != p.Base.RepoID {
				continue
			}
			return g.convert(p), nil
		}
		if resp == nil || resp.NextPage == 0 || len(prs) == 0 {
			return nil, nil
		}
		opt.Page = resp.NextPage
	}
}

func (g *giteaForge) Get(ctx context.Context, number int) (*PullRequest, error) {
	c, err := g.client(ctx)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("reading pull request #%d of %s", number, g.repo.Path)
	p, resp, err := c.GetPullRequest(g.owner, g.name, int64(number))
	if err != nil {
		return nil, g.fail(op, resp, err)
	}
	pr := g.convert(p)
	switch pr.State {
	case Open:
		mergeable := p.Mergeable
		pr.Mergeable = &mergeable
		if pr.HeadSHA != "" {
			cs, resp, err := c.GetCombinedStatus(g.owner, g.name, pr.HeadSHA)
			if err != nil {
				return nil, g.fail(fmt.Sprintf("reading the checks of %s (pull request #%d of %s)", short(pr.HeadSHA), number, g.repo.Path), resp, err)
			}
			pr.Checks = giteaChecks(cs)
		}
	case Closed:
		// Gitea's pull request does not say who closed it; the issue timeline does (one
		// request, only for a request closed unmerged).
		pr.ClosedBy = g.closedBy(ctx, number)
	}
	return pr, nil
}

// closedBy is the user of the last "close" event on the request's timeline, "" when the
// timeline cannot be read (who closed it is shown to people, it decides nothing). The
// timeline is read without the SDK: its TimelineComment cannot decode the "label" events
// Gitea 1.2x records when a label is added (their label is an object, the SDK expects a
// list), and kropipe labels its requests, so the SDK's call failed on every one of them.
func (g *giteaForge) closedBy(ctx context.Context, number int) string {
	const pageSize = 50
	who := ""
	for page := 1; page <= 20; page++ {
		u := fmt.Sprintf("%s/api/v1/repos/%s/%s/issues/%d/timeline?page=%d&limit=%d", g.base, url.PathEscape(g.owner), url.PathEscape(g.name), number, page, pageSize)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return who
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "kropipe")
		if g.token != "" {
			req.Header.Set("Authorization", "token "+g.token)
		}
		resp, err := g.hc.Do(req)
		if err != nil {
			return who
		}
		var events []struct {
			Type string `json:"type"`
			User *struct {
				Login string `json:"login"`
			} `json:"user"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&events)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return who
		}
		for _, e := range events {
			if e.Type == "close" && e.User != nil {
				who = e.User.Login
			}
		}
		if len(events) < pageSize {
			break
		}
	}
	return who
}

// giteaChecks sums up a combined status. Gitea reports no state at all for a commit
// without statuses; "warning" blocks a protected branch's merge like a failure does.
func giteaChecks(cs *gitea.CombinedStatus) Checks {
	if cs == nil || cs.TotalCount == 0 && len(cs.Statuses) == 0 {
		return ChecksNone
	}
	switch cs.State {
	case gitea.StatusSuccess:
		return ChecksPassed
	case gitea.StatusPending, "":
		return ChecksPending
	}
	return ChecksFailed
}

func (g *giteaForge) convert(p *gitea.PullRequest) *PullRequest {
	pr := &PullRequest{
		Number: int(p.Index),
		URL:    p.HTMLURL,
		Title:  p.Title,
		Body:   p.Body,
		State:  Open,
	}
	if p.Head != nil {
		pr.Head, pr.HeadSHA = p.Head.Ref, p.Head.Sha
	}
	if p.Base != nil {
		pr.Base = p.Base.Ref
	}
	switch {
	case p.HasMerged:
		pr.State = Merged
		if p.MergedCommitID != nil {
			pr.MergeCommit = *p.MergedCommitID
		}
		if p.MergedBy != nil {
			pr.MergedBy = p.MergedBy.UserName
		}
	case p.State == gitea.StateClosed:
		pr.State = Closed
	}
	for _, u := range p.RequestedReviewers {
		if u != nil {
			pr.Reviewers = append(pr.Reviewers, u.UserName)
		}
	}
	for _, t := range p.RequestedReviewersTeams {
		if t != nil {
			pr.Reviewers = append(pr.Reviewers, t.Name)
		}
	}
	if p.Updated != nil {
		pr.UpdatedAt = *p.Updated
	}
	return pr
}

func (g *giteaForge) Create(ctx context.Context, n NewPullRequest) (*PullRequest, error) {
	c, err := g.client(ctx)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("opening a pull request from %s into %s in %s", n.Head, n.Base, g.repo.Path)
	labels, err := g.labelIDs(c, n.Labels)
	if err != nil {
		return nil, err
	}
	p, resp, err := c.CreatePullRequest(g.owner, g.name, gitea.CreatePullRequestOption{
		Head: n.Head, Base: n.Base, Title: n.Title, Body: n.Body, Labels: labels,
	})
	if err != nil {
		ferr := g.fail(op, resp, err)
		// Gitea answers 409 "pull request already exists for these targets": a crash
		// after an earlier create reached it. That one is the request.
		if errors.Is(ferr, ErrConflict) {
			if existing, ferr2 := g.Find(ctx, n.Head, n.Base); ferr2 == nil && existing != nil {
				return existing, nil
			}
		}
		return nil, ferr
	}
	pr := g.convert(p)
	if users, teams := splitReviewers(n.Reviewers); len(users)+len(teams) > 0 {
		resp, err := c.CreateReviewRequests(g.owner, g.name, p.Index, gitea.PullReviewRequestOptions{Reviewers: users, TeamReviewers: teams})
		if err != nil {
			return pr, g.fail(fmt.Sprintf("asking %s to review pull request #%d of %s", strings.Join(n.Reviewers, ", "), pr.Number, g.repo.Path), resp, err)
		}
		pr.Reviewers = append(users, teams...)
	}
	return pr, nil
}

// labelIDs resolves label names to the repository's label ids, creating the missing ones.
func (g *giteaForge) labelIDs(c *gitea.Client, names []string) ([]int64, error) {
	if len(names) == 0 {
		return nil, nil
	}
	op := fmt.Sprintf("reading the labels of %s", g.repo.Path)
	have := map[string]int64{}
	opt := gitea.ListLabelsOptions{ListOptions: gitea.ListOptions{Page: 1, PageSize: 50}}
	for {
		ls, resp, err := c.ListRepoLabels(g.owner, g.name, opt)
		if err != nil {
			return nil, g.fail(op, resp, err)
		}
		for _, l := range ls {
			have[l.Name] = l.ID
		}
		if resp == nil || resp.NextPage == 0 || len(ls) == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	ids := make([]int64, 0, len(names))
	for _, name := range names {
		id, ok := have[name]
		if !ok {
			l, resp, err := c.CreateLabel(g.owner, g.name, gitea.CreateLabelOption{Name: name, Color: "#ededed"})
			if err != nil {
				return nil, g.fail(fmt.Sprintf("creating the label %q in %s", name, g.repo.Path), resp, err)
			}
			id = l.ID
			have[name] = id
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// splitReviewers tells users from teams: "org/team" names a team (Gitea and GitHub take
// the team's own name or slug, within the repository's organization).
func splitReviewers(rs []string) (users, teams []string) {
	for _, r := range rs {
		if _, team, ok := strings.Cut(r, "/"); ok {
			teams = append(teams, team)
		} else if r != "" {
			users = append(users, r)
		}
	}
	return users, teams
}

func (g *giteaForge) Update(ctx context.Context, number int, title, body string) error {
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, resp, err := c.EditPullRequest(g.owner, g.name, int64(number), gitea.EditPullRequestOption{Title: title, Body: &body})
	if err != nil {
		return g.fail(fmt.Sprintf("updating pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	return nil
}

func (g *giteaForge) Merge(ctx context.Context, number int, sha string, method MergeMethod, title, message string) (*PullRequest, error) {
	c, err := g.client(ctx)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("merging pull request #%d of %s at %s", number, g.repo.Path, short(sha))
	style := gitea.MergeStyleMerge
	switch method {
	case MethodSquash:
		style = gitea.MergeStyleSquash
	case MethodRebase:
		style = gitea.MergeStyleRebase
	}
	_, resp, err := c.MergePullRequest(g.owner, g.name, int64(number), gitea.MergePullRequestOption{
		Style: style, Title: title, Message: message, HeadCommitId: sha,
	})
	if err == nil && resp != nil && resp.StatusCode >= 300 {
		// getStatusCode hands back any answer without an error: read it as one.
		err = errors.New(http.StatusText(resp.StatusCode))
	}
	if err != nil {
		ferr := g.fail(op, resp, err)
		var fe *Error
		if !errors.As(ferr, &fe) || fe.Status == 0 || fe.Status >= 500 || fe.Status == http.StatusTooManyRequests ||
			fe.Status == http.StatusUnauthorized || fe.Status == http.StatusForbidden {
			return nil, ferr
		}
		// 404 (closed), 405 (already merged, not mergeable, not allowed), 409 (conflicts,
		// "head out of date"): what the request is now says which.
		return mergeRefused(ctx, g, number, sha, fe, fe.Status == http.StatusConflict && strings.Contains(fe.Msg, "head out of date"))
	}
	return g.Get(ctx, number)
}

func (g *giteaForge) Close(ctx context.Context, number int, comment string) error {
	pr, err := g.Get(ctx, number)
	if err != nil {
		return err
	}
	if pr.State != Open {
		return nil
	}
	if comment != "" {
		if err := g.Comment(ctx, number, comment); err != nil {
			return err
		}
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	closed := gitea.StateClosed
	_, resp, err := c.EditPullRequest(g.owner, g.name, int64(number), gitea.EditPullRequestOption{State: &closed})
	if err != nil {
		return g.fail(fmt.Sprintf("closing pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	return nil
}

func (g *giteaForge) Comment(ctx context.Context, number int, body string) error {
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, resp, err := c.CreateIssueComment(g.owner, g.name, int64(number), gitea.CreateIssueCommentOption{Body: body})
	if err != nil {
		return g.fail(fmt.Sprintf("commenting on pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	return nil
}
