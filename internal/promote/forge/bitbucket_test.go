package forge_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// The Bitbucket Cloud tests replay exchanges in the shape Bitbucket Cloud's API 2.0
// answers them (testdata/bitbucket/, origins in testdata/README.md), served by a
// 127.0.0.1 server.

const (
	bbToken   = "ATCTT3xFfGN0Zk9vX2tyb3BpcGVfdGVzdA" // must never show in an error
	bbRepo    = "/2.0/repositories/kropipe/gitops"
	bbRepoURL = "https://bitbucket.org/kropipe/gitops.git"
	bbHead    = "e4b0c9f1a2d3b4c5d6e7f8091a2b3c4d5e6f7081" // pull request #7's source commit
	bbMerge   = "91c2d7e8f0ab1c2d3e4f5a6b7c8d9e0f1a2b3c4d"
)

func newBitbucketForge(t *testing.T, s *exchangeServer, username string) forge.Forge {
	t.Helper()
	f, err := forge.New(bbRepoURL, forge.Config{APIURL: s.URL + "/2.0", Username: username, Token: bbToken, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind() != forge.Bitbucket {
		t.Fatalf("kind %q, want bitbucket", f.Kind())
	}
	return f
}

// onPullRequest answers the reads Get makes: the pull request (unless nil), the full hashes of its
// 12-digit commit names, and the builds of its source commit.
func onPullRequest(t *testing.T, s *exchangeServer, pr, statuses []byte) {
	if pr != nil {
		s.on("GET", bbRepo+"/pullrequests/7", 200, pr)
	}
	s.on("GET", bbRepo+"/commit/e4b0c9f1a2d3", 200, recorded(t, "bitbucket/commit_head.json"))
	s.on("GET", bbRepo+"/commit/91c2d7e8f0ab", 200, recorded(t, "bitbucket/commit_merge.json"))
	s.on("GET", bbRepo+"/commit/"+bbHead+"/statuses", 200, statuses)
}

func TestBitbucket_FindsTheOpenPullRequestFromTheBranchIntoTheBase(t *testing.T) {
	tests := []struct {
		name       string
		list       []byte
		head, base string
		want       int
	}{
		{name: "none open", list: recorded(t, "bitbucket/pullrequests_empty.json"), head: "kropipe/prod-frontend", base: "prod"},
		{name: "one open", list: recorded(t, "bitbucket/pullrequests_open.json"), head: "kropipe/prod-frontend", base: "prod", want: 7},
		{name: "one open into another base", list: recorded(t, "bitbucket/pullrequests_open.json"), head: "kropipe/prod-frontend", base: "staging"},
		{
			name: "one open from a fork's branch of that name",
			list: recordedWith(t, "bitbucket/pullrequests_empty.json", map[string]any{"values": []any{
				rawJSON(recordedWith(t, "bitbucket/pullrequest_open.json", map[string]any{"source.repository.full_name": "mallory/gitops"})),
			}}),
			head: "kropipe/prod-frontend", base: "prod",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			s.on("GET", bbRepo+"/pullrequests", 200, tt.list)
			onPullRequest(t, s, recorded(t, "bitbucket/pullrequest_open.json"), recorded(t, "bitbucket/statuses.json"))
			pr, err := newBitbucketForge(t, s, "").Find(context.Background(), tt.head, tt.base)
			if err != nil {
				t.Fatal(err)
			}
			q := s.last("GET", bbRepo+"/pullrequests").Query
			wantQ := `source.branch.name="` + tt.head + `" AND destination.branch.name="` + tt.base + `"`
			if q.Get("state") != "OPEN" || q.Get("q") != wantQ {
				t.Errorf("query %v, want state=OPEN q=%s", q, wantQ)
			}
			switch {
			case tt.want == 0 && pr != nil:
				t.Errorf("found #%d, want none", pr.Number)
			case tt.want != 0 && (pr == nil || pr.Number != tt.want):
				t.Errorf("found %+v, want #%d", pr, tt.want)
			}
		})
	}
}

func TestBitbucket_ReadsAPullRequestInEachState(t *testing.T) {
	tests := []struct {
		name   string
		answer []byte
		want   forge.PullRequest
	}{
		{
			name: "open", answer: recorded(t, "bitbucket/pullrequest_open.json"),
			want: forge.PullRequest{
				Number: 7, URL: "https://bitbucket.org/kropipe/gitops/pull-requests/7", State: forge.Open,
				Title: "Promote image from 1.2.1 to 1.2.2", Head: "kropipe/prod-frontend", Base: "prod",
				HeadSHA: bbHead, Mergeable: ptrBool(true), Checks: forge.ChecksPassed, Reviewers: []string{"alice"},
			},
		},
		{
			name: "merged", answer: recorded(t, "bitbucket/pullrequest_merged.json"),
			want: forge.PullRequest{Number: 7, State: forge.Merged, HeadSHA: bbHead, MergeCommit: bbMerge, MergedBy: "bkeller"},
		},
		{
			name: "declined", answer: recorded(t, "bitbucket/pullrequest_declined.json"),
			want: forge.PullRequest{Number: 7, State: forge.Closed, HeadSHA: bbHead, ClosedBy: "bkeller"},
		},
		{
			name: "superseded", answer: recordedWith(t, "bitbucket/pullrequest_declined.json", map[string]any{"state": "SUPERSEDED"}),
			want: forge.PullRequest{Number: 7, State: forge.Closed, ClosedBy: "bkeller"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			onPullRequest(t, s, tt.answer, recorded(t, "bitbucket/statuses.json"))
			pr, err := newBitbucketForge(t, s, "").Get(context.Background(), 7)
			if err != nil {
				t.Fatal(err)
			}
			checkPullRequest(t, pr, tt.want)
			if tt.want.State != forge.Open && pr.Mergeable != nil {
				t.Errorf("mergeable %s on a %s pull request", fmtBool(pr.Mergeable), pr.State)
			}
		})
	}
}

func TestBitbucket_ChecksAreTheSourceCommitsBuilds(t *testing.T) {
	tests := []struct {
		states        []string
		want          forge.Checks
		wantMergeable *bool
	}{
		{states: []string{"SUCCESSFUL", "SUCCESSFUL"}, want: forge.ChecksPassed, wantMergeable: ptrBool(true)},
		{states: []string{"SUCCESSFUL", "INPROGRESS"}, want: forge.ChecksPending},
		{states: []string{"INPROGRESS", "FAILED"}, want: forge.ChecksFailed, wantMergeable: ptrBool(false)},
		{states: []string{"SUCCESSFUL", "STOPPED"}, want: forge.ChecksFailed, wantMergeable: ptrBool(false)},
		{states: nil, want: forge.ChecksNone, wantMergeable: ptrBool(true)},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.states, ",")+"→"+string(tt.want), func(t *testing.T) {
			// the recorded builds, in these states
			statuses := recorded(t, "bitbucket/statuses_empty.json")
			if tt.states != nil {
				statuses = recordedWith(t, "bitbucket/statuses.json", map[string]any{"values": []any{
					rawJSON(recordedWithElementOf(t, "bitbucket/statuses.json", "values", 0, map[string]any{"state": tt.states[0]})),
					rawJSON(recordedWithElementOf(t, "bitbucket/statuses.json", "values", 1, map[string]any{"state": tt.states[1]})),
				}})
			}
			s := newExchangeServer(t)
			onPullRequest(t, s, recorded(t, "bitbucket/pullrequest_open.json"), statuses)
			pr, err := newBitbucketForge(t, s, "").Get(context.Background(), 7)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Checks != tt.want || !reflect.DeepEqual(pr.Mergeable, tt.wantMergeable) {
				t.Errorf("checks %q mergeable %s, want %q %s", pr.Checks, fmtBool(pr.Mergeable), tt.want, fmtBool(tt.wantMergeable))
			}
		})
	}
}

func TestBitbucket_CreatesAPullRequestWithReviewers(t *testing.T) {
	s := newExchangeServer(t)
	s.on("POST", bbRepo+"/pullrequests", 201, recorded(t, "bitbucket/pullrequest_open.json"))
	onPullRequest(t, s, nil, recorded(t, "bitbucket/statuses.json"))
	pr, err := newBitbucketForge(t, s, "").Create(context.Background(), forge.NewPullRequest{
		Head: "kropipe/prod-frontend", Base: "prod", Title: "Promote image from 1.2.1 to 1.2.2", Body: "Stage prod-frontend",
		Labels:    []string{"promotion"},
		Reviewers: []string{"{5b1e3c7d-2f4a-4b6c-9d8e-0a1b2c3d4e5f}", "5f3d2c1b0a9e8d7c6b5a4f3e"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 7 || pr.HeadSHA != bbHead {
		t.Errorf("created %+v, want #7 at %s", pr, bbHead)
	}
	want := map[string]any{
		"title": "Promote image from 1.2.1 to 1.2.2", "description": "Stage prod-frontend",
		"source":              map[string]any{"branch": map[string]any{"name": "kropipe/prod-frontend"}},
		"destination":         map[string]any{"branch": map[string]any{"name": "prod"}},
		"close_source_branch": false,
		"reviewers":           []any{map[string]any{"uuid": "{5b1e3c7d-2f4a-4b6c-9d8e-0a1b2c3d4e5f}"}, map[string]any{"account_id": "5f3d2c1b0a9e8d7c6b5a4f3e"}},
	}
	if body := s.last("POST", bbRepo+"/pullrequests").Body; !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v\nwant %v", body, want)
	}
}

func TestBitbucket_CreateAnswers(t *testing.T) {
	t.Run("one open already", func(t *testing.T) {
		s := newExchangeServer(t)
		s.on("POST", bbRepo+"/pullrequests", 400, []byte(`{"type":"error","error":{"message":"A pull request from kropipe/prod-frontend to prod already exists."}}`))
		s.on("GET", bbRepo+"/pullrequests", 200, recorded(t, "bitbucket/pullrequests_open.json"))
		onPullRequest(t, s, recorded(t, "bitbucket/pullrequest_open.json"), recorded(t, "bitbucket/statuses.json"))
		pr, err := newBitbucketForge(t, s, "").Create(context.Background(), forge.NewPullRequest{Head: "kropipe/prod-frontend", Base: "prod", Title: "t"})
		if err != nil || pr.Number != 7 {
			t.Fatalf("got %+v, %v; want the open #7", pr, err)
		}
	})
	t.Run("no changes", func(t *testing.T) {
		s := newExchangeServer(t)
		s.on("POST", bbRepo+"/pullrequests", 400, recorded(t, "bitbucket/error_no_changes.json"))
		_, err := newBitbucketForge(t, s, "").Create(context.Background(), forge.NewPullRequest{Head: "kropipe/prod-frontend", Base: "prod", Title: "t"})
		checkForgeError(t, err, forge.ErrConflict, false, "the change is on prod already", 0, bbToken)
	})
}

func TestBitbucket_UpdateSendsTheDestinationAndReviewersBack(t *testing.T) {
	s := newExchangeServer(t)
	s.on("GET", bbRepo+"/pullrequests/7", 200, recorded(t, "bitbucket/pullrequest_open.json"))
	s.on("PUT", bbRepo+"/pullrequests/7", 200, recorded(t, "bitbucket/pullrequest_open.json"))
	if err := newBitbucketForge(t, s, "").Update(context.Background(), 7, "Promote image from 1.2.1 to 1.2.3", "body"); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"title": "Promote image from 1.2.1 to 1.2.3", "description": "body",
		"destination": map[string]any{"branch": map[string]any{"name": "prod"}},
		"reviewers":   []any{map[string]any{"uuid": "{5b1e3c7d-2f4a-4b6c-9d8e-0a1b2c3d4e5f}", "account_id": "557058:b7e3f1c2-9a4d-4e5f-8a6b-7c8d9e0f1a2b"}},
	}
	if body := s.last("PUT", bbRepo+"/pullrequests/7").Body; !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v\nwant %v", body, want)
	}
}

func TestBitbucket_Merge(t *testing.T) {
	open, merged := recorded(t, "bitbucket/pullrequest_open.json"), recorded(t, "bitbucket/pullrequest_merged.json")
	tests := []struct {
		name     string
		method   forge.MergeMethod
		sha      string
		reads    [][]byte // the pull request, read before the merge and after a refusal
		merge    *exchangeAnswer
		wantErr  error
		wantSent map[string]any
	}{
		{
			name: "merge commit", method: forge.MethodMerge, sha: bbHead, reads: [][]byte{open}, merge: &exchangeAnswer{status: 200, body: merged},
			wantSent: map[string]any{"type": "pullrequest_merge_parameters", "merge_strategy": "merge_commit", "close_source_branch": false,
				"message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod-frontend"},
		},
		{
			name: "squash with the promotion's message", method: forge.MethodSquash, sha: bbHead, reads: [][]byte{open}, merge: &exchangeAnswer{status: 200, body: merged},
			wantSent: map[string]any{"type": "pullrequest_merge_parameters", "merge_strategy": "squash", "close_source_branch": false,
				"message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod-frontend"},
		},
		{
			name: "rebase is a fast-forward", method: forge.MethodRebase, sha: bbHead, reads: [][]byte{open}, merge: &exchangeAnswer{status: 200, body: merged},
			wantSent: map[string]any{"type": "pullrequest_merge_parameters", "merge_strategy": "fast_forward", "close_source_branch": false},
		},
		{name: "merged already", method: forge.MethodMerge, sha: bbHead, reads: [][]byte{merged}},
		{
			name: "merge checks unmet", method: forge.MethodMerge, sha: bbHead, reads: [][]byte{open, open},
			merge: &exchangeAnswer{status: 400, body: recorded(t, "bitbucket/error_merge_checks.json")}, wantErr: forge.ErrNotMergeable,
		},
		{name: "head moved before the merge", method: forge.MethodMerge, sha: "0123456789abcdef0123456789abcdef01234567", reads: [][]byte{open}, wantErr: forge.ErrHeadMoved},
		{name: "declined", method: forge.MethodMerge, sha: bbHead, reads: [][]byte{recorded(t, "bitbucket/pullrequest_declined.json")}, wantErr: forge.ErrNotMergeable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			for _, r := range tt.reads {
				s.on("GET", bbRepo+"/pullrequests/7", 200, r)
			}
			onPullRequest(t, s, nil, recorded(t, "bitbucket/statuses.json"))
			if tt.merge != nil {
				s.on("POST", bbRepo+"/pullrequests/7/merge", tt.merge.status, tt.merge.body)
			}
			pr, err := newBitbucketForge(t, s, "").Merge(context.Background(), 7, tt.sha, tt.method, "Promote image from 1.2.1 to 1.2.2", "Stage prod-frontend")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || forge.Retryable(err) {
					t.Fatalf("err %v, want %v, not retryable", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.State != forge.Merged || pr.MergeCommit != bbMerge || pr.MergedBy != "bkeller" {
				t.Errorf("got %+v, want merged by bkeller at %s", pr, bbMerge)
			}
			if tt.wantSent != nil {
				if body := s.last("POST", bbRepo+"/pullrequests/7/merge").Body; !reflect.DeepEqual(body, tt.wantSent) {
					t.Errorf("sent %v\nwant %v", body, tt.wantSent)
				}
			}
		})
	}
}

func TestBitbucket_CloseCommentsThenDeclines(t *testing.T) {
	s := newExchangeServer(t)
	s.on("GET", bbRepo+"/pullrequests/7", 200, recorded(t, "bitbucket/pullrequest_open.json"))
	s.on("POST", bbRepo+"/pullrequests/7/comments", 201, recorded(t, "bitbucket/comment.json"))
	s.on("POST", bbRepo+"/pullrequests/7/decline", 200, recorded(t, "bitbucket/pullrequest_declined.json"))
	if err := newBitbucketForge(t, s, "").Close(context.Background(), 7, "Superseded by 1.2.3."); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET " + bbRepo + "/pullrequests/7", "POST " + bbRepo + "/pullrequests/7/comments", "POST " + bbRepo + "/pullrequests/7/decline"}
	if got := s.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("sent %v\nwant %v", got, want)
	}
	if b := s.last("POST", bbRepo+"/pullrequests/7/comments").Body; !reflect.DeepEqual(b, map[string]any{"content": map[string]any{"raw": "Superseded by 1.2.3."}}) {
		t.Errorf("comment %v", b)
	}

	s = newExchangeServer(t)
	s.on("GET", bbRepo+"/pullrequests/7", 200, recorded(t, "bitbucket/pullrequest_merged.json"))
	if err := newBitbucketForge(t, s, "").Close(context.Background(), 7, "Superseded by 1.2.3."); err != nil {
		t.Fatal(err)
	}
	if got := s.requests(); len(got) != 1 {
		t.Errorf("closing a merged pull request sent %v, want only the read", got)
	}
}

func TestBitbucket_AuthenticatesWithAnAccessTokenOrAnAppPassword(t *testing.T) {
	for _, user := range []string{"", "kropipe-bot"} {
		s := newExchangeServer(t)
		s.on("POST", bbRepo+"/pullrequests/7/comments", 201, recorded(t, "bitbucket/comment.json"))
		if err := newBitbucketForge(t, s, user).Comment(context.Background(), 7, "hi"); err != nil {
			t.Fatal(err)
		}
		h := s.last("POST", bbRepo+"/pullrequests/7/comments").Header
		r := &http.Request{Header: h}
		u, p, basic := r.BasicAuth()
		switch {
		case user == "" && h.Get("Authorization") != "Bearer "+bbToken:
			t.Errorf("access token: Authorization %q, want Bearer", h.Get("Authorization"))
		case user != "" && (!basic || u != user || p != bbToken):
			t.Errorf("app password: basic %v %q, want %q and the password", basic, u, user)
		}
	}
}

func TestBitbucket_ErrorsSayWhatToDoAndWhetherToRetry(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      []byte
		header    []string
		want      error
		retryable bool
		says      string
		retryIn   time.Duration
	}{
		{name: "401", status: 401, body: recorded(t, "bitbucket/error_unauthorized.json"), want: forge.ErrUnauthorized, says: "pullrequest:write"},
		{name: "403 credentials without pullrequest:write", status: 403, body: recorded(t, "bitbucket/error_scope.json"), want: forge.ErrForbidden, says: "lack the pullrequest:write scope"},
		{name: "404", status: 404, body: recorded(t, "bitbucket/error_not_found.json"), want: forge.ErrNotFound, says: "kropipe/gitops"},
		{name: "500", status: 500, body: []byte(`{"type":"error","error":{"message":"Something went wrong"}}`), retryable: true},
		{name: "503", status: 503, body: []byte(`<html>Service Unavailable</html>`), retryable: true},
		{name: "429 with Retry-After", status: 429, body: []byte(`Rate limit for this resource has been exceeded`), header: []string{"Retry-After", "12", "Content-Type", "text/plain"}, retryable: true, retryIn: 12 * time.Second},
		// An answer echoing the credentials is scrubbed.
		{name: "echoed token", status: 400, body: []byte(`{"type":"error","error":{"message":"bad header Bearer ` + bbToken + `"}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			s.on("GET", bbRepo+"/pullrequests/7", tt.status, tt.body, tt.header...)
			_, err := newBitbucketForge(t, s, "").Get(context.Background(), 7)
			checkForgeError(t, err, tt.want, tt.retryable, tt.says, tt.retryIn, bbToken)
		})
	}
	t.Run("555 merge timed out", func(t *testing.T) {
		s := newExchangeServer(t)
		onPullRequest(t, s, recorded(t, "bitbucket/pullrequest_open.json"), recorded(t, "bitbucket/statuses.json"))
		s.on("POST", bbRepo+"/pullrequests/7/merge", 555, []byte(`{"type":"error","error":{"message":"Merge timed out"}}`))
		_, err := newBitbucketForge(t, s, "").Merge(context.Background(), 7, bbHead, forge.MethodMerge, "t", "")
		checkForgeError(t, err, nil, true, "asks again", 0, bbToken)
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		hung := newHungServer(t, release)
		f, err := forge.New(bbRepoURL, forge.Config{APIURL: hung + "/2.0", Token: bbToken, HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Get(context.Background(), 7)
		checkForgeError(t, err, nil, true, "", 0, bbToken)
	})
}
