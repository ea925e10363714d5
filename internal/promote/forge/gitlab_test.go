package forge_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// The GitLab tests replay recorded exchanges: GitLab's answers as its client
// (gitlab.com/gitlab-org/api/client-go v2.64.0) keeps them in its testdata, copied to
// testdata/gitlab/ (see testdata/README.md), served by a 127.0.0.1 server.

const (
	glToken   = "glpat-Xq7RkV2mN9sT4wY1zB3c" // must never show in an error
	glProject = "/api/v4/projects/platform%2Fteam%2Fgitops"
	glRepoURL = "https://gitlab.example.com/platform/team/gitops.git"
	// the head of the recorded open merge request !14656
	glHead = "8e0b45049b6253b8984cde9241830d2851168142"
)

func newGitLabForge(t *testing.T, s *exchangeServer) forge.Forge {
	t.Helper()
	f, err := forge.New(glRepoURL, forge.Config{APIURL: s.URL + "/api/v4", Token: glToken, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind() != forge.GitLab {
		t.Fatalf("kind %q, want gitlab", f.Kind())
	}
	return f
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			s.on("GET", glProject+"/merge_requests", 200, tt.list)
			// the recorded merge request, its iid set to the listed one
			s.on("GET", glProject+"/merge_requests/15442", 200, recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"iid": 15442}))
			f := newGitLabForge(t, s)

			pr, err := f.Find(context.Background(), tt.head, tt.base)
			if err != nil {
				t.Fatal(err)
			}
			q := s.last("GET", glProject+"/merge_requests").Query
			if q.Get("state") != "opened" || q.Get("source_branch") != tt.head || q.Get("target_branch") != tt.base {
				t.Errorf("query %v, want state=opened source_branch=%s target_branch=%s", q, tt.head, tt.base)
			}
			switch {
			case tt.want == 0 && pr != nil:
				t.Errorf("found !%d, want none", pr.Number)
			case tt.want != 0 && (pr == nil || pr.Number != tt.want):
				t.Errorf("found %+v, want !%d", pr, tt.want)
			}
		})
	}
}

func TestGitLab_ReadsAMergeRequestInEachState(t *testing.T) {
	tests := []struct {
		name   string
		number int
		answer []byte
		want   forge.PullRequest
	}{
		{
			name: "opened", number: 14656, answer: recorded(t, "gitlab/get_merge_request.json"),
			want: forge.PullRequest{
				Number: 14656, URL: "https://gitlab.com/gitlab-org/gitlab-ee/merge_requests/14656", State: forge.Open,
				Title: "Add deletion support for designs", Head: "delete-designs-v2", Base: "master",
				HeadSHA: glHead, Mergeable: ptrBool(true), Checks: forge.ChecksPassed, Reviewers: []string{"tkuah"},
			},
		},
		{
			name: "merged", number: 1084, answer: recordedElement(t, "gitlab/list_group_merge_requests.json", 0),
			want: forge.PullRequest{
				Number: 1084, State: forge.Merged, Base: "main",
				HeadSHA:     "c824f1a9ee80ed354f21c2188d45992e972a1553",
				MergeCommit: "3c3516c724b60250a61d972f2f503cd0b84882a4", MergedBy: "fforster",
			},
		},
		{
			name: "merged by squash in a fast-forward project", number: 1084,
			// the recorded merged merge request without its merge commit
			answer: recordedWithElement(t, "gitlab/list_group_merge_requests.json", 0, map[string]any{"merge_commit_sha": nil}),
			want:   forge.PullRequest{Number: 1084, State: forge.Merged, MergeCommit: "c824f1a9ee80ed354f21c2188d45992e972a1553", MergedBy: "fforster"},
		},
		{
			name: "merged by fast-forward", number: 1084,
			// the recorded merged merge request with neither merge nor squash commit: its head landed
			answer: recordedWithElement(t, "gitlab/list_group_merge_requests.json", 0, map[string]any{"merge_commit_sha": nil, "squash_commit_sha": nil}),
			want:   forge.PullRequest{Number: 1084, State: forge.Merged, MergeCommit: "c824f1a9ee80ed354f21c2188d45992e972a1553"},
		},
		{
			name: "closed", number: 14656,
			// the recorded open merge request, closed by its assignee
			answer: recordedWith(t, "gitlab/get_merge_request.json", map[string]any{
				"state": "closed", "detailed_merge_status": "not_open",
				"closed_by": map[string]any{"id": 2535118, "username": "tkuah", "name": "Thong Kuah"},
			}),
			want: forge.PullRequest{Number: 14656, State: forge.Closed, HeadSHA: glHead, ClosedBy: "tkuah"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			s.on("GET", glProject+"/merge_requests/"+strconv.Itoa(tt.number), 200, tt.answer)
			pr, err := newGitLabForge(t, s).Get(context.Background(), tt.number)
			if err != nil {
				t.Fatal(err)
			}
			checkPullRequest(t, pr, tt.want)
		})
	}
}

func TestGitLab_SumsUpTheHeadPipelineAndTheMergeStatus(t *testing.T) {
	checks := map[any]forge.Checks{
		"success": forge.ChecksPassed, "skipped": forge.ChecksPassed,
		"failed": forge.ChecksFailed, "canceled": forge.ChecksFailed,
		"running": forge.ChecksPending, "pending": forge.ChecksPending, "created": forge.ChecksPending,
		nil: forge.ChecksNone, // no pipeline
	}
	for status, want := range checks {
		t.Run("pipeline "+orNone(status), func(t *testing.T) {
			s := newExchangeServer(t)
			pipeline := any(nil)
			if status != nil {
				pipeline = map[string]any{"id": 77056819, "sha": glHead, "status": status}
			}
			// the recorded merge request, its head pipeline in that status
			s.on("GET", glProject+"/merge_requests/14656", 200, recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"head_pipeline": pipeline}))
			pr, err := newGitLabForge(t, s).Get(context.Background(), 14656)
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
			s := newExchangeServer(t)
			// the recorded merge request with that detailed_merge_status
			s.on("GET", glProject+"/merge_requests/14656", 200, recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"detailed_merge_status": status}))
			pr, err := newGitLabForge(t, s).Get(context.Background(), 14656)
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
	s := newExchangeServer(t)
	s.on("GET", "/api/v4/users", 200, recorded(t, "gitlab/list_users.json"))
	s.on("POST", glProject+"/merge_requests", 201, recorded(t, "gitlab/get_merge_request.json"))
	f := newGitLabForge(t, s)

	pr, err := f.Create(context.Background(), forge.NewPullRequest{
		Head: "kropipe/prod", Base: "prod",
		Title: "Promote image from 1.2.1 to 1.2.2", Body: "Stage prod: 1.2.1 → 1.2.2",
		Labels: []string{"promotion", "prod"}, Reviewers: []string{"example_user2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 14656 || pr.State != forge.Open {
		t.Errorf("created %+v, want open !14656", pr)
	}
	if u := s.last("GET", "/api/v4/users").Query.Get("username"); u != "example_user2" {
		t.Errorf("looked up user %q, want example_user2", u)
	}
	body := s.last("POST", glProject+"/merge_requests").Body
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
	s := newExchangeServer(t)
	// GitLab's answer to a second merge request from the same branch
	s.on("POST", glProject+"/merge_requests", 409, []byte(`{"message":["Another open merge request already exists for this source branch: !14656"]}`))
	s.on("GET", glProject+"/merge_requests", 200, jsonOf(t, []any{rawJSON(recorded(t, "gitlab/get_merge_request.json"))}))
	s.on("GET", glProject+"/merge_requests/14656", 200, recorded(t, "gitlab/get_merge_request.json"))
	pr, err := newGitLabForge(t, s).Create(context.Background(), forge.NewPullRequest{Head: "delete-designs-v2", Base: "master", Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 14656 {
		t.Errorf("got !%d, want the open !14656", pr.Number)
	}
}

func TestGitLab_UpdatesTitleAndDescription(t *testing.T) {
	s := newExchangeServer(t)
	s.on("PUT", glProject+"/merge_requests/14656", 200, recorded(t, "gitlab/get_merge_request.json"))
	if err := newGitLabForge(t, s).Update(context.Background(), 14656, "Promote image from 1.2.1 to 1.2.3", "body"); err != nil {
		t.Fatal(err)
	}
	body := s.last("PUT", glProject+"/merge_requests/14656").Body
	if want := map[string]any{"title": "Promote image from 1.2.1 to 1.2.3", "description": "body"}; !reflect.DeepEqual(body, want) {
		t.Errorf("sent %v, want %v", body, want)
	}
}

func TestGitLab_Merge(t *testing.T) {
	merged := recordedElement(t, "gitlab/list_group_merge_requests.json", 0)
	tests := []struct {
		name     string
		method   forge.MergeMethod
		put      exchangeAnswer
		get      []byte // the merge request read after a refusal
		wantErr  error
		wantSent map[string]any
	}{
		{
			name: "merged", method: forge.MethodMerge, put: exchangeAnswer{status: 200, body: merged},
			wantSent: map[string]any{"sha": glHead, "squash": false, "merge_commit_message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod"},
		},
		{
			name: "squashed with the promotion's message", method: forge.MethodSquash, put: exchangeAnswer{status: 200, body: merged},
			wantSent: map[string]any{"sha": glHead, "squash": true,
				"squash_commit_message": "Promote image from 1.2.1 to 1.2.2\n\nStage prod",
				"merge_commit_message":  "Promote image from 1.2.1 to 1.2.2\n\nStage prod"},
		},
		{
			name: "merged already", method: forge.MethodMerge,
			put: exchangeAnswer{status: 405, body: []byte(`{"message":"405 Method Not Allowed"}`)}, get: merged,
		},
		{
			name: "not mergeable", method: forge.MethodMerge,
			put: exchangeAnswer{status: 422, body: []byte(`{"message":"Branch cannot be merged"}`)}, get: recorded(t, "gitlab/get_merge_request.json"),
			wantErr: forge.ErrNotMergeable,
		},
		{
			name: "head moved", method: forge.MethodMerge,
			put:     exchangeAnswer{status: 409, body: []byte(`{"message":"SHA does not match HEAD of source branch: 2be7ddb704c7b6b83732fdd5b9f09d5a397b5f8f"}`)},
			wantErr: forge.ErrHeadMoved,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			s.on("PUT", glProject+"/merge_requests/14656/merge", tt.put.status, tt.put.body)
			if tt.get != nil {
				s.on("GET", glProject+"/merge_requests/14656", 200, tt.get)
			}
			pr, err := newGitLabForge(t, s).Merge(context.Background(), 14656, glHead, tt.method, "Promote image from 1.2.1 to 1.2.2", "Stage prod")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || forge.Retryable(err) {
					t.Fatalf("err %v, want %v, not retryable", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pr.State != forge.Merged || pr.MergeCommit != "3c3516c724b60250a61d972f2f503cd0b84882a4" {
				t.Errorf("got %+v, want merged at 3c3516c7", pr)
			}
			if tt.wantSent != nil {
				if body := s.last("PUT", glProject+"/merge_requests/14656/merge").Body; !reflect.DeepEqual(body, tt.wantSent) {
					t.Errorf("sent %v\nwant %v", body, tt.wantSent)
				}
			}
		})
	}
}

func TestGitLab_RebaseIsRefusedByNameWithoutAskingGitLab(t *testing.T) {
	s := newExchangeServer(t)
	_, err := newGitLabForge(t, s).Merge(context.Background(), 14656, glHead, forge.MethodRebase, "t", "")
	if !errors.Is(err, forge.ErrMethodUnsupported) || forge.Retryable(err) {
		t.Fatalf("err %v, want ErrMethodUnsupported, not retryable", err)
	}
	if !strings.Contains(err.Error(), "fast-forward") {
		t.Errorf("%v does not say how to get a linear history", err)
	}
	if sent := s.requests(); len(sent) != 0 {
		t.Errorf("sent %v, want nothing", sent)
	}
}

func TestGitLab_CloseCommentsFirst(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		s := newExchangeServer(t)
		s.on("GET", glProject+"/merge_requests/14656", 200, recorded(t, "gitlab/get_merge_request.json"))
		s.on("POST", glProject+"/merge_requests/14656/notes", 201, []byte(`{"id":302,"body":"Superseded by 1.2.3.","noteable_type":"MergeRequest","noteable_iid":14656}`))
		s.on("PUT", glProject+"/merge_requests/14656", 200, recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"state": "closed"}))
		if err := newGitLabForge(t, s).Close(context.Background(), 14656, "Superseded by 1.2.3."); err != nil {
			t.Fatal(err)
		}
		want := []string{"GET " + glProject + "/merge_requests/14656", "POST " + glProject + "/merge_requests/14656/notes", "PUT " + glProject + "/merge_requests/14656"}
		if got := s.requests(); !reflect.DeepEqual(got, want) {
			t.Errorf("sent %v\nwant %v", got, want)
		}
		if b := s.last("POST", glProject+"/merge_requests/14656/notes").Body; b["body"] != "Superseded by 1.2.3." {
			t.Errorf("note %v", b)
		}
		if b := s.last("PUT", glProject+"/merge_requests/14656").Body; b["state_event"] != "close" {
			t.Errorf("sent %v, want state_event close", b)
		}
	})
	t.Run("closed already", func(t *testing.T) {
		s := newExchangeServer(t)
		s.on("GET", glProject+"/merge_requests/14656", 200, recordedWith(t, "gitlab/get_merge_request.json", map[string]any{"state": "closed"}))
		if err := newGitLabForge(t, s).Close(context.Background(), 14656, "Superseded by 1.2.3."); err != nil {
			t.Fatal(err)
		}
		if got := s.requests(); len(got) != 1 {
			t.Errorf("sent %v, want only the read", got)
		}
	})
}

func TestGitLab_ErrorsSayWhatToDoAndWhetherToRetry(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		header    []string
		want      error
		retryable bool
		says      string
		retryIn   time.Duration
	}{
		// GitLab echoing the token back is not something it does; kropipe scrubs it anyway.
		{name: "401", status: 401, body: `{"message":"401 Unauthorized ` + glToken + `"}`, want: forge.ErrUnauthorized, says: "api scope"},
		{name: "403 token without the api scope", status: 403, body: `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}`, want: forge.ErrForbidden, says: "lacks the api scope"},
		{name: "404", status: 404, body: `{"message":"404 Project Not Found"}`, want: forge.ErrNotFound, says: "platform/team/gitops"},
		{name: "500", status: 500, body: `{"message":"500 Internal Server Error"}`, retryable: true},
		{name: "502", status: 502, body: `<html>502 Bad Gateway</html>`, retryable: true},
		{name: "429 with Retry-After", status: 429, body: `Retry later`, header: []string{"Retry-After", "30"}, retryable: true, retryIn: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newExchangeServer(t)
			s.on("GET", glProject+"/merge_requests/14656", tt.status, []byte(tt.body), tt.header...)
			_, err := newGitLabForge(t, s).Get(context.Background(), 14656)
			checkForgeError(t, err, tt.want, tt.retryable, tt.says, tt.retryIn, glToken)
		})
	}
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		hung := newHungServer(t, release)
		f, err := forge.New(glRepoURL, forge.Config{APIURL: hung + "/api/v4", Token: glToken, HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Get(context.Background(), 14656)
		checkForgeError(t, err, nil, true, "", 0, glToken)
	})
}

func TestGitLab_UnknownReviewerIsNamed(t *testing.T) {
	s := newExchangeServer(t)
	s.on("GET", "/api/v4/users", 200, []byte(`[]`))
	_, err := newGitLabForge(t, s).Create(context.Background(), forge.NewPullRequest{Head: "kropipe/prod", Base: "prod", Title: "t", Reviewers: []string{"nobody"}})
	if !errors.Is(err, forge.ErrNotFound) || forge.Retryable(err) || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("err %v, want the reviewer named, not found, not retryable", err)
	}
}

func TestGitLab_SelfManagedAPIIsOnTheRepositoryHostWithTheToken(t *testing.T) {
	s := newExchangeServer(t)
	s.on("GET", glProject+"/merge_requests/14656", 200, recorded(t, "gitlab/get_merge_request.json"))
	// a self-managed GitLab on plain http, no API URL given: <scheme>://<host>/api/v4
	f, err := forge.New(s.URL+"/platform/team/gitops.git", forge.Config{Kind: forge.GitLab, Token: glToken, HTTPClient: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background(), 14656); err != nil {
		t.Fatal(err)
	}
	if h := s.last("GET", glProject+"/merge_requests/14656").Header; h.Get("Private-Token") != glToken {
		t.Errorf("PRIVATE-TOKEN %q, want the project's token", h.Get("Private-Token"))
	}
}
