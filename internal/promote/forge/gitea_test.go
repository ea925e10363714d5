package forge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Gitea tests replay recorded exchanges of Gitea's API v1 (testdata/gitea, see
// testdata/README.md). Forgejo keeps the same API; the e2e suite runs the same client
// against a real Gitea.

const (
	giteaRepoURL = "https://git.example.com/foo/baz.git"
	giteaAPI     = "/api/v1/repos/foo/baz"
	giteaHead    = "291355f22ea6e0179f85ee5ace4af67ab61e0adb"
)

func newGiteaForTest(t *testing.T, xs ...exchange) (Forge, *recordedAPI) {
	t.Helper()
	api := newRecordedAPI(t, xs...)
	f, err := New(giteaRepoURL, Config{Kind: Gitea, APIURL: api.srv.URL + "/api/v1", Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	return f, api
}

func TestGitea_Find_RecordedExchanges(t *testing.T) {
	page2 := hdr("Link", `</api/v1/repos/foo/baz/pulls?limit=50&page=2&state=open>; rel="next"`)
	tests := []struct {
		name       string
		head, base string
		xs         []exchange
		want       int // the number found; 0 for none
	}{
		{"no open pull request", "kropipe/prod", "main", []exchange{{method: "GET", path: giteaAPI + "/pulls", file: "gitea/pulls-list-empty.json"}}, 0},
		{"the open one from the head into the base", "kropipe/prod", "main", []exchange{{method: "GET", path: giteaAPI + "/pulls", file: "gitea/pulls-list-open.json"}}, 7},
		{"one from the head into another base is not it", "kropipe/prod", "release", []exchange{{method: "GET", path: giteaAPI + "/pulls", file: "gitea/pulls-list-open.json"}}, 0},
		{"found on the second page", "kropipe/prod", "main", []exchange{
			{method: "GET", path: giteaAPI + "/pulls", file: "gitea/pulls-list-page1.json", header: page2},
			{method: "GET", path: giteaAPI + "/pulls", file: "gitea/pulls-list-page2.json"},
		}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, api := newGiteaForTest(t, tt.xs...)
			pr, err := f.Find(context.Background(), tt.head, tt.base)
			if err != nil {
				t.Fatal(err)
			}
			checkFound(t, pr, tt.want)
			if pr != nil && (pr.Head != tt.head || pr.Base != tt.base || pr.HeadSHA != giteaHead || pr.State != Open || pr.URL != "https://git.example.com/foo/baz/pulls/7") {
				t.Errorf("found %+v", pr)
			}
			if q := api.got[0].query; q.Get("state") != "open" {
				t.Errorf("listed with %q, want only open ones", q)
			}
			if len(api.got) > 1 && api.got[1].query.Get("page") != "2" {
				t.Errorf("second list asked %q, want page 2", api.got[1].query)
			}
			if a := api.got[0].header.Get("Authorization"); a != "token "+testToken {
				t.Errorf("Authorization %q", a)
			}
		})
	}
}

func TestGitea_Create_SendsLabelsAndReviewers(t *testing.T) {
	f, api := newGiteaForTest(t,
		exchange{method: "GET", path: giteaAPI + "/labels", file: "gitea/labels.json"},
		exchange{method: "POST", path: giteaAPI + "/labels", status: 201, file: "gitea/label-created.json"},
		exchange{method: "POST", path: giteaAPI + "/pulls", status: 201, file: "gitea/pull-7-open.json"},
		exchange{method: "POST", path: giteaAPI + "/pulls/7/requested_reviewers", status: 201, body: []byte("[]")},
	)
	pr, err := f.Create(context.Background(), NewPullRequest{
		Head: "kropipe/prod", Base: "main", Title: "Promote image from 1.2.1 to 1.2.2", Body: "kropipe promotes prod.",
		Labels: []string{"promotion", "prod"}, Reviewers: []string{"alice", "foo/ops"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 7 || pr.HeadSHA != giteaHead {
		t.Errorf("created %+v", pr)
	}
	var label struct{ Name string }
	api.sentJSON("POST", giteaAPI+"/labels", &label)
	if label.Name != "prod" {
		t.Errorf("created label %q, want only the missing prod", label.Name)
	}
	var create struct {
		Head, Base, Title, Body string
		Labels                  []int64
	}
	api.sentJSON("POST", giteaAPI+"/pulls", &create)
	if create.Head != "kropipe/prod" || create.Base != "main" || create.Title != "Promote image from 1.2.1 to 1.2.2" || !slices.Equal(create.Labels, []int64{1, 2}) {
		t.Errorf("create sent %+v", create)
	}
	var rev struct {
		Reviewers     []string `json:"reviewers"`
		TeamReviewers []string `json:"team_reviewers"`
	}
	api.sentJSON("POST", giteaAPI+"/pulls/7/requested_reviewers", &rev)
	if !slices.Equal(rev.Reviewers, []string{"alice"}) || !slices.Equal(rev.TeamReviewers, []string{"ops"}) {
		t.Errorf("review request sent %+v", rev)
	}
}

func TestGitea_Create_WhenOneExistsReturnsIt(t *testing.T) {
	f, _ := newGiteaForTest(t,
		exchange{method: "POST", path: giteaAPI + "/pulls", status: 409, file: "gitea/error-409-exists.json"},
		exchange{method: "GET", path: giteaAPI + "/pulls", file: "gitea/pulls-list-open.json"},
	)
	pr, err := f.Create(context.Background(), NewPullRequest{Head: "kropipe/prod", Base: "main", Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 7 {
		t.Errorf("got #%d, want the existing #7", pr.Number)
	}
}

func TestGitea_Update_EditsTitleAndBody(t *testing.T) {
	f, api := newGiteaForTest(t, exchange{method: "PATCH", path: giteaAPI + "/pulls/7", status: 201, file: "gitea/pull-7-open.json"})
	if err := f.Update(context.Background(), 7, "Promote image from 1.2.1 to 1.2.3", "newer"); err != nil {
		t.Fatal(err)
	}
	var edit map[string]any
	api.sentJSON("PATCH", giteaAPI+"/pulls/7", &edit)
	if edit["title"] != "Promote image from 1.2.1 to 1.2.3" || edit["body"] != "newer" || edit["state"] != nil {
		t.Errorf("edit sent %v", edit)
	}
}

func TestGitea_Get_StateAndChecks(t *testing.T) {
	statusPath := giteaAPI + "/commits/" + giteaHead + "/status"
	tests := []struct {
		name string
		xs   []exchange
		want PullRequest
	}{
		{"open, checks passed", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open.json"}, {method: "GET", path: statusPath, file: "gitea/status-success.json"}},
			PullRequest{State: Open, Checks: ChecksPassed}},
		{"open, checks pending", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open.json"}, {method: "GET", path: statusPath, file: "gitea/status-pending.json"}},
			PullRequest{State: Open, Checks: ChecksPending}},
		{"open, checks failed", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open.json"}, {method: "GET", path: statusPath, file: "gitea/status-failure.json"}},
			PullRequest{State: Open, Checks: ChecksFailed}},
		{"open, no checks", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open.json"}, {method: "GET", path: statusPath, file: "gitea/status-none.json"}},
			PullRequest{State: Open, Checks: ChecksNone}},
		{"merged: merge commit and who merged", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-merged.json"}},
			PullRequest{State: Merged, MergeCommit: "a2f7a8c6d1e3b5f7091a2b3c4d5e6f708192a3b4", MergedBy: "alice"}},
		{"closed unmerged: who closed it, from the timeline", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-closed.json"}, {method: "GET", path: giteaAPI + "/issues/7/timeline", file: "gitea/timeline-closed.json"}},
			PullRequest{State: Closed, ClosedBy: "bob"}},
		// Recorded from Gitea 1.27.3 (e2e): a labelled request's timeline holds a "label"
		// event whose label is an object, which the SDK's TimelineComment (Label []*Label)
		// cannot decode.
		{"closed unmerged after kropipe labelled it: who closed it", []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-closed.json"}, {method: "GET", path: giteaAPI + "/issues/7/timeline", file: "gitea/timeline-closed-labelled.json"}},
			PullRequest{State: Closed, ClosedBy: "alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newGiteaForTest(t, tt.xs...)
			pr, err := f.Get(context.Background(), 7)
			if err != nil {
				t.Fatal(err)
			}
			if pr.State != tt.want.State || pr.Checks != tt.want.Checks || pr.MergeCommit != tt.want.MergeCommit || pr.MergedBy != tt.want.MergedBy || pr.ClosedBy != tt.want.ClosedBy {
				t.Errorf("got %+v, want %+v", pr, tt.want)
			}
			if pr.State == Open && (pr.Mergeable == nil || !*pr.Mergeable) {
				t.Errorf("mergeable %v, want true", pr.Mergeable)
			}
		})
	}
}

func TestGitea_Merge(t *testing.T) {
	statusPath := giteaAPI + "/commits/" + giteaHead + "/status"
	movedStatus := giteaAPI + "/commits/d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0/status"
	tests := []struct {
		name    string
		xs      []exchange
		want    State
		wantErr error
	}{
		{"merges at the sha", []exchange{
			{method: "POST", path: giteaAPI + "/pulls/7/merge", status: 200},
			{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-merged.json"},
		}, Merged, nil},
		{"already merged is returned as it is", []exchange{
			{method: "POST", path: giteaAPI + "/pulls/7/merge", status: 405, body: []byte(`{"message":"","url":"https://git.example.com/api/swagger"}`)},
			{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-merged.json"},
		}, Merged, nil},
		{"not mergeable", []exchange{
			{method: "POST", path: giteaAPI + "/pulls/7/merge", status: 405, body: []byte(`{"message":"Please try again later","url":"https://git.example.com/api/swagger"}`)},
			{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open.json"},
			{method: "GET", path: statusPath, file: "gitea/status-failure.json"},
		}, "", ErrNotMergeable},
		{"head moved", []exchange{
			{method: "POST", path: giteaAPI + "/pulls/7/merge", status: 409, file: "gitea/error-409-head.json"},
			{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open-moved.json"},
			{method: "GET", path: movedStatus, file: "gitea/status-success.json"},
		}, "", ErrHeadMoved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, api := newGiteaForTest(t, tt.xs...)
			pr, err := f.Merge(context.Background(), 7, giteaHead, MethodSquash, "Promote image from 1.2.1 to 1.2.2", "body")
			if tt.wantErr != nil {
				checkForgeError(t, err, tt.wantErr, false, "", 0, testToken)
			} else if err != nil || pr.State != tt.want || pr.MergeCommit == "" {
				t.Fatalf("got %+v, %v", pr, err)
			}
			var sent map[string]any
			api.sentJSON("POST", giteaAPI+"/pulls/7/merge", &sent)
			if sent["head_commit_id"] != giteaHead || sent["Do"] != "squash" || sent["MergeTitleField"] != "Promote image from 1.2.1 to 1.2.2" {
				t.Errorf("merge sent %v", sent)
			}
		})
	}
}

func TestGitea_Close_CommentsFirst(t *testing.T) {
	f, api := newGiteaForTest(t,
		exchange{method: "GET", path: giteaAPI + "/pulls/7", file: "gitea/pull-7-open.json"},
		exchange{method: "GET", path: giteaAPI + "/commits/" + giteaHead + "/status", file: "gitea/status-success.json"},
		exchange{method: "POST", path: giteaAPI + "/issues/7/comments", status: 201, file: "gitea/comment.json"},
		exchange{method: "PATCH", path: giteaAPI + "/pulls/7", status: 201, file: "gitea/pull-7-closed.json"},
	)
	if err := f.Close(context.Background(), 7, "Superseded by 1.2.3."); err != nil {
		t.Fatal(err)
	}
	var edit map[string]any
	api.sentJSON("PATCH", giteaAPI+"/pulls/7", &edit)
	if edit["state"] != "closed" {
		t.Errorf("edit sent %v", edit)
	}
	if !strings.Contains(string(api.sent("POST", giteaAPI+"/issues/7/comments").body), "Superseded by 1.2.3.") {
		t.Error("comment not sent")
	}
}

func TestGitea_Close_AlreadyClosedIsLeft(t *testing.T) {
	for _, file := range []string{"gitea/pull-7-merged.json", "gitea/pull-7-closed.json"} {
		t.Run(file, func(t *testing.T) {
			xs := []exchange{{method: "GET", path: giteaAPI + "/pulls/7", file: file}}
			if strings.Contains(file, "closed") {
				xs = append(xs, exchange{method: "GET", path: giteaAPI + "/issues/7/timeline", file: "gitea/timeline-closed.json"})
			}
			f, _ := newGiteaForTest(t, xs...)
			if err := f.Close(context.Background(), 7, "why"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGitea_Errors(t *testing.T) {
	tests := []struct {
		name       string
		x          exchange
		is         error
		retryable  bool
		retryAfter time.Duration
		says       string
	}{
		{"401 says to renew the token", exchange{status: 401, file: "gitea/error-401.json"}, ErrUnauthorized, false, 0, "renew it"},
		{"403 without rights says which", exchange{status: 403, file: "gitea/error-403.json"}, ErrForbidden, false, 0, "write access"},
		{"a body echoing the token is scrubbed", exchange{status: 403, body: []byte(`{"message":"token ` + testToken + ` lacks write:repository"}`)}, ErrForbidden, false, 0, "[redacted]"},
		{"404", exchange{status: 404, body: []byte(`{"errors":null,"message":"not found","url":"https://git.example.com/api/swagger"}`)}, ErrNotFound, false, 0, "not found"},
		{"503 is retried", exchange{status: 503, body: []byte("<html>\n<body>upstream\n unavailable</body>\n</html>" + strings.Repeat(" padding", 100)), header: hdr("Content-Type", "text/html")}, nil, true, 0, "HTTP 503"},
		{"429 with Retry-After", exchange{status: 429, body: []byte(`{"message":"rate limited"}`), header: hdr("Retry-After", "7")}, nil, true, 7 * time.Second, "HTTP 429"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.x.method, tt.x.path = "GET", giteaAPI+"/pulls/7"
			f, _ := newGiteaForTest(t, tt.x)
			_, err := f.Get(context.Background(), 7)
			noSecret(t, err, testToken)
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want *Error", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v, want %v", err, tt.is)
			}
			if Retryable(err) != tt.retryable || fe.RetryAfter != tt.retryAfter {
				t.Errorf("retryable %v after %v, want %v after %v", Retryable(err), fe.RetryAfter, tt.retryable, tt.retryAfter)
			}
			if !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "pull request #7 of foo/baz") || strings.Contains(err.Error(), "\n") || len(err.Error()) > 500 {
				t.Errorf("err %q, want it to name the request and say %q", err, tt.says)
			}
		})
	}
}

func TestGitea_Timeout_IsRetryable(t *testing.T) {
	f := checkGetTimesOut(t, giteaRepoURL, Config{Kind: Forgejo, Token: testToken}, giteaAPI+"/pulls/7", 7)
	if f.Kind() != Forgejo {
		t.Errorf("kind %s", f.Kind())
	}
}

// The Gitea SDK must not cost a /api/v1/version request per client.
func TestGitea_New_AsksNothing(t *testing.T) {
	api := newRecordedAPI(t)
	if _, err := New(giteaRepoURL, Config{Kind: Gitea, APIURL: api.srv.URL}); err != nil {
		t.Fatal(err)
	}
	if got := api.requests(); len(got) != 0 {
		t.Errorf("New sent %v", got)
	}
}
