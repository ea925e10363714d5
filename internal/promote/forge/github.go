package forge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v89/github"
)

// githubForge speaks GitHub's REST API (github.com and Enterprise Server) through
// go-github, authenticated by a token or as a GitHub App installation.
type githubForge struct {
	repo        Repo
	owner, name string
	c           *github.Client
	token       string // scrubbed from every message
}

func newGitHub(r Repo, c Config, hc *http.Client) (Forge, error) {
	return newGitHubForge(r, c, hc)
}

func newGitHubForge(r Repo, c Config, hc *http.Client) (*githubForge, error) {
	// Config.APIURL is taken as given (a proxy, a test server); without it, github.com's
	// API is go-github's default and an Enterprise Server's is https://HOST/api/v3/.
	api, enterprise := c.APIURL, false
	if api == "" && !strings.EqualFold(r.Host, "github.com") {
		api, enterprise = r.Scheme+"://"+r.Host+"/api/v3/", true
	}
	if api != "" && !strings.HasSuffix(api, "/") {
		api += "/"
	}
	// go-github sets the transport on the client it is given: work on a copy, the
	// caller's client may be shared.
	own := *hc
	if own.Transport == nil {
		own.Transport = http.DefaultTransport
	}
	var opts []github.ClientOptionsFunc
	switch {
	case c.GitHubApp != nil:
		app := c.GitHubApp
		itr, err := ghinstallation.New(own.Transport, app.AppID, app.InstallationID, app.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("github: GitHub App %d installation %d: the private key does not parse (%w): put the app's PEM private key in the repository's credentials", app.AppID, app.InstallationID, err)
		}
		if api != "" {
			itr.BaseURL = strings.TrimSuffix(api, "/")
		}
		own.Transport = itr
	case c.Token != "":
		opts = append(opts, github.WithAuthToken(c.Token))
	}
	opts = append([]github.ClientOptionsFunc{github.WithHTTPClient(&own), github.WithUserAgent("kropipe")}, opts...)
	switch {
	case enterprise:
		opts = append(opts, github.WithEnterpriseURLs(api, r.Scheme+"://"+r.Host+"/api/uploads/"))
	case api != "":
		opts = append(opts, github.WithURLs(&api, &api))
	}
	gc, err := github.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("github: API URL %q: %w", api, err)
	}
	return &githubForge{repo: r, owner: r.Owner(), name: r.Name(), c: gc, token: c.Token}, nil
}

func (g *githubForge) Kind() Kind { return GitHub }

// fail turns a go-github error into *Error: the status, GitHub's message, and for the
// primary and secondary rate limits when to ask again.
func (g *githubForge) fail(op string, resp *github.Response, err error) error {
	var status int
	var h http.Header
	if resp != nil && resp.Response != nil {
		status, h = resp.StatusCode, resp.Header
	}
	msg := ""
	var wait time.Duration
	var er *github.ErrorResponse
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	switch {
	case errors.As(err, &rl):
		msg = rl.Message
		if rl.Response != nil {
			status = rl.Response.StatusCode
		}
		wait = max(time.Until(rl.Rate.Reset.Time), time.Second)
	case errors.As(err, &ab):
		msg = ab.Message
		if ab.Response != nil {
			status = ab.Response.StatusCode
		}
		wait = time.Minute
		if ab.RetryAfter != nil && *ab.RetryAfter > 0 {
			wait = *ab.RetryAfter
		}
	case errors.As(err, &er):
		msg = er.Message
		for _, d := range er.Errors {
			if d.Message != "" {
				msg += "; " + d.Message
			}
		}
		if er.Response != nil {
			status = er.Response.StatusCode
		}
	}
	fe := answerError(GitHub, op, status, h, msg, err, g.token)
	if wait > 0 {
		fe.RetryAfter = wait
		if fe.Err == ErrForbidden {
			fe.Msg = scrubSecrets(msg, g.token) // a rate limit, not a missing permission
		}
	}
	return fe
}

func (g *githubForge) Find(ctx context.Context, head, base string) (*PullRequest, error) {
	op := fmt.Sprintf("finding the open pull request from %s into %s in %s", head, base, g.repo.Path)
	opt := &github.PullRequestListOptions{State: "open", Head: g.owner + ":" + head, Base: base, ListOptions: github.ListOptions{PerPage: 100}}
	for {
		prs, resp, err := g.c.PullRequests.List(ctx, g.owner, g.name, opt)
		if err != nil {
			return nil, g.fail(op, resp, err)
		}
		for _, p := range prs {
			// The head filter already names the owner; a fork's branch of the same name
			// (another full name) is not kropipe's.
			sameRepo := p.GetHead().GetRepo() == nil || strings.EqualFold(p.GetHead().GetRepo().GetFullName(), g.repo.Path)
			if p.GetHead().GetRef() == head && p.GetBase().GetRef() == base && sameRepo {
				return githubPR(p), nil
			}
		}
		if resp == nil || resp.NextPage == 0 {
			return nil, nil
		}
		opt.Page = resp.NextPage
	}
}

func githubPR(p *github.PullRequest) *PullRequest {
	pr := &PullRequest{
		Number:  p.GetNumber(),
		URL:     p.GetHTMLURL(),
		Title:   p.GetTitle(),
		Body:    p.GetBody(),
		Head:    p.GetHead().GetRef(),
		HeadSHA: p.GetHead().GetSHA(),
		Base:    p.GetBase().GetRef(),
		State:   Open,
	}
	switch {
	case p.GetMerged() || p.MergedAt != nil:
		pr.State = Merged
		pr.MergeCommit = p.GetMergeCommitSHA()
		pr.MergedBy = p.GetMergedBy().GetLogin()
	case p.GetState() == "closed":
		pr.State = Closed
	}
	for _, u := range p.RequestedReviewers {
		pr.Reviewers = append(pr.Reviewers, u.GetLogin())
	}
	for _, t := range p.RequestedTeams {
		pr.Reviewers = append(pr.Reviewers, t.GetSlug())
	}
	if p.UpdatedAt != nil {
		pr.UpdatedAt = p.UpdatedAt.Time
	}
	return pr
}

func (g *githubForge) Get(ctx context.Context, number int) (*PullRequest, error) {
	op := fmt.Sprintf("reading pull request #%d of %s", number, g.repo.Path)
	p, resp, err := g.c.PullRequests.Get(ctx, g.owner, g.name, number)
	if err != nil {
		return nil, g.fail(op, resp, err)
	}
	pr := githubPR(p)
	switch pr.State {
	case Open:
		pr.Mergeable = p.Mergeable // null while GitHub computes it
		if pr.Checks, err = g.checks(ctx, pr); err != nil {
			return nil, err
		}
	case Closed:
		// The pull request does not say who closed it; its issue does.
		is, resp, err := g.c.Issues.Get(ctx, g.owner, g.name, number)
		if err != nil {
			return nil, g.fail(fmt.Sprintf("reading who closed pull request #%d of %s", number, g.repo.Path), resp, err)
		}
		pr.ClosedBy = is.GetClosedBy().GetLogin()
	}
	return pr, nil
}

// checks sums up the head commit's commit statuses and check runs. When the base
// branch's protection lists required checks and the credentials may read them, only
// those count (one missing is pending); otherwise every reported check counts, as
// GitHub's own combined view does.
func (g *githubForge) checks(ctx context.Context, pr *PullRequest) (Checks, error) {
	op := fmt.Sprintf("reading the checks of %s (pull request #%d of %s)", short(pr.HeadSHA), pr.Number, g.repo.Path)
	results := map[string]Checks{}
	cs, resp, err := g.c.Repositories.GetCombinedStatus(ctx, g.owner, g.name, pr.HeadSHA, &github.ListOptions{PerPage: 100})
	if err != nil {
		return "", g.fail(op, resp, err)
	}
	for _, s := range cs.Statuses {
		results[s.GetContext()] = worst(results[s.GetContext()], githubStatus(s.GetState()))
	}
	runs, resp, err := g.c.Checks.ListCheckRunsForRef(ctx, g.owner, g.name, pr.HeadSHA, &github.ListCheckRunsOptions{Filter: github.Ptr("latest"), ListOptions: github.ListOptions{PerPage: 100}})
	if err != nil {
		var fe *Error
		// A token without checks:read (a fine-grained token, an app without the
		// permission) still sees the commit statuses.
		if errors.As(g.fail(op, resp, err), &fe) && fe.Status != http.StatusForbidden {
			return "", fe
		}
	} else {
		for _, r := range runs.CheckRuns {
			results[r.GetName()] = worst(results[r.GetName()], githubRun(r))
		}
	}
	var required []string
	rc, resp, err := g.c.Repositories.GetRequiredStatusChecks(ctx, g.owner, g.name, pr.Base)
	if errors.Is(err, github.ErrBranchNotProtected) {
		err = nil // no protection: no required checks
	}
	if err == nil && rc != nil {
		if rc.Checks != nil {
			for _, c := range *rc.Checks {
				required = append(required, c.Context)
			}
		} else if rc.Contexts != nil {
			required = *rc.Contexts
		}
	} else if err != nil {
		var fe *Error
		if errors.As(g.fail(op, resp, err), &fe) && Retryable(fe) {
			return "", fe
		}
		// 404 (no protection, no required checks) or 403 (no rights to read it): all
		// reported checks count.
	}
	if len(required) > 0 {
		sum := ChecksPassed
		for _, name := range required {
			got, ok := results[name]
			if !ok {
				got = ChecksPending
			}
			sum = worst(sum, got)
		}
		return sum, nil
	}
	if len(results) == 0 {
		return ChecksNone, nil
	}
	sum := ChecksPassed
	for _, got := range results {
		sum = worst(sum, got)
	}
	return sum, nil
}

// worst of two results: failed over pending over passed; "" is nothing yet.
func worst(a, b Checks) Checks {
	rank := map[Checks]int{"": 0, ChecksNone: 0, ChecksPassed: 1, ChecksPending: 2, ChecksFailed: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func githubStatus(state string) Checks {
	switch state {
	case "success":
		return ChecksPassed
	case "pending":
		return ChecksPending
	}
	return ChecksFailed // error, failure
}

func githubRun(r *github.CheckRun) Checks {
	if r.GetStatus() != "completed" {
		return ChecksPending
	}
	switch r.GetConclusion() {
	case "success", "neutral", "skipped":
		return ChecksPassed
	}
	return ChecksFailed // failure, cancelled, timed_out, action_required, stale, startup_failure
}

func (g *githubForge) Create(ctx context.Context, n NewPullRequest) (*PullRequest, error) {
	op := fmt.Sprintf("opening a pull request from %s into %s in %s", n.Head, n.Base, g.repo.Path)
	p, resp, err := g.c.PullRequests.Create(ctx, g.owner, g.name, &github.NewPullRequest{
		Title: &n.Title, Head: &n.Head, Base: &n.Base, Body: &n.Body,
	})
	if err != nil {
		ferr := g.fail(op, resp, err)
		// 422 "A pull request already exists for owner:branch.": a crash after an
		// earlier create reached GitHub. That one is the request.
		var fe *Error
		if errors.As(ferr, &fe) && fe.Status == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(fe.Msg), "already exists") {
			if existing, ferr2 := g.Find(ctx, n.Head, n.Base); ferr2 == nil && existing != nil {
				return existing, nil
			}
		}
		return nil, ferr
	}
	pr := githubPR(p)
	if len(n.Labels) > 0 {
		// GitHub creates the labels the repository lacks.
		if _, resp, err := g.c.Issues.AddLabelsToIssue(ctx, g.owner, g.name, pr.Number, n.Labels); err != nil {
			return pr, g.fail(fmt.Sprintf("labelling pull request #%d of %s with %s", pr.Number, g.repo.Path, strings.Join(n.Labels, ", ")), resp, err)
		}
	}
	if users, teams := splitReviewers(n.Reviewers); len(users)+len(teams) > 0 {
		if _, resp, err := g.c.PullRequests.RequestReviewers(ctx, g.owner, g.name, pr.Number, github.ReviewersRequest{Reviewers: users, TeamReviewers: teams}); err != nil {
			return pr, g.fail(fmt.Sprintf("asking %s to review pull request #%d of %s", strings.Join(n.Reviewers, ", "), pr.Number, g.repo.Path), resp, err)
		}
		pr.Reviewers = append(users, teams...)
	}
	return pr, nil
}

func (g *githubForge) Update(ctx context.Context, number int, title, body string) error {
	_, resp, err := g.c.PullRequests.Edit(ctx, g.owner, g.name, number, &github.PullRequest{Title: &title, Body: &body})
	if err != nil {
		return g.fail(fmt.Sprintf("updating pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	return nil
}

func (g *githubForge) Merge(ctx context.Context, number int, sha string, method MergeMethod, title, message string) (*PullRequest, error) {
	op := fmt.Sprintf("merging pull request #%d of %s at %s", number, g.repo.Path, short(sha))
	if method == "" {
		method = MethodMerge
	}
	_, resp, err := g.c.PullRequests.Merge(ctx, g.owner, g.name, number, message, &github.PullRequestOptions{
		CommitTitle: title, SHA: sha, MergeMethod: string(method), DontDefaultIfBlank: false,
	})
	if err != nil {
		ferr := g.fail(op, resp, err)
		var fe *Error
		if !errors.As(ferr, &fe) || Retryable(fe) || fe.Status == http.StatusUnauthorized || fe.Status == http.StatusForbidden {
			return nil, ferr
		}
		// 405 (not mergeable, already merged), 409 ("Head branch was modified"), 422:
		// what the request is now says which.
		return mergeRefused(ctx, g, number, sha, fe, fe.Status == http.StatusConflict)
	}
	return g.Get(ctx, number)
}

func (g *githubForge) Close(ctx context.Context, number int, comment string) error {
	p, resp, err := g.c.PullRequests.Get(ctx, g.owner, g.name, number)
	if err != nil {
		return g.fail(fmt.Sprintf("reading pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	if p.GetState() != "open" {
		return nil
	}
	if comment != "" {
		if err := g.Comment(ctx, number, comment); err != nil {
			return err
		}
	}
	_, resp, err = g.c.PullRequests.Edit(ctx, g.owner, g.name, number, &github.PullRequest{State: github.Ptr("closed")})
	if err != nil {
		return g.fail(fmt.Sprintf("closing pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	return nil
}

func (g *githubForge) Comment(ctx context.Context, number int, body string) error {
	_, resp, err := g.c.Issues.CreateComment(ctx, g.owner, g.name, number, &github.IssueComment{Body: &body})
	if err != nil {
		return g.fail(fmt.Sprintf("commenting on pull request #%d of %s", number, g.repo.Path), resp, err)
	}
	return nil
}

// FileCommitter is a forge that can commit through its API instead of a push: the
// GitHub client. The engine asserts a Forge to it when a stage asks for GitHub-signed
// ("Verified") commits.
type FileCommitter interface {
	CommitFiles(ctx context.Context, branch, parentSHA, message string, files map[string][]byte, createBranch, force bool) (sha string, err error)
}

var _ FileCommitter = (*githubForge)(nil)

// CommitFiles commits files (path → content, whole files) onto branch through GitHub's
// Git Data API instead of a push: blobs, a tree on parentSHA's tree, a commit without
// author or committer, then the branch moved to it (created at it when createBranch).
// Authenticated as a GitHub App installation, GitHub signs that commit itself and shows
// it "Verified" — signed commits on a protected branch without a key in kropipe.
//
// The branch moves only from parentSHA unless force: a branch that moved meanwhile is
// refused (ErrConflict, 422 "Update is not a fast forward"), like a push with lease.
// Files are written as regular files (mode 100644). It returns the new commit's sha.
func (g *githubForge) CommitFiles(ctx context.Context, branch, parentSHA, message string, files map[string][]byte, createBranch, force bool) (string, error) {
	what := fmt.Sprintf("committing to %s of %s through the API", branch, g.repo.Path)
	parent, resp, err := g.c.Git.GetCommit(ctx, g.owner, g.name, parentSHA)
	if err != nil {
		return "", g.fail(what+": reading the parent "+short(parentSHA), resp, err)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	entries := make([]*github.TreeEntry, 0, len(paths))
	for _, p := range paths {
		blob, resp, err := g.c.Git.CreateBlob(ctx, g.owner, g.name, github.Blob{
			Content:  github.Ptr(base64.StdEncoding.EncodeToString(files[p])),
			Encoding: github.Ptr("base64"),
		})
		if err != nil {
			return "", g.fail(what+": storing "+p, resp, err)
		}
		entries = append(entries, &github.TreeEntry{Path: github.Ptr(p), Mode: github.Ptr("100644"), Type: github.Ptr("blob"), SHA: blob.SHA})
	}
	tree, resp, err := g.c.Git.CreateTree(ctx, g.owner, g.name, parent.GetTree().GetSHA(), entries)
	if err != nil {
		return "", g.fail(what+": writing the tree", resp, err)
	}
	// No Author, no Committer: GitHub fills them in with the authenticated identity, and
	// signs the commit when that identity is a GitHub App.
	commit, resp, err := g.c.Git.CreateCommit(ctx, g.owner, g.name, github.Commit{
		Message: &message,
		Tree:    &github.Tree{SHA: tree.SHA},
		Parents: []*github.Commit{{SHA: &parentSHA}},
	}, nil)
	if err != nil {
		return "", g.fail(what+": creating the commit", resp, err)
	}
	sha := commit.GetSHA()
	if createBranch {
		_, resp, err = g.c.Git.CreateRef(ctx, g.owner, g.name, github.CreateRef{Ref: "refs/heads/" + branch, SHA: sha})
		if err != nil {
			return "", g.fail(fmt.Sprintf("%s: creating the branch at %s", what, short(sha)), resp, err)
		}
		return sha, nil
	}
	_, resp, err = g.c.Git.UpdateRef(ctx, g.owner, g.name, "heads/"+branch, github.UpdateRef{SHA: sha, Force: &force})
	if err != nil {
		return "", g.fail(fmt.Sprintf("%s: moving the branch from %s to %s", what, short(parentSHA), short(sha)), resp, err)
	}
	return sha, nil
}

// GitHubAppToken returns a function giving the installation's access token, minted from the
// app's private key through the API at apiURL ("" for github.com) and renewed before it expires
// (tokens live an hour): what Git pushes with as the password of x-access-token.
func GitHubAppToken(app GitHubApp, apiURL string, caBundle []byte) (func(ctx context.Context) (string, error), error) {
	hc, err := Config{CABundle: caBundle, Timeout: DefaultTimeout}.httpClient()
	if err != nil {
		return nil, err
	}
	itr, err := ghinstallation.New(hc.Transport, app.AppID, app.InstallationID, app.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("GitHub App %d installation %d: the private key does not parse (%w): put the app's PEM private key in the repository's credentials", app.AppID, app.InstallationID, err)
	}
	if apiURL != "" {
		itr.BaseURL = strings.TrimSuffix(apiURL, "/")
	}
	return func(ctx context.Context) (string, error) {
		tok, err := itr.Token(ctx)
		if err != nil {
			return "", fmt.Errorf("GitHub App %d installation %d: minting an installation token: %s", app.AppID, app.InstallationID, oneLine(err.Error()))
		}
		return tok, nil
	}, nil
}
