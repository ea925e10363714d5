package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Gitea is a real Gitea forge (GiteaVersion, built from its module by e2e/tools/gitea) on
// 127.0.0.1: SQLite in Dir, no SSH, no mail, no update checks, no Actions, offline. Its API is
// at URL+"/api/v1", its repositories at URL+"/<owner>/<name>.git" over HTTP.
type Gitea struct {
	URL string // http://127.0.0.1:<port>, no trailing slash
	Dir string // app.ini, the SQLite database, repositories, log
	// Admin is the site administrator the tests act as by default: the account kropipe's
	// token belongs to in the pull-request tests.
	Admin *GiteaUser
	// StartTime is how long Gitea took from the first command to answering its API.
	StartTime time.Duration

	Process *Process
	bin     string
	config  string
}

// GiteaUser is a Gitea account and a client of Gitea's API acting as it (token auth).
type GiteaUser struct {
	Login, Password, Email string
	// Token is an access token of the account with every scope ("all").
	Token string

	g *Gitea
}

// giteaAdmin is the administrator's login: the bot account kropipe acts as.
const giteaAdmin = "kropipe"

// StartGitea builds Gitea into the e2e cache unless it is there, starts it in a folder of t's
// (t.TempDir) on a free loopback port with an administrator (Gitea.Admin, token with every
// scope), and stops it when t ends. Its log goes to t's log only when t failed. Skipped under
// -short.
func StartGitea(t testing.TB) *Gitea {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: -short: not starting Gitea")
	}
	e2eDir, _, err := FindE2EDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bin, took, err := BuildGitea(ctx, e2eDir, DefaultCacheDir(), testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	if took > 0 {
		t.Logf("e2e: built Gitea %s in %s", GiteaVersion, took.Round(time.Second))
	}
	dir := t.TempDir()
	g, err := RunGitea(ctx, bin, dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("e2e: Gitea's log (%s), last lines:\n%s", g.Process.LogPath, g.Process.Tail(60))
		}
	})
	t.Logf("e2e: Gitea %s up at %s in %s", GiteaVersion, g.URL, g.StartTime.Round(10*time.Millisecond))
	return g
}

// StartGitea starts a Gitea as one more component of the stack (StartGitea's setup, built
// into the stack's cache): its data in <Dir>/gitea, its log in <Dir>/logs/gitea.log with the
// others' (LogTails shows it after a failure), stopped by Stop. For a TestMain that shares
// one Gitea between tests; a single test can use the package function StartGitea instead.
// One per stack: a second call is an error.
func (s *Stack) StartGitea(ctx context.Context) (*Gitea, error) {
	dir := filepath.Join(s.Dir, "gitea")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gitea: %w", err)
	}
	bin, took, err := BuildGitea(ctx, s.e2eDir, s.cacheDir, s.log)
	if err != nil {
		return nil, err
	}
	if took > 0 {
		s.Binaries.BuildTimes["gitea/gitea"] = took
	}
	g, err := RunGitea(ctx, bin, dir, filepath.Join(s.Dir, "logs"))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, g.Process)
	s.mu.Unlock()
	fmt.Fprintf(s.log, "e2e: Gitea %s ready at %s in %s\n", GiteaVersion, g.URL, g.StartTime.Round(10*time.Millisecond))
	return g, nil
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// RunGitea starts the Gitea binary bin (its static root is the binary's folder, see
// BuildGitea) with its data in dir and its log in logDir/gitea.log: it writes app.ini,
// migrates the database, creates the administrator with an all-scope token, then runs
// `gitea web` and waits for its API. Stop ends it.
func RunGitea(ctx context.Context, bin, dir, logDir string) (*Gitea, error) {
	begin := time.Now()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	g := &Gitea{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir, bin: bin, config: filepath.Join(dir, "app.ini")}
	if err := os.WriteFile(g.config, []byte(giteaConfig(dir, filepath.Dir(bin), port)), 0o600); err != nil {
		return nil, fmt.Errorf("gitea: %w", err)
	}
	if _, err := g.command(ctx, "migrate"); err != nil {
		return nil, err
	}
	admin := &GiteaUser{Login: giteaAdmin, Password: randomHex(16), Email: giteaAdmin + "@kropipe.invalid", g: g}
	out, err := g.command(ctx, "admin", "user", "create", "--admin", "--username", admin.Login, "--password", admin.Password,
		"--email", admin.Email, "--must-change-password=false",
		"--access-token", "--access-token-name", "e2e", "--access-token-scopes", "all")
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`Access token was successfully created\.\.\. ([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		return nil, errors.New("gitea: `gitea admin user create` printed no access token")
	}
	admin.Token = m[1]
	g.Admin = admin
	g.Process, err = startProcess("gitea", logDir, dir, bin, []string{"web", "--config", g.config}, giteaEnv(dir))
	if err != nil {
		return nil, err
	}
	if err := g.Process.waitReady(ctx, 2*time.Minute, func(ctx context.Context) error {
		var v struct{ Version string }
		return g.Admin.api(ctx, http.MethodGet, "/version", nil, &v)
	}); err != nil {
		g.Stop()
		return nil, err
	}
	g.StartTime = time.Since(begin)
	return g, nil
}

// giteaConfig is app.ini: everything local to dir, nothing that reaches out.
func giteaConfig(dir, staticRoot string, port int) string {
	runUser := "root"
	if u, err := user.Current(); err == nil {
		runUser = u.Username
	}
	return fmt.Sprintf(`APP_NAME = kropipe e2e
RUN_MODE = prod
RUN_USER = %[4]s
WORK_PATH = %[1]s
; Gitea refuses to run as root; CI containers run the tests as root.
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]d
ROOT_URL = http://127.0.0.1:%[3]d/
LOCAL_ROOT_URL = http://127.0.0.1:%[3]d/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = %[1]s/data
STATIC_ROOT_PATH = %[2]s

[database]
DB_TYPE = sqlite3
PATH = %[1]s/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = %[1]s/repositories
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = %[5]s
INTERNAL_TOKEN = %[6]s
; Webhooks to the promoter on 127.0.0.1 (Gitea allows only external hosts by default).
ALLOWED_HOST_LIST = loopback

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[cron.update_checker]
ENABLED = false

[actions]
ENABLED = false

[oauth2]
ENABLED = false

[indexer]
ISSUE_INDEXER_TYPE = db

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[log]
MODE = console
LEVEL = info
ROOT_PATH = %[1]s/log
`, dir, staticRoot, port, runUser, randomHex(32), randomHex(32))
}

// giteaEnv keeps Gitea (and the git it runs) away from the user's home and configuration.
func giteaEnv(dir string) []string {
	return []string{"HOME=" + filepath.Join(dir, "home"), "GIT_CONFIG_NOSYSTEM=1", "GITEA_WORK_DIR=" + dir}
}

// command runs a one-shot gitea subcommand against the config and returns its output.
func (g *Gitea) command(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.bin, append(args, "--config", g.config)...)
	cmd.Dir = g.Dir
	cmd.Env = append(os.Environ(), giteaEnv(g.Dir)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gitea %s: %w\n%s", args[0], err, lastLines(string(out), 30))
	}
	return string(out), nil
}

// Stop ends Gitea. Safe to call more than once.
func (g *Gitea) Stop() {
	if g.Process != nil {
		g.Process.Stop()
	}
}

// RepoURL is the clone URL of repository "owner/name", as a forge shows it.
func (g *Gitea) RepoURL(repo string) string { return g.URL + "/" + repo + ".git" }

// CreateUser creates an ordinary account (a human reviewer, say) with a token of every scope.
func (g *Gitea) CreateUser(ctx context.Context, login string) (*GiteaUser, error) {
	u := &GiteaUser{Login: login, Password: randomHex(16), Email: login + "@kropipe.invalid", g: g}
	must := false
	if err := g.Admin.api(ctx, http.MethodPost, "/admin/users", map[string]any{
		"username": login, "password": u.Password, "email": u.Email, "must_change_password": &must,
	}, nil); err != nil {
		return nil, fmt.Errorf("gitea: create user %s: %w", login, err)
	}
	var tok struct {
		SHA1 string `json:"sha1"`
	}
	// Tokens are created with the account's password (basic auth), as Gitea requires.
	if err := u.request(ctx, http.MethodPost, "/users/"+login+"/tokens", map[string]any{"name": "e2e", "scopes": []string{"all"}}, &tok, true); err != nil {
		return nil, fmt.Errorf("gitea: token for %s: %w", login, err)
	}
	u.Token = tok.SHA1
	return u, nil
}

// CreateRepo creates repository "<u.Login>/<name>" with branch main holding files (path →
// content), pushed with git over HTTP, and returns "owner/name".
func (u *GiteaUser) CreateRepo(ctx context.Context, name string, files map[string]string) (string, error) {
	if err := u.api(ctx, http.MethodPost, "/user/repos", map[string]any{"name": name, "default_branch": "main", "private": false}, nil); err != nil {
		return "", fmt.Errorf("gitea: create repository %s: %w", name, err)
	}
	repo := u.Login + "/" + name
	if _, err := u.PushFiles(ctx, repo, "main", "", files, "Initial files"); err != nil {
		return "", err
	}
	return repo, nil
}

// AddCollaborator gives login access to repo ("read", "write" or "admin"): a reviewer needs
// write to merge.
func (u *GiteaUser) AddCollaborator(ctx context.Context, repo, login, permission string) error {
	if err := u.api(ctx, http.MethodPut, "/repos/"+repo+"/collaborators/"+login, map[string]any{"permission": permission}, nil); err != nil {
		return fmt.Errorf("gitea: add %s to %s: %w", login, repo, err)
	}
	return nil
}

// PushFiles commits files (path → content) on branch of repo with the git CLI over HTTP and
// pushes it, returning the new commit's SHA once Gitea's API shows the branch there (Gitea
// takes the push in asynchronously). The branch starts from `from` when it does not
// exist yet ("" for a repository's first commit); otherwise the commit goes on top of it.
func (u *GiteaUser) PushFiles(ctx context.Context, repo, branch, from string, files map[string]string, message string) (string, error) {
	dir, err := os.MkdirTemp("", "gitea-push-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	env := u.gitAuthEnv()
	git := func(args ...string) (string, error) { return runGitEnv(ctx, dir, env, args...) }
	if _, err := git("init", "--quiet", "--initial-branch="+branch); err != nil {
		return "", err
	}
	if _, err := git("remote", "add", "origin", u.g.RepoURL(repo)); err != nil {
		return "", err
	}
	switch heads, err := git("ls-remote", "--heads", "origin", branch, from); {
	case err != nil:
		return "", fmt.Errorf("gitea: push to %s: %w", repo, err)
	case strings.Contains(heads, "refs/heads/"+branch+"\n"):
		if _, err := git("fetch", "--quiet", "origin", branch); err != nil {
			return "", err
		}
		if _, err := git("reset", "--quiet", "--hard", "FETCH_HEAD"); err != nil {
			return "", err
		}
	case from != "":
		if _, err := git("fetch", "--quiet", "origin", from); err != nil {
			return "", err
		}
		if _, err := git("reset", "--quiet", "--hard", "FETCH_HEAD"); err != nil {
			return "", err
		}
	}
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := git("commit", "--quiet", "--allow-empty", "-m", message); err != nil {
		return "", err
	}
	if _, err := git("push", "--quiet", "origin", "HEAD:refs/heads/"+branch); err != nil {
		return "", fmt.Errorf("gitea: push %s to %s: %w", branch, repo, err)
	}
	out, err := git("rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	sha := strings.TrimSpace(out)
	// Gitea records pushed branches in its database from a queue, after the push returned;
	// until then its API answers 404 for the branch (opening a pull request from it, too).
	deadline := time.Now().Add(30 * time.Second)
	for {
		at, err := u.BranchSHA(ctx, repo, branch)
		if at == sha {
			return sha, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("gitea: pushed %s to %s of %s, but after 30 s its API says %q (%v)", sha, branch, repo, at, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// gitAuthEnv sends the token as the password of basic auth through git's environment-only
// configuration, so it never appears in a command line or an error.
func (u *GiteaUser) gitAuthEnv() []string {
	basic := base64.StdEncoding.EncodeToString([]byte(u.Login + ":" + u.Token))
	return []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic " + basic}
}

// BranchSHA is the commit branch of repo points at.
func (u *GiteaUser) BranchSHA(ctx context.Context, repo, branch string) (string, error) {
	var b struct {
		Commit struct {
			ID string `json:"id"`
		} `json:"commit"`
	}
	if err := u.api(ctx, http.MethodGet, "/repos/"+repo+"/branches/"+url.PathEscape(branch), nil, &b); err != nil {
		return "", fmt.Errorf("gitea: branch %s of %s: %w", branch, repo, err)
	}
	return b.Commit.ID, nil
}

// IsAncestor reports whether commit is on branch of repo (its head or an ancestor), by `git
// merge-base --is-ancestor` on a fresh fetch: a merge has landed when its commit is.
func (u *GiteaUser) IsAncestor(ctx context.Context, repo, commit, branch string) (bool, error) {
	dir, err := os.MkdirTemp("", "gitea-fetch-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	env := u.gitAuthEnv()
	if _, err := runGitEnv(ctx, dir, env, "init", "--quiet", "--bare"); err != nil {
		return false, err
	}
	if _, err := runGitEnv(ctx, dir, env, "fetch", "--quiet", u.g.RepoURL(repo), branch); err != nil {
		return false, fmt.Errorf("gitea: fetch %s of %s: %w", branch, repo, err)
	}
	if _, err := runGitEnv(ctx, dir, env, "cat-file", "-e", commit+"^{commit}"); err != nil {
		return false, nil // not fetched with the branch: not on it
	}
	_, err = runGitEnv(ctx, dir, env, "merge-base", "--is-ancestor", commit, "FETCH_HEAD")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	}
	return false, fmt.Errorf("gitea: is %s on %s of %s: %w", commit, branch, repo, err)
}

// SetCommitStatus sets the status context (a required check, say "ci") of sha in repo:
// "pending", "success", "error", "failure" or "warning".
func (u *GiteaUser) SetCommitStatus(ctx context.Context, repo, sha, context, state string) error {
	if err := u.api(ctx, http.MethodPost, "/repos/"+repo+"/statuses/"+sha, map[string]any{
		"context": context, "state": state, "description": "set by the e2e test",
	}, nil); err != nil {
		return fmt.Errorf("gitea: status %s=%s on %s in %s: %w", context, state, sha, repo, err)
	}
	return nil
}

// ProtectBranch protects branch of repo: no direct pushes but by the administrator, and when
// checks are given, merges need those status contexts to pass (Gitea's required checks).
func (u *GiteaUser) ProtectBranch(ctx context.Context, repo, branch string, checks ...string) error {
	body := map[string]any{"rule_name": branch, "enable_push": true, "enable_push_whitelist": true,
		"push_whitelist_usernames": []string{giteaAdmin}}
	if len(checks) > 0 {
		body["enable_status_check"] = true
		body["status_check_contexts"] = checks
	}
	if err := u.api(ctx, http.MethodPost, "/repos/"+repo+"/branch_protections", body, nil); err != nil {
		return fmt.Errorf("gitea: protect %s of %s: %w", branch, repo, err)
	}
	return nil
}

// CreateWebhook makes Gitea POST repo's events (Gitea's names: "pull_request", "push", ...)
// to url as JSON, signed with secret (X-Gitea-Signature, HMAC-SHA256 of the body): the
// promoter's webhook receiver. Loopback targets are allowed (ALLOWED_HOST_LIST).
func (u *GiteaUser) CreateWebhook(ctx context.Context, repo, url, secret string, events ...string) error {
	if err := u.api(ctx, http.MethodPost, "/repos/"+repo+"/hooks", map[string]any{
		"type": "gitea", "active": true, "events": events,
		"config": map[string]string{"url": url, "content_type": "json", "secret": secret},
	}, nil); err != nil {
		return fmt.Errorf("gitea: webhook of %s to %s: %w", repo, url, err)
	}
	return nil
}

// GiteaPullRequest is what Gitea's API says of a pull request (the fields tests check).
type GiteaPullRequest struct {
	Number         int        `json:"number"`
	Title          string     `json:"title"`
	Body           string     `json:"body"`
	State          string     `json:"state"` // "open" or "closed"
	Merged         bool       `json:"merged"`
	MergeCommitSHA string     `json:"merge_commit_sha"`
	Mergeable      bool       `json:"mergeable"`
	HTMLURL        string     `json:"html_url"`
	MergedBy       *giteaUser `json:"merged_by"`
	Head           struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	} `json:"head"`
	Base struct {
		Ref string `json:"ref"`
	} `json:"base"`
	Labels []struct {
		Name string `json:"name"`
	} `json:"labels"`
	RequestedReviewers []giteaUser `json:"requested_reviewers"`
}

type giteaUser struct {
	Login string `json:"login"`
}

// PullRequests lists repo's pull requests in state "open", "closed" or "all", newest first.
func (u *GiteaUser) PullRequests(ctx context.Context, repo, state string) ([]GiteaPullRequest, error) {
	var all []GiteaPullRequest
	for page := 1; ; page++ {
		var prs []GiteaPullRequest
		if err := u.api(ctx, http.MethodGet, fmt.Sprintf("/repos/%s/pulls?state=%s&limit=50&page=%d", repo, state, page), nil, &prs); err != nil {
			return nil, fmt.Errorf("gitea: pull requests of %s: %w", repo, err)
		}
		all = append(all, prs...)
		if len(prs) < 50 {
			return all, nil
		}
	}
}

// PullRequest reads pull request n of repo.
func (u *GiteaUser) PullRequest(ctx context.Context, repo string, n int) (*GiteaPullRequest, error) {
	var pr GiteaPullRequest
	if err := u.api(ctx, http.MethodGet, fmt.Sprintf("/repos/%s/pulls/%d", repo, n), nil, &pr); err != nil {
		return nil, fmt.Errorf("gitea: pull request %d of %s: %w", n, repo, err)
	}
	return &pr, nil
}

// CreatePullRequest opens a pull request of head into base.
func (u *GiteaUser) CreatePullRequest(ctx context.Context, repo, head, base, title, body string) (*GiteaPullRequest, error) {
	var pr GiteaPullRequest
	if err := u.api(ctx, http.MethodPost, "/repos/"+repo+"/pulls", map[string]any{"head": head, "base": base, "title": title, "body": body}, &pr); err != nil {
		return nil, fmt.Errorf("gitea: open a pull request of %s into %s in %s: %w", head, base, repo, err)
	}
	return &pr, nil
}

// MergePullRequest merges pull request n of repo as u (a human pressing the button): method
// is "merge", "squash", "rebase" or "rebase-merge"; message, when set, is the merge commit's
// (its first line the title). While Gitea is still checking the request it asks again, for
// up to a minute.
func (u *GiteaUser) MergePullRequest(ctx context.Context, repo string, n int, method, message string) error {
	body := map[string]any{"Do": method}
	if message != "" {
		body["MergeTitleField"], body["MergeMessageField"], _ = strings.Cut(message, "\n\n")
	}
	// Gitea re-checks every open pull request after a push to its base (another merge): until
	// it is done it answers 405 "Please try again later", and so would the button.
	deadline := time.Now().Add(time.Minute)
	for {
		err := u.api(ctx, http.MethodPost, fmt.Sprintf("/repos/%s/pulls/%d/merge", repo, n), body, nil)
		var ge *GiteaError
		if err == nil || !errors.As(err, &ge) || ge.Status != http.StatusMethodNotAllowed ||
			!strings.Contains(ge.Message, "try again later") || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("gitea: %s merge pull request %d of %s: %w", u.Login, n, repo, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gitea: %s merge pull request %d of %s: %w", u.Login, n, repo, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ClosePullRequest closes pull request n of repo unmerged as u, after commenting comment
// (when set).
func (u *GiteaUser) ClosePullRequest(ctx context.Context, repo string, n int, comment string) error {
	if comment != "" {
		if err := u.api(ctx, http.MethodPost, fmt.Sprintf("/repos/%s/issues/%d/comments", repo, n), map[string]any{"body": comment}, nil); err != nil {
			return fmt.Errorf("gitea: comment on pull request %d of %s: %w", n, repo, err)
		}
	}
	if err := u.api(ctx, http.MethodPatch, fmt.Sprintf("/repos/%s/pulls/%d", repo, n), map[string]any{"state": "closed"}, nil); err != nil {
		return fmt.Errorf("gitea: %s close pull request %d of %s: %w", u.Login, n, repo, err)
	}
	return nil
}

// Comments are the bodies of the comments on pull (or issue) n of repo, oldest first.
func (u *GiteaUser) Comments(ctx context.Context, repo string, n int) ([]string, error) {
	var cs []struct {
		Body string `json:"body"`
	}
	if err := u.api(ctx, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/comments", repo, n), nil, &cs); err != nil {
		return nil, fmt.Errorf("gitea: comments of %d in %s: %w", n, repo, err)
	}
	bodies := make([]string, len(cs))
	for i, c := range cs {
		bodies[i] = c.Body
	}
	return bodies, nil
}

// API calls Gitea's API as u: method on path (below /api/v1, with its query), in JSON (in
// nil: no body; out nil: answer dropped). An answer other than 2xx is an error carrying the
// status and Gitea's message. For what the helpers above do not cover.
func (u *GiteaUser) API(ctx context.Context, method, path string, in, out any) error {
	return u.api(ctx, method, path, in, out)
}

func (u *GiteaUser) api(ctx context.Context, method, path string, in, out any) error {
	return u.request(ctx, method, path, in, out, false)
}

// GiteaError is an answer of Gitea's API other than 2xx.
type GiteaError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *GiteaError) Error() string {
	return fmt.Sprintf("%s /api/v1%s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

func (u *GiteaUser) request(ctx context.Context, method, path string, in, out any, basic bool) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.g.URL+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if basic {
		req.SetBasicAuth(u.Login, u.Password)
	} else {
		req.Header.Set("Authorization", "token "+u.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var m struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &m)
		if m.Message == "" {
			m.Message = strings.TrimSpace(lastLines(string(b), 3))
		}
		return &GiteaError{Method: method, Path: path, Status: resp.StatusCode, Message: m.Message}
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s /api/v1%s: %w", method, path, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
