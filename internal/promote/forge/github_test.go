package forge

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The GitHub tests replay recorded exchanges of GitHub's REST API (testdata/github, see
// testdata/README.md) through go-github, as GitHub answers them.

const (
	githubRepoURL = "https://github.com/Codertocat/Hello-World.git"
	githubAPI     = "/repos/Codertocat/Hello-World"
	githubHead    = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
)

func newGitHubForTest(t *testing.T, xs ...exchange) (Forge, *recordedAPI) {
	t.Helper()
	api := newRecordedAPI(t, xs...)
	f, err := New(githubRepoURL, Config{APIURL: api.srv.URL, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	return f, api
}

func TestGitHub_Find_RecordedExchanges(t *testing.T) {
	tests := []struct {
		name string
		file string
		want int
	}{
		{"no open pull request", "github/pulls-list-empty.json", 0},
		{"the open one from the head into the base", "github/pulls-list-one.json", 2},
		{"one from the head into another base is not it", "github/pulls-list-other-base.json", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, api := newGitHubForTest(t, exchange{method: "GET", path: githubAPI + "/pulls", file: tt.file})
			pr, err := f.Find(context.Background(), "kropipe/prod", "master")
			if err != nil {
				t.Fatal(err)
			}
			checkFound(t, pr, tt.want)
			if pr != nil && (pr.HeadSHA != githubHead || pr.URL != "https://github.com/Codertocat/Hello-World/pull/2") {
				t.Fatalf("found %+v", pr)
			}
			if q := api.got[0].query; q.Get("state") != "open" || q.Get("head") != "Codertocat:kropipe/prod" || q.Get("base") != "master" {
				t.Errorf("listed with %v, want state=open head=Codertocat:kropipe/prod base=master", q)
			}
			if a := api.got[0].header.Get("Authorization"); a != "Bearer "+testToken {
				t.Errorf("Authorization %q", a)
			}
		})
	}
}

func TestGitHub_Create_SendsLabelsAndReviewers(t *testing.T) {
	f, api := newGitHubForTest(t,
		exchange{method: "POST", path: githubAPI + "/pulls", status: 201, file: "github/pull-2-open.json"},
		exchange{method: "POST", path: githubAPI + "/issues/2/labels", file: "github/labels.json"},
		exchange{method: "POST", path: githubAPI + "/pulls/2/requested_reviewers", status: 201, file: "github/pull-2-open.json"},
	)
	pr, err := f.Create(context.Background(), NewPullRequest{
		Head: "kropipe/prod", Base: "master", Title: "Promote image from 1.2.1 to 1.2.2", Body: "kropipe promotes prod.",
		Labels: []string{"promotion"}, Reviewers: []string{"octocat", "Codertocat/ops-team"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 2 {
		t.Errorf("created %+v", pr)
	}
	var create map[string]any
	api.sentJSON("POST", githubAPI+"/pulls", &create)
	if create["head"] != "kropipe/prod" || create["base"] != "master" || create["title"] != "Promote image from 1.2.1 to 1.2.2" || create["body"] != "kropipe promotes prod." {
		t.Errorf("create sent %v", create)
	}
	if got := string(api.sent("POST", githubAPI+"/issues/2/labels").body); !strings.Contains(got, `"promotion"`) {
		t.Errorf("labels sent %s", got)
	}
	var rev struct {
		Reviewers     []string `json:"reviewers"`
		TeamReviewers []string `json:"team_reviewers"`
	}
	api.sentJSON("POST", githubAPI+"/pulls/2/requested_reviewers", &rev)
	if len(rev.Reviewers) != 1 || rev.Reviewers[0] != "octocat" || len(rev.TeamReviewers) != 1 || rev.TeamReviewers[0] != "ops-team" {
		t.Errorf("review request sent %+v", rev)
	}
}

func TestGitHub_Create_WhenOneExistsReturnsIt(t *testing.T) {
	f, _ := newGitHubForTest(t,
		exchange{method: "POST", path: githubAPI + "/pulls", status: 422, file: "github/error-422-exists.json"},
		exchange{method: "GET", path: githubAPI + "/pulls", file: "github/pulls-list-one.json"},
	)
	pr, err := f.Create(context.Background(), NewPullRequest{Head: "kropipe/prod", Base: "master", Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 2 {
		t.Errorf("got #%d, want the existing #2", pr.Number)
	}
}

func TestGitHub_Update_EditsTitleAndBody(t *testing.T) {
	f, api := newGitHubForTest(t, exchange{method: "PATCH", path: githubAPI + "/pulls/2", file: "github/pull-2-open.json"})
	if err := f.Update(context.Background(), 2, "Promote image from 1.2.1 to 1.2.3", "newer"); err != nil {
		t.Fatal(err)
	}
	var edit map[string]any
	api.sentJSON("PATCH", githubAPI+"/pulls/2", &edit)
	if edit["title"] != "Promote image from 1.2.1 to 1.2.3" || edit["body"] != "newer" || edit["state"] != nil {
		t.Errorf("edit sent %v", edit)
	}
}

// checksOf is the exchanges Get makes for an open request's checks.
func checksOf(status, runs, required string) []exchange {
	xs := []exchange{
		{method: "GET", path: githubAPI + "/commits/" + githubHead + "/status", file: status},
		{method: "GET", path: githubAPI + "/commits/" + githubHead + "/check-runs", file: runs},
	}
	if required == "" {
		return append(xs, exchange{method: "GET", path: githubAPI + "/branches/master/protection/required_status_checks", status: 404, file: "github/error-404-branch-not-protected.json"})
	}
	return append(xs, exchange{method: "GET", path: githubAPI + "/branches/master/protection/required_status_checks", file: required})
}

func TestGitHub_Get_StateAndChecks(t *testing.T) {
	open := exchange{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-open.json"}
	tests := []struct {
		name string
		xs   []exchange
		want PullRequest
	}{
		{"open, no checks reported", append([]exchange{open}, checksOf("github/status-none.json", "github/check-runs-none.json", "")...),
			PullRequest{State: Open, Checks: ChecksNone}},
		{"open, status and check run passed", append([]exchange{open}, checksOf("github/status-success.json", "github/check-runs-passed.json", "")...),
			PullRequest{State: Open, Checks: ChecksPassed}},
		{"open, a check run still running", append([]exchange{open}, checksOf("github/status-success.json", "github/check-runs-pending.json", "")...),
			PullRequest{State: Open, Checks: ChecksPending}},
		{"open, a status failed", append([]exchange{open}, checksOf("github/status-failure.json", "github/check-runs-passed.json", "")...),
			PullRequest{State: Open, Checks: ChecksFailed}},
		{"open, only the required check counts: a failed unrequired check run does not", append([]exchange{open}, checksOf("github/status-success.json", "github/check-runs-failed.json", "github/required-checks.json")...),
			PullRequest{State: Open, Checks: ChecksPassed}},
		{"open, a required check not reported yet is pending", append([]exchange{open}, checksOf("github/status-none.json", "github/check-runs-passed.json", "github/required-checks.json")...),
			PullRequest{State: Open, Checks: ChecksPending}},
		{"merged: merge commit and who merged", []exchange{{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-merged.json"}},
			PullRequest{State: Merged, MergeCommit: "9a1f4b7c0e2d6f8a1b3c5d7e9f0a2b4c6d8e0f12", MergedBy: "octocat"}},
		{"closed unmerged: who closed it, from the issue", []exchange{{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-closed.json"}, {method: "GET", path: githubAPI + "/issues/2", file: "github/issue-2-closed.json"}},
			PullRequest{State: Closed, ClosedBy: "hubot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newGitHubForTest(t, tt.xs...)
			pr, err := f.Get(context.Background(), 2)
			if err != nil {
				t.Fatal(err)
			}
			if pr.State != tt.want.State || pr.Checks != tt.want.Checks || pr.MergeCommit != tt.want.MergeCommit || pr.MergedBy != tt.want.MergedBy || pr.ClosedBy != tt.want.ClosedBy {
				t.Errorf("got %+v, want %+v", pr, tt.want)
			}
		})
	}
}

func TestGitHub_Get_MergeableNullWhileComputing(t *testing.T) {
	f, _ := newGitHubForTest(t, append([]exchange{{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-open-computing.json"}},
		checksOf("github/status-none.json", "github/check-runs-none.json", "")...)...)
	pr, err := f.Get(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Mergeable != nil {
		t.Errorf("mergeable %v, want nil while GitHub computes it", *pr.Mergeable)
	}
}

func TestGitHub_Merge(t *testing.T) {
	merged := exchange{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-merged.json"}
	tests := []struct {
		name    string
		xs      []exchange
		wantErr error
	}{
		{"merges at the sha", []exchange{{method: "PUT", path: githubAPI + "/pulls/2/merge", file: "github/merge-ok.json"}, merged}, nil},
		{"already merged is returned as it is", []exchange{{method: "PUT", path: githubAPI + "/pulls/2/merge", status: 405, file: "github/error-405-not-mergeable.json"}, merged}, nil},
		{"not mergeable", append([]exchange{
			{method: "PUT", path: githubAPI + "/pulls/2/merge", status: 405, file: "github/error-405-not-mergeable.json"},
			{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-open.json"},
		}, checksOf("github/status-failure.json", "github/check-runs-none.json", "")...), ErrNotMergeable},
		{"head moved", []exchange{
			{method: "PUT", path: githubAPI + "/pulls/2/merge", status: 409, file: "github/error-409-head-modified.json"},
			{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-open-moved.json"},
			{method: "GET", path: githubAPI + "/commits/0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d/status", file: "github/status-none.json"},
			{method: "GET", path: githubAPI + "/commits/0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d/check-runs", file: "github/check-runs-none.json"},
			{method: "GET", path: githubAPI + "/branches/master/protection/required_status_checks", status: 404, file: "github/error-404-branch-not-protected.json"},
		}, ErrHeadMoved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, api := newGitHubForTest(t, tt.xs...)
			pr, err := f.Merge(context.Background(), 2, githubHead, MethodSquash, "Promote image from 1.2.1 to 1.2.2 (#2)", "body")
			if tt.wantErr != nil {
				checkForgeError(t, err, tt.wantErr, false, "", 0, testToken)
			} else if err != nil || pr.State != Merged || pr.MergeCommit != "9a1f4b7c0e2d6f8a1b3c5d7e9f0a2b4c6d8e0f12" {
				t.Fatalf("got %+v, %v", pr, err)
			}
			var sent map[string]any
			api.sentJSON("PUT", githubAPI+"/pulls/2/merge", &sent)
			if sent["sha"] != githubHead || sent["merge_method"] != "squash" || sent["commit_title"] != "Promote image from 1.2.1 to 1.2.2 (#2)" || sent["commit_message"] != "body" {
				t.Errorf("merge sent %v", sent)
			}
		})
	}
}

func TestGitHub_Close_CommentsFirst(t *testing.T) {
	f, api := newGitHubForTest(t,
		exchange{method: "GET", path: githubAPI + "/pulls/2", file: "github/pull-2-open.json"},
		exchange{method: "POST", path: githubAPI + "/issues/2/comments", status: 201, file: "github/comment.json"},
		exchange{method: "PATCH", path: githubAPI + "/pulls/2", file: "github/pull-2-closed.json"},
	)
	if err := f.Close(context.Background(), 2, "Superseded by 1.2.3."); err != nil {
		t.Fatal(err)
	}
	var edit map[string]any
	api.sentJSON("PATCH", githubAPI+"/pulls/2", &edit)
	if edit["state"] != "closed" {
		t.Errorf("edit sent %v", edit)
	}
	if !strings.Contains(string(api.sent("POST", githubAPI+"/issues/2/comments").body), "Superseded by 1.2.3.") {
		t.Error("comment not sent")
	}
}

func TestGitHub_Close_AlreadyClosedIsLeft(t *testing.T) {
	for _, file := range []string{"github/pull-2-merged.json", "github/pull-2-closed.json"} {
		t.Run(file, func(t *testing.T) {
			f, _ := newGitHubForTest(t, exchange{method: "GET", path: githubAPI + "/pulls/2", file: file})
			if err := f.Close(context.Background(), 2, "why"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGitHub_Errors(t *testing.T) {
	reset := strconv.FormatInt(time.Now().Add(90*time.Second).Unix(), 10)
	tests := []struct {
		name      string
		x         exchange
		is        error
		retryable bool
		wait      func(time.Duration) bool
		says      string
	}{
		{"401 says to renew the token", exchange{status: 401, file: "github/error-401.json"}, ErrUnauthorized, false, nil, "renew it"},
		{"403 without rights says which", exchange{status: 403, file: "github/error-403.json"}, ErrForbidden, false, nil, "write access"},
		{"403 primary rate limit waits for the reset", exchange{status: 403, file: "github/error-403-rate-limit.json", header: hdr("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", reset, "X-Ratelimit-Limit", "5000")}, nil, true,
			func(d time.Duration) bool { return d > 60*time.Second && d <= 90*time.Second }, "rate limit exceeded"},
		{"429 secondary rate limit with Retry-After", exchange{status: 429, file: "github/error-429-secondary.json", header: hdr("Retry-After", "30")}, nil, true,
			func(d time.Duration) bool { return d == 30*time.Second }, "secondary rate limit"},
		{"502 is retried", exchange{status: 502, body: []byte("<html>Bad Gateway</html>"), header: hdr("Content-Type", "text/html")}, nil, true, nil, "HTTP 502"},
		{"a body echoing the token is scrubbed", exchange{status: 403, body: []byte(`{"message":"token ` + testToken + ` lacks pull_requests:write"}`)}, ErrForbidden, false, nil, "[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.x.method, tt.x.path = "GET", githubAPI+"/pulls/2"
			f, _ := newGitHubForTest(t, tt.x)
			_, err := f.Get(context.Background(), 2)
			noSecret(t, err, testToken)
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want *Error", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v, want %v", err, tt.is)
			}
			if Retryable(err) != tt.retryable || (tt.wait != nil && !tt.wait(fe.RetryAfter)) {
				t.Errorf("retryable %v after %v", Retryable(err), fe.RetryAfter)
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "pull request #2 of Codertocat/Hello-World") {
				t.Errorf("err %q, want it to name the request and say %q", err, tt.says)
			}
		})
	}
}

func TestGitHub_Timeout_IsRetryable(t *testing.T) {
	checkGetTimesOut(t, githubRepoURL, Config{Token: testToken}, githubAPI+"/pulls/2", 2)
}

// A GitHub App installation: the client mints an installation token with the app's key
// and sends it, never the key.
func TestGitHub_App_MintsInstallationToken(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	api := newRecordedAPI(t,
		exchange{method: "POST", path: "/app/installations/42/access_tokens", status: 201, body: []byte(`{"token":"ghs_installation_token","expires_at":"` + expires + `","permissions":{"pull_requests":"write","contents":"write"},"repository_selection":"selected"}`)},
		exchange{method: "GET", path: githubAPI + "/pulls", file: "github/pulls-list-empty.json"},
	)
	f, err := New(githubRepoURL, Config{APIURL: api.srv.URL, GitHubApp: &GitHubApp{AppID: 7, InstallationID: 42, PrivateKey: pemKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Find(context.Background(), "kropipe/prod", "master"); err != nil {
		t.Fatal(err)
	}
	if a := api.got[0].header.Get("Authorization"); !strings.HasPrefix(a, "Bearer ") {
		t.Errorf("token request authorised with %q, want the app's JWT", a)
	}
	if a := api.got[1].header.Get("Authorization"); a != "token ghs_installation_token" {
		t.Errorf("API request authorised with %q, want the installation token", a)
	}
}

func TestGitHub_App_KeyThatDoesNotParse(t *testing.T) {
	_, err := New(githubRepoURL, Config{GitHubApp: &GitHubApp{AppID: 7, InstallationID: 42, PrivateKey: []byte("not a key")}})
	if err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("err %v, want one naming the private key", err)
	}
}

func TestGitHub_APIBase(t *testing.T) {
	tests := []struct{ repoURL, apiURL, want string }{
		{"https://github.com/o/r.git", "", "https://api.github.com/"},
		{"git@github.example.com:o/r.git", "", "https://github.example.com/api/v3/"},
		{"https://github.example.com/o/r", "https://ghe-proxy.example.com/api/v3", "https://ghe-proxy.example.com/api/v3/"},
	}
	for _, tt := range tests {
		f, err := New(tt.repoURL, Config{Kind: GitHub, APIURL: tt.apiURL})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.(*githubForge).c.BaseURL(); got != tt.want {
			t.Errorf("%s: API at %s, want %s", tt.repoURL, got, tt.want)
		}
	}
}
