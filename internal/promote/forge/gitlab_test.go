package forge

import (
	"context"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// The GitLab tests replay recorded exchanges: GitLab's answers as its client
// (gitlab.com/gitlab-org/api/client-go v2.64.0) keeps them in its testdata, copied to
// testdata/gitlab/ (see testdata/README.md), replayed in order by recordedAPI.

const (
	glToken   = "glpat-Xq7RkV2mN9sT4wY1zB3c" // must never show in an error
	glProject = "/api/v4/projects/platform%2Fteam%2Fgitops"
	glRepoURL = "https://gitlab.example.com/platform/team/gitops.git"
	// the head of the recorded open merge request !14656
	glHead = "8e0b45049b6253b8984cde9241830d2851168142"
)

func newGitLabForTest(t *testing.T, xs ...exchange) (Forge, *recordedAPI) {
	t.Helper()
	api := newRecordedAPI(t, xs...)
	f, err := New(glRepoURL, Config{APIURL: api.srv.URL + "/api/v4", Token: glToken})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind() != GitLab {
		t.Fatalf("kind %q, want gitlab", f.Kind())
	}
	return f, api
}

func TestGitLab_FindsTheOpenMergeRequestFromTheBranchIntoTheBase(t *testing.T) {
	const head, base = "use-structured-logging-for-db-load-balancer", "master"
	tests := []struct {
		name       string
		list       []byte
		head, base string
		want       int // 0: none
	}{
		{name: "none open", list: []byte(`[]`), head: "kropipe/prod", base: "prod"},
		{name: "one open", list: recorded(t, "gitlab/get_merge_requests.json"), head: head, base: base, want: 15442},
		{name: "one open into another base", list: recorded(t, "gitlab/get_merge_requests.json"), head: head, base: "production"},
		{
			name: "one open from a fork's branch of that name",
			// the recorded list's first merge request, its source project set to a fork's
			list: jsonOf(t, []any{rawJSON(recordedWithElement(t, "gitlab/get_merge_requests.json", 0, map[string]any{"source_project_id": 4242}))}),
			head: head, base: base,
		},
	}
	// the recorded merge request, its iid set to the listed one: read when found
	found := exchange{method: "GET", path: glProject + "/merge_requests/15442", body: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"iid": 15442})}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xs := []exchange{{method: "GET", path: glProject + "/merge_requests", body: tt.list}}
			if tt.want != 0 {
				xs = append(xs, found)
			}
			f, api := newGitLabForTest(t, xs...)

			pr, err := f.Find(context.Background(), tt.head, tt.base)
			if err != nil {
				t.Fatal(err)
			}
			q := api.sent("GET", glProject+"/merge_requests").query
			if q.Get("state") != "opened" || q.Get("source_branch") != tt.head || q.Get("target_branch") != tt.base {
				t.Errorf("query %v, want state=opened source_branch=%s target_branch=%s", q, tt.head, tt.base)
			}
			checkFound(t, pr, tt.want)
		})
	}
}

func TestGitLab_ReadsAMergeRequestInEachState(t *testing.T) {
	tests := []struct {
		name   string
		number int
		answer []byte
		want   PullRequest
	}{
		{
			name: "opened", number: 14656, answer: recorded(t, "gitlab/get_merge_request.json"),
			want: PullRequest{
				Number: 14656, URL: "https://gitlab.com/gitlab-org/gitlab-ee/merge_requests/14656", State: Open,
				Title: "Add deletion support for designs", Head: "delete-designs-v2", Base: "master",
				HeadSHA: glHead, Mergeable: ptrBool(true), Checks: ChecksPassed, Reviewers: []string{"tkuah"},
			},
		},
		{
			name: "merged", number: 1084, answer: recordedElement(t, "gitlab/list_group_merge_requests.json", 0),
			want: PullRequest{
				Number: 1084, State: Merged, Base: "main",
				HeadSHA:     "c824f1a9ee80ed354f21c2188d45992e972a1553",
				MergeCommit: "3c3516c724b60250a61d972f2f503cd0b84882a4", MergedBy: "fforster",
			},
		},
		{
			name: "merged by squash in a fast-forward project", number: 1084,
			// the recorded merged merge request without its merge commit
			answer: recordedWithElement(t, "gitlab/list_group_merge_requests.json", 0, map[string]any{"merge_commit_sha": nil}),
			want:   PullRequest{Number: 1084, State: Merged, MergeCommit: "c824f1a9ee80ed354f21c2188d45992e972a1553", MergedBy: "fforster"},
		},
		{
			name: "merged by fast-forward", number: 1084,
			// the recorded merged merge request with neither merge nor squash commit: its head landed
			answer: recordedWithElement(t, "gitlab/list_group_merge_requests.json", 0, map[string]any{"merge_commit_sha": nil, "squash_commit_sha": nil}),
			want:   PullRequest{Number: 1084, State: Merged, MergeCommit: "c824f1a9ee80ed354f21c2188d45992e972a1553"},
		},
		{
			name: "closed", number: 14656,
			// the recorded open merge request, closed by its assignee
			answer: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{
				"state": "closed", "detailed_merge_status": "not_open",
				"closed_by": map[string]any{"id": 2535118, "username": "tkuah", "name": "Thong Kuah"},
			}),
			want: PullRequest{Number: 14656, State: Closed, HeadSHA: glHead, ClosedBy: "tkuah"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newGitLabForTest(t, exchange{method: "GET", path: glProject + "/merge_requests/" + strconv.Itoa(tt.number), body: tt.answer})
			pr, err := f.Get(context.Background(), tt.number)
			if err != nil {
				t.Fatal(err)
			}
			checkPullRequest(t, pr, tt.want)
		})
	}
}

func TestGitLab_SumsUpTheHeadPipelineAndTheMergeStatus(t *testing.T) {
	checks := map[any]Checks{
		"success": ChecksPassed, "skipped": ChecksPassed,
		"failed": ChecksFailed, "canceled": ChecksFailed,
		"running": ChecksPending, "pending": ChecksPending, "created": ChecksPending,
		nil: ChecksNone, // no pipeline
	}
	for status, want := range checks {
		t.Run("pipeline "+orNone(status), func(t *testing.T) {
			pipeline := any(nil)
			if status != nil {
				pipeline = map[string]any{"id": 77056819, "sha": glHead, "status": status}
			}
			// the recorded merge request, its head pipeline in that status
			f, _ := newGitLabForTest(t, exchange{method: "GET", path: glProject + "/merge_requests/14656", body: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"head_pipeline": pipeline})})
			pr, err := f.Get(context.Background(), 14656)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Checks != want {
				t.Errorf("checks %q, want %q", pr.Checks, want)
			}
		})
	}
	mergeable := map[string]*bool{
		"mergeable": ptrBool(true),
		"checking":  nil, "unchecked": nil, "preparing": nil,
		"conflict": ptrBool(false), "need_rebase": ptrBool(false), "ci_must_pass": ptrBool(false), "not_approved": ptrBool(false),
	}
	for status, want := range mergeable {
		t.Run("detailed_merge_status "+status, func(t *testing.T) {
			// the recorded merge request with that detailed_merge_status
			f, _ := newGitLabForTest(t, exchange{method: "GET", path: glProject + "/merge_requests/14656", body: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"detailed_merge_status": status})})
			pr, err := f.Get(context.Background(), 14656)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pr.Mergeable, want) {
				t.Errorf("mergeable %v, want %v", fmtBool(pr.Mergeable), fmtBool(want))
			}
		})
	}
}

func TestGitLab_CreatesAMergeRequestWithLabelsAndReviewers(t *testing.T) {
	f, api := newGitLabForTest(t,
		exchange{method: "GET", path: "/api/v4/users", file: "gitlab/list_users.json"},
		exchange{method: "POST", path: glProject + "/merge_requests", status: 201, file: "gitlab/get_merge_request.json"},
	)

	pr, err := f.Create(context.Background(), NewPullRequest{
		Head: "kropipe/prod", Base: "prod",
		Title: "Promote image from 1.2.1 to 1.2.2", Body: "Stage prod: 1.2.1 → 1.2.2",
		Labels: []string{"promotion", "prod"}, Reviewers: []string{"example_user2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 14656 || pr.State != Open {
		t.Errorf("created %+v, want open !14656", pr)
	}
	if u := api.sent("GET", "/api/v4/users").query.Get("username"); u != "example_user2" {
		t.Errorf("looked up user %q, want example_user2", u)
	}
	var body map[string]any
	api.sentJSON("POST", glProject+"/merge_requests", &body)
	want := map[string]any{
		"title": "Promote image from 1.2.1 to 1.2.2", "description": "Stage prod: 1.2.1 → 1.2.2",
		"source_branch": "kropipe/prod", "target_branch": "prod",
		"labels": "promotion,prod", "reviewer_ids": []any{float64(2)},
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v\nwant %v", body, want)
	}
}

func TestGitLab_CreateReturnsTheMergeRequestOpenedBeforeACrash(t *testing.T) {
	f, _ := newGitLabForTest(t,
		// GitLab's answer to a second merge request from the same branch
		exchange{method: "POST", path: glProject + "/merge_requests", status: 409, body: []byte(`{"message":["Another open merge request already exists for this source branch: !14656"]}`)},
		exchange{method: "GET", path: glProject + "/merge_requests", body: jsonOf(t, []any{rawJSON(recorded(t, "gitlab/get_merge_request.json"))})},
		exchange{method: "GET", path: glProject + "/merge_requests/14656", file: "gitlab/get_merge_request.json"},
	)
	pr, err := f.Create(context.Background(), NewPullRequest{Head: "delete-designs-v2", Base: "master", Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 14656 {
		t.Errorf("got !%d, want the open !14656", pr.Number)
	}
}

func TestGitLab_UpdatesTitleAndDescription(t *testing.T) {
	f, api := newGitLabForTest(t, exchange{method: "PUT", path: glProject + "/merge_requests/14656", file: "gitlab/get_merge_request.json"})
	if err := f.Update(context.Background(), 14656, "Promote image from 1.2.1 to 1.2.3", "body"); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	api.sentJSON("PUT", glProject+"/merge_requests/14656", &body)
	if want := map[string]any{"title": "Promote image from 1.2.1 to 1.2.3", "description": "body"}; !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v, want %v", body, want)
	}
}

func TestGitLab_Merge(t *testing.T) {
	merged := recordedElement(t, "gitlab/list_group_merge_requests.json", 0)
	tests := []struct {
		name     string
		method   MergeMethod
		put      exchange
		get      []byte // the merge request read after a refusal
		wantErr  error
		wantSent map[string]any
	}{
		{
			name: "merged", method: MethodMerge, put: exchange{body: merged},
			wantSent: map[string]any{"sha": glHead, "squash": false, "merge_commit_message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod"},
		},
		{
			name: "squashed with the promotion's message", method: MethodSquash, put: exchange{body: merged},
			wantSent: map[string]any{"sha": glHead, "squash": true,
				"squash_commit_message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod",
				"merge_commit_message":  "Promote image from 1.2.1 to 1.2.2\n\nStage prod"},
		},
		{
			name: "merged already", method: MethodMerge,
			put: exchange{status: 405, body: []byte(`{"message":"405 Method Not Allowed"}`)}, get: merged,
		},
		{
			name: "not mergeable", method: MethodMerge,
			put: exchange{status: 422, body: []byte(`{"message":"Branch cannot be merged"}`)}, get: recorded(t, "gitlab/get_merge_request.json"),
			wantErr: ErrNotMergeable,
		},
		{
			name: "head moved", method: MethodMerge,
			put:     exchange{status: 409, body: []byte(`{"message":"SHA does not match HEAD of source branch: 2be7ddb704c7b6b83732fdd5b9f09d5a397b5f8f"}`)},
			wantErr: ErrHeadMoved,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.put.method, tt.put.path = "PUT", glProject+"/merge_requests/14656/merge"
			xs := []exchange{tt.put}
			if tt.get != nil {
				xs = append(xs, exchange{method: "GET", path: glProject + "/merge_requests/14656", body: tt.get})
			}
			f, api := newGitLabForTest(t, xs...)
			pr, err := f.Merge(context.Background(), 14656, glHead, tt.method, "Promote image from 1.2.1 to 1.2.2", "Stage prod")
			if tt.wantErr != nil {
				checkForgeError(t, err, tt.wantErr, false, "", 0, glToken)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.State != Merged || pr.MergeCommit != "3c3516c724b60250a61d972f2f503cd0b84882a4" {
				t.Errorf("got %+v, want merged at 3c3516c7", pr)
			}
			if tt.wantSent != nil {
				var body map[string]any
				if api.sentJSON("PUT", glProject+"/merge_requests/14656/merge", &body); !reflect.DeepEqual(body, tt.wantSent) {
					t.Errorf("sent %v\nwant %v", body, tt.wantSent)
				}
			}
		})
	}
}

func TestGitLab_RebaseIsRefusedByNameWithoutAskingGitLab(t *testing.T) {
	f, api := newGitLabForTest(t)
	_, err := f.Merge(context.Background(), 14656, glHead, MethodRebase, "t", "")
	checkForgeError(t, err, ErrMethodUnsupported, false, "fast-forward", 0, glToken) // how to get a linear history
	if sent := api.requests(); len(sent) != 0 {
		t.Errorf("sent %v, want nothing", sent)
	}
}

func TestGitLab_CloseCommentsFirst(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		// in this order: the read, the note, the close
		f, api := newGitLabForTest(t,
			exchange{method: "GET", path: glProject + "/merge_requests/14656", file: "gitlab/get_merge_request.json"},
			exchange{method: "POST", path: glProject + "/merge_requests/14656/notes", status: 201, body: []byte(`{"id":302,"body":"Superseded by 1.2.3.","noteable_type":"MergeRequest","noteable_iid":14656}`)},
			exchange{method: "PUT", path: glProject + "/merge_requests/14656", body: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"state": "closed"})},
		)
		if err := f.Close(context.Background(), 14656, "Superseded by 1.2.3."); err != nil {
			t.Fatal(err)
		}
		var note, edit map[string]any
		if api.sentJSON("POST", glProject+"/merge_requests/14656/notes", &note); note["body"] != "Superseded by 1.2.3." {
			t.Errorf("note %v", note)
		}
		if api.sentJSON("PUT", glProject+"/merge_requests/14656", &edit); edit["state_event"] != "close" {
			t.Errorf("sent %v, want state_event close", edit)
		}
	})
	t.Run("closed already", func(t *testing.T) {
		// only the read
		f, _ := newGitLabForTest(t, exchange{method: "GET", path: glProject + "/merge_requests/14656", body: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"state": "closed"})})
		if err := f.Close(context.Background(), 14656, "Superseded by 1.2.3."); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGitLab_ErrorsSayWhatToDoAndWhetherToRetry(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		header    http.Header
		want      error
		retryable bool
		says      string
		retryIn   time.Duration
	}{
		// GitLab echoing the token back is not something it does; kropipe scrubs it anyway.
		{name: "401", status: 401, body: `{"message":"401 Unauthorized ` + glToken + `"}`, want: ErrUnauthorized, says: "api scope"},
		{name: "403 token without the api scope", status: 403, body: `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}`, want: ErrForbidden, says: "lacks the api scope"},
		{name: "404", status: 404, body: `{"message":"404 Project Not Found"}`, want: ErrNotFound, says: "platform/team/gitops"},
		{name: "500", status: 500, body: `{"message":"500 Internal Server Error"}`, retryable: true},
		{name: "502", status: 502, body: `<html>502 Bad Gateway</html>`, retryable: true},
		{name: "429 with Retry-After", status: 429, body: `Retry later`, header: hdr("Retry-After", "30"), retryable: true, retryIn: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newGitLabForTest(t, exchange{method: "GET", path: glProject + "/merge_requests/14656", status: tt.status, body: []byte(tt.body), header: tt.header})
			_, err := f.Get(context.Background(), 14656)
			checkForgeError(t, err, tt.want, tt.retryable, tt.says, tt.retryIn, glToken)
		})
	}
	t.Run("timeout", func(t *testing.T) {
		checkGetTimesOut(t, glRepoURL, Config{APIURL: "/api/v4", Token: glToken}, glProject+"/merge_requests/14656", 14656)
	})
}

func TestGitLab_UnknownReviewerIsNamed(t *testing.T) {
	f, _ := newGitLabForTest(t, exchange{method: "GET", path: "/api/v4/users", body: []byte(`[]`)})
	_, err := f.Create(context.Background(), NewPullRequest{Head: "kropipe/prod", Base: "prod", Title: "t", Reviewers: []string{"nobody"}})
	checkForgeError(t, err, ErrNotFound, false, `"nobody"`, 0, glToken)
}

func TestGitLab_SelfManagedAPIIsOnTheRepositoryHostWithTheToken(t *testing.T) {
	api := newRecordedAPI(t, exchange{method: "GET", path: glProject + "/merge_requests/14656", file: "gitlab/get_merge_request.json"})
	// a self-managed GitLab on plain http, no API URL given: <scheme>://<host>/api/v4
	f, err := New(api.srv.URL+"/platform/team/gitops.git", Config{Kind: GitLab, Token: glToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background(), 14656); err != nil {
		t.Fatal(err)
	}
	if h := api.sent("GET", glProject+"/merge_requests/14656").header; h.Get("Private-Token") != glToken {
		t.Errorf("PRIVATE-TOKEN %q, want the project's token", h.Get("Private-Token"))
	}
}
