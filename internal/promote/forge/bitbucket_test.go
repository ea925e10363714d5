package forge

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The Bitbucket Cloud tests replay exchanges in the shape Bitbucket Cloud's API 2.0
// answers them (testdata/bitbucket/, origins in testdata/README.md), replayed in order
// by recordedAPI.

const (
	bbToken   = "ATCTT3xFfGN0Zk9vX2tyb3BpcGVfdGVzdA" // must never show in an error
	bbRepo    = "/2.0/repositories/kropipe/gitops"
	bbRepoURL = "https://bitbucket.org/kropipe/gitops.git"
	bbHead    = "e4b0c9f1a2d3b4c5d6e7f8091a2b3c4d5e6f7081" // pull request #7's source commit
	bbMerge   = "91c2d7e8f0ab1c2d3e4f5a6b7c8d9e0f1a2b3c4d"
)

func newBitbucketForTest(t *testing.T, username string, xs ...exchange) (Forge, *recordedAPI) {
	t.Helper()
	api := newRecordedAPI(t, xs...)
	f, err := New(bbRepoURL, Config{APIURL: api.srv.URL + "/2.0", Username: username, Token: bbToken})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind() != Bitbucket {
		t.Fatalf("kind %q, want bitbucket", f.Kind())
	}
	return f, api
}

// bbRead is Get's reading of pull request #7, which Bitbucket answers with pr: the pull
// request, then what bbResolved lists.
func bbRead(pr []byte, merged bool, statuses []byte) []exchange {
	return append([]exchange{{method: "GET", path: bbRepo + "/pullrequests/7", body: pr}}, bbResolved(merged, statuses)...)
}

// bbResolved is what kropipe reads once Bitbucket answered with pull request #7: the full
// hashes of its 12-digit commit names (the merge commit's when merged), then the builds
// of its source commit.
func bbResolved(merged bool, statuses []byte) []exchange {
	xs := []exchange{{method: "GET", path: bbRepo + "/commit/e4b0c9f1a2d3", file: "bitbucket/commit_head.json"}}
	if merged {
		xs = append(xs, exchange{method: "GET", path: bbRepo + "/commit/91c2d7e8f0ab", file: "bitbucket/commit_merge.json"})
	}
	return append(xs, exchange{method: "GET", path: bbRepo + "/commit/" + bbHead + "/statuses", body: statuses})
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
			xs := []exchange{{method: "GET", path: bbRepo + "/pullrequests", body: tt.list}}
			if tt.want != 0 {
				xs = append(xs, bbRead(recorded(t, "bitbucket/pullrequest_open.json"), false, recorded(t, "bitbucket/statuses.json"))...)
			}
			f, api := newBitbucketForTest(t, "", xs...)
			pr, err := f.Find(context.Background(), tt.head, tt.base)
			if err != nil {
				t.Fatal(err)
			}
			q := api.sent("GET", bbRepo+"/pullrequests").query
			wantQ := `source.branch.name="` + tt.head + `" AND destination.branch.name="` + tt.base + `"`
			if q.Get("state") != "OPEN" || q.Get("q") != wantQ {
				t.Errorf("query %v, want state=OPEN q=%s", q, wantQ)
			}
			checkFound(t, pr, tt.want)
		})
	}
}

func TestBitbucket_ReadsAPullRequestInEachState(t *testing.T) {
	tests := []struct {
		name   string
		answer []byte
		want   PullRequest
	}{
		{
			name: "open", answer: recorded(t, "bitbucket/pullrequest_open.json"),
			want: PullRequest{
				Number: 7, URL: "https://bitbucket.org/kropipe/gitops/pull-requests/7", State: Open,
				Title: "Promote image from 1.2.1 to 1.2.2", Head: "kropipe/prod-frontend", Base: "prod",
				HeadSHA: bbHead, Mergeable: ptrBool(true), Checks: ChecksPassed, Reviewers: []string{"alice"},
			},
		},
		{
			name: "merged", answer: recorded(t, "bitbucket/pullrequest_merged.json"),
			want: PullRequest{Number: 7, State: Merged, HeadSHA: bbHead, MergeCommit: bbMerge, MergedBy: "bkeller"},
		},
		{
			name: "declined", answer: recorded(t, "bitbucket/pullrequest_declined.json"),
			want: PullRequest{Number: 7, State: Closed, HeadSHA: bbHead, ClosedBy: "bkeller"},
		},
		{
			name: "superseded", answer: recordedWith(t, "bitbucket/pullrequest_declined.json", map[string]any{"state": "SUPERSEDED"}),
			want: PullRequest{Number: 7, State: Closed, ClosedBy: "bkeller"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newBitbucketForTest(t, "", bbRead(tt.answer, tt.want.State == Merged, recorded(t, "bitbucket/statuses.json"))...)
			pr, err := f.Get(context.Background(), 7)
			if err != nil {
				t.Fatal(err)
			}
			checkPullRequest(t, pr, tt.want)
			if tt.want.State != Open && pr.Mergeable != nil {
				t.Errorf("mergeable %s on a %s pull request", fmtBool(pr.Mergeable), pr.State)
			}
		})
	}
}

func TestBitbucket_ChecksAreTheSourceCommitsBuilds(t *testing.T) {
	tests := []struct {
		states        []string
		want          Checks
		wantMergeable *bool
	}{
		{states: []string{"SUCCESSFUL", "SUCCESSFUL"}, want: ChecksPassed, wantMergeable: ptrBool(true)},
		{states: []string{"SUCCESSFUL", "INPROGRESS"}, want: ChecksPending},
		{states: []string{"INPROGRESS", "FAILED"}, want: ChecksFailed, wantMergeable: ptrBool(false)},
		{states: []string{"SUCCESSFUL", "STOPPED"}, want: ChecksFailed, wantMergeable: ptrBool(false)},
		{states: nil, want: ChecksNone, wantMergeable: ptrBool(true)},
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
			f, _ := newBitbucketForTest(t, "", bbRead(recorded(t, "bitbucket/pullrequest_open.json"), false, statuses)...)
			pr, err := f.Get(context.Background(), 7)
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
	f, api := newBitbucketForTest(t, "", append([]exchange{{method: "POST", path: bbRepo + "/pullrequests", status: 201, file: "bitbucket/pullrequest_open.json"}},
		bbResolved(false, recorded(t, "bitbucket/statuses.json"))...)...)
	pr, err := f.Create(context.Background(), NewPullRequest{
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
	var body map[string]any
	if api.sentJSON("POST", bbRepo+"/pullrequests", &body); !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v\nwant %v", body, want)
	}
}

func TestBitbucket_CreateAnswers(t *testing.T) {
	t.Run("one open already", func(t *testing.T) {
		f, _ := newBitbucketForTest(t, "", append([]exchange{
			{method: "POST", path: bbRepo + "/pullrequests", status: 400, body: []byte(`{"type":"error","error":{"message":"A pull request from kropipe/prod-frontend to prod already exists."}}`)},
			{method: "GET", path: bbRepo + "/pullrequests", file: "bitbucket/pullrequests_open.json"},
		}, bbRead(recorded(t, "bitbucket/pullrequest_open.json"), false, recorded(t, "bitbucket/statuses.json"))...)...)
		pr, err := f.Create(context.Background(), NewPullRequest{Head: "kropipe/prod-frontend", Base: "prod", Title: "t"})
		if err != nil || pr.Number != 7 {
			t.Fatalf("got %+v, %v; want the open #7", pr, err)
		}
	})
	t.Run("no changes", func(t *testing.T) {
		f, _ := newBitbucketForTest(t, "", exchange{method: "POST", path: bbRepo + "/pullrequests", status: 400, file: "bitbucket/error_no_changes.json"})
		_, err := f.Create(context.Background(), NewPullRequest{Head: "kropipe/prod-frontend", Base: "prod", Title: "t"})
		checkForgeError(t, err, ErrConflict, false, "the change is on prod already", 0, bbToken)
	})
}

func TestBitbucket_UpdateSendsTheDestinationAndReviewersBack(t *testing.T) {
	f, api := newBitbucketForTest(t, "",
		exchange{method: "GET", path: bbRepo + "/pullrequests/7", file: "bitbucket/pullrequest_open.json"},
		exchange{method: "PUT", path: bbRepo + "/pullrequests/7", file: "bitbucket/pullrequest_open.json"},
	)
	if err := f.Update(context.Background(), 7, "Promote image from 1.2.1 to 1.2.3", "body"); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"title": "Promote image from 1.2.1 to 1.2.3", "description": "body",
		"destination": map[string]any{"branch": map[string]any{"name": "prod"}},
		"reviewers":   []any{map[string]any{"uuid": "{5b1e3c7d-2f4a-4b6c-9d8e-0a1b2c3d4e5f}", "account_id": "557058:b7e3f1c2-9a4d-4e5f-8a6b-7c8d9e0f1a2b"}},
	}
	var body map[string]any
	if api.sentJSON("PUT", bbRepo+"/pullrequests/7", &body); !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v\nwant %v", body, want)
	}
}

func TestBitbucket_Merge(t *testing.T) {
	open, merged := recorded(t, "bitbucket/pullrequest_open.json"), recorded(t, "bitbucket/pullrequest_merged.json")
	statuses := recorded(t, "bitbucket/statuses.json")
	// merging is the open pull request read, the merge Bitbucket answers with status and
	// answer, then the reads that follow.
	merging := func(status int, answer []byte, then ...exchange) []exchange {
		xs := append(bbRead(open, false, statuses), exchange{method: "POST", path: bbRepo + "/pullrequests/7/merge", status: status, body: answer})
		return append(xs, then...)
	}
	tests := []struct {
		name     string
		method   MergeMethod
		sha      string
		xs       []exchange
		wantErr  error
		wantSent map[string]any
	}{
		{
			name: "merge commit", method: MethodMerge, sha: bbHead, xs: merging(200, merged, bbResolved(true, statuses)...),
			wantSent: map[string]any{"type": "pullrequest_merge_parameters", "merge_strategy": "merge_commit", "close_source_branch": false,
				"message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod-frontend"},
		},
		{
			name: "squash with the promotion's message", method: MethodSquash, sha: bbHead, xs: merging(200, merged, bbResolved(true, statuses)...),
			wantSent: map[string]any{"type": "pullrequest_merge_parameters", "merge_strategy": "squash", "close_source_branch": false,
				"message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod-frontend"},
		},
		{
			name: "rebase is a fast-forward", method: MethodRebase, sha: bbHead, xs: merging(200, merged, bbResolved(true, statuses)...),
			wantSent: map[string]any{"type": "pullrequest_merge_parameters", "merge_strategy": "fast_forward", "close_source_branch": false},
		},
		{name: "merged already", method: MethodMerge, sha: bbHead, xs: bbRead(merged, true, statuses)},
		{
			name: "merge checks unmet", method: MethodMerge, sha: bbHead,
			xs:      merging(400, recorded(t, "bitbucket/error_merge_checks.json"), bbRead(open, false, statuses)...),
			wantErr: ErrNotMergeable,
		},
		{name: "head moved before the merge", method: MethodMerge, sha: "0123456789abcdef0123456789abcdef01234567", xs: bbRead(open, false, statuses), wantErr: ErrHeadMoved},
		{name: "declined", method: MethodMerge, sha: bbHead, xs: bbRead(recorded(t, "bitbucket/pullrequest_declined.json"), false, statuses), wantErr: ErrNotMergeable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, api := newBitbucketForTest(t, "", tt.xs...)
			pr, err := f.Merge(context.Background(), 7, tt.sha, tt.method, "Promote image from 1.2.1 to 1.2.2", "Stage prod-frontend")
			if tt.wantErr != nil {
				checkForgeError(t, err, tt.wantErr, false, "", 0, bbToken)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.State != Merged || pr.MergeCommit != bbMerge || pr.MergedBy != "bkeller" {
				t.Errorf("got %+v, want merged by bkeller at %s", pr, bbMerge)
			}
			if tt.wantSent != nil {
				var body map[string]any
				if api.sentJSON("POST", bbRepo+"/pullrequests/7/merge", &body); !reflect.DeepEqual(body, tt.wantSent) {
					t.Errorf("sent %v\nwant %v", body, tt.wantSent)
				}
			}
		})
	}
}

func TestBitbucket_CloseCommentsThenDeclines(t *testing.T) {
	// in this order: the read, the comment, the decline
	f, api := newBitbucketForTest(t, "",
		exchange{method: "GET", path: bbRepo + "/pullrequests/7", file: "bitbucket/pullrequest_open.json"},
		exchange{method: "POST", path: bbRepo + "/pullrequests/7/comments", status: 201, file: "bitbucket/comment.json"},
		exchange{method: "POST", path: bbRepo + "/pullrequests/7/decline", file: "bitbucket/pullrequest_declined.json"},
	)
	if err := f.Close(context.Background(), 7, "Superseded by 1.2.3."); err != nil {
		t.Fatal(err)
	}
	var comment map[string]any
	if api.sentJSON("POST", bbRepo+"/pullrequests/7/comments", &comment); !reflect.DeepEqual(comment, map[string]any{"content": map[string]any{"raw": "Superseded by 1.2.3."}}) {
		t.Errorf("comment %v", comment)
	}

	// closing a merged pull request: only the read
	f, _ = newBitbucketForTest(t, "", exchange{method: "GET", path: bbRepo + "/pullrequests/7", file: "bitbucket/pullrequest_merged.json"})
	if err := f.Close(context.Background(), 7, "Superseded by 1.2.3."); err != nil {
		t.Fatal(err)
	}
}

func TestBitbucket_AuthenticatesWithAnAccessTokenOrAnAppPassword(t *testing.T) {
	for _, user := range []string{"", "kropipe-bot"} {
		f, api := newBitbucketForTest(t, user, exchange{method: "POST", path: bbRepo + "/pullrequests/7/comments", status: 201, file: "bitbucket/comment.json"})
		if err := f.Comment(context.Background(), 7, "hi"); err != nil {
			t.Fatal(err)
		}
		h := api.sent("POST", bbRepo+"/pullrequests/7/comments").header
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
		header    http.Header
		want      error
		retryable bool
		says      string
		retryIn   time.Duration
	}{
		{name: "401", status: 401, body: recorded(t, "bitbucket/error_unauthorized.json"), want: ErrUnauthorized, says: "pullrequest:write"},
		{name: "403 credentials without pullrequest:write", status: 403, body: recorded(t, "bitbucket/error_scope.json"), want: ErrForbidden, says: "lack the pullrequest:write scope"},
		{name: "404", status: 404, body: recorded(t, "bitbucket/error_not_found.json"), want: ErrNotFound, says: "kropipe/gitops"},
		{name: "500", status: 500, body: []byte(`{"type":"error","error":{"message":"Something went wrong"}}`), retryable: true},
		{name: "503", status: 503, body: []byte(`<html>Service Unavailable</html>`), retryable: true},
		{name: "429 with Retry-After", status: 429, body: []byte(`Rate limit for this resource has been exceeded`), header: hdr("Retry-After", "12", "Content-Type", "text/plain"), retryable: true, retryIn: 12 * time.Second},
		// An answer echoing the credentials is scrubbed.
		{name: "echoed token", status: 400, body: []byte(`{"type":"error","error":{"message":"bad header Bearer ` + bbToken + `"}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newBitbucketForTest(t, "", exchange{method: "GET", path: bbRepo + "/pullrequests/7", status: tt.status, body: tt.body, header: tt.header})
			_, err := f.Get(context.Background(), 7)
			checkForgeError(t, err, tt.want, tt.retryable, tt.says, tt.retryIn, bbToken)
		})
	}
	t.Run("555 merge timed out", func(t *testing.T) {
		f, _ := newBitbucketForTest(t, "", append(bbRead(recorded(t, "bitbucket/pullrequest_open.json"), false, recorded(t, "bitbucket/statuses.json")),
			exchange{method: "POST", path: bbRepo + "/pullrequests/7/merge", status: 555, body: []byte(`{"type":"error","error":{"message":"Merge timed out"}}`)})...)
		_, err := f.Merge(context.Background(), 7, bbHead, MethodMerge, "t", "")
		checkForgeError(t, err, nil, true, "asks again", 0, bbToken)
	})
	t.Run("timeout", func(t *testing.T) {
		checkGetTimesOut(t, bbRepoURL, Config{APIURL: "/2.0", Token: bbToken}, bbRepo+"/pullrequests/7", 7)
	})
}
