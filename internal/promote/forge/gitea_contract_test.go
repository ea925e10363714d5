package forge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// giteaContractEnv names the variable e2e/forge sets when it runs this test against the real
// Gitea it started (a JSON giteaContract). Without it the test is skipped: the recorded
// exchanges in gitea_test.go cover the client in unit runs; this proves them against Gitea
// itself.
const giteaContractEnv = "KROPIPE_E2E_GITEA"

// giteaContract is the forge e2e/forge prepared: repository Repo (owner/name, branch main)
// with one branch per pull request the test opens, each changing a file of its own; Reviewer
// a second user with write access.
type giteaContract struct {
	URL           string   `json:"url"` // http://127.0.0.1:<port>
	Repo          string   `json:"repo"`
	Token         string   `json:"token"` // the administrator's, every scope: kropipe's
	Login         string   `json:"login"` // the administrator's login
	Reviewer      string   `json:"reviewer"`
	ReviewerToken string   `json:"reviewerToken"`
	Branches      []string `json:"branches"`
	// UnavailableURL is a proxy in front of Gitea that answers 503 to every API request.
	UnavailableURL string `json:"unavailableURL"`
}

// The Gitea client's contract against a real Gitea (v1.27, e2e/tools/gitea): what the
// engine relies on, call by call.
func TestGiteaContract_RealGitea(t *testing.T) {
	raw := os.Getenv(giteaContractEnv)
	if raw == "" {
		t.Skip(giteaContractEnv + " not set: run through e2e/forge, which starts a real Gitea")
	}
	var gc giteaContract
	if err := json.Unmarshal([]byte(raw), &gc); err != nil {
		t.Fatalf("%s: %v", giteaContractEnv, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repoURL := gc.URL + "/" + gc.Repo + ".git"
	f, err := New(repoURL, Config{Kind: Gitea, Token: gc.Token})
	if err != nil {
		t.Fatal(err)
	}
	api := giteaSetupAPI{url: gc.URL, token: gc.Token}
	human := giteaSetupAPI{url: gc.URL, token: gc.ReviewerToken}
	branch := func(name string) string {
		for _, b := range gc.Branches {
			if b == name {
				return b
			}
		}
		t.Fatalf("e2e/forge prepared no branch %s (it did %v)", name, gc.Branches)
		return ""
	}

	t.Run("create, find, create again, update, checks", func(t *testing.T) {
		head := branch("pr-merge")
		if pr, err := f.Find(ctx, head, "main"); err != nil || pr != nil {
			t.Fatalf("Find before Create: %+v, %v; want nil, nil", pr, err)
		}
		created, err := f.Create(ctx, NewPullRequest{Head: head, Base: "main", Title: "Promote image from 1.2.1 to 1.2.2",
			Body: "the body", Labels: []string{"promotion", "stage/prod"}, Reviewers: []string{gc.Reviewer}})
		if err != nil {
			t.Fatal(err)
		}
		if created.Number == 0 || created.State != Open || created.Head != head || created.Base != "main" || created.HeadSHA == "" ||
			!strings.HasPrefix(created.URL, gc.URL+"/"+gc.Repo+"/pulls/") || !slices.Contains(created.Reviewers, gc.Reviewer) {
			t.Fatalf("Create: %+v", created)
		}
		var labels []struct{ Name string }
		api.do(t, ctx, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/labels", gc.Repo, created.Number), nil, &labels)
		if names := giteaLabelNames(labels); !slices.Contains(names, "promotion") || !slices.Contains(names, "stage/prod") {
			t.Errorf("labels on #%d: %v, want promotion and stage/prod (created when missing)", created.Number, names)
		}
		found, err := f.Find(ctx, head, "main")
		if err != nil || found == nil || found.Number != created.Number {
			t.Fatalf("Find by head branch: %+v, %v; want #%d", found, err, created.Number)
		}
		again, err := f.Create(ctx, NewPullRequest{Head: head, Base: "main", Title: "again"})
		if err != nil || again.Number != created.Number {
			t.Fatalf("Create again from the same branch: %+v, %v; want #%d back (a crash after the first create)", again, err, created.Number)
		}
		if err := f.Update(ctx, created.Number, "Promote image from 1.2.1 to 1.2.3", "new body"); err != nil {
			t.Fatal(err)
		}
		got, err := f.Get(ctx, created.Number)
		if err != nil {
			t.Fatal(err)
		}
		if got.Title != "Promote image from 1.2.1 to 1.2.3" || got.Body != "new body" || got.Checks != ChecksNone {
			t.Errorf("Get after Update: title %q body %q checks %q; want the new ones and checks none", got.Title, got.Body, got.Checks)
		}
		for _, c := range []struct {
			state string
			want  Checks
		}{{"pending", ChecksPending}, {"success", ChecksPassed}} {
			api.do(t, ctx, http.MethodPost, "/repos/"+gc.Repo+"/statuses/"+got.HeadSHA, map[string]string{"context": "ci", "state": c.state}, nil)
			pr, err := f.Get(ctx, created.Number)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Checks != c.want {
				t.Errorf("checks after status ci=%s: %q, want %q", c.state, pr.Checks, c.want)
			}
		}
	})

	for _, c := range []struct {
		method MergeMethod
		head   string
	}{{MethodMerge, "pr-merge"}, {MethodSquash, "pr-squash"}, {MethodRebase, "pr-rebase"}} {
		t.Run("merge by "+string(c.method), func(t *testing.T) {
			pr, err := f.Create(ctx, NewPullRequest{Head: branch(c.head), Base: "main", Title: "Promote " + c.head})
			if err != nil {
				t.Fatal(err)
			}
			open := giteaWaitMergeable(t, ctx, f, pr.Number)
			title, message := "Promote "+c.head+" (#"+fmt.Sprint(pr.Number)+")", "Merged by kropipe."
			merged, err := giteaMergeRetried(t, ctx, f, pr.Number, open.HeadSHA, c.method, title, message)
			if err != nil {
				t.Fatal(err)
			}
			if merged.State != Merged || merged.MergeCommit == "" || merged.MergedBy != gc.Login {
				t.Fatalf("Merge: state %q commit %q by %q; want merged with its commit, by %s", merged.State, merged.MergeCommit, merged.MergedBy, gc.Login)
			}
			var main struct {
				Commit struct{ ID string } `json:"commit"`
			}
			api.do(t, ctx, http.MethodGet, "/repos/"+gc.Repo+"/branches/main", nil, &main)
			if main.Commit.ID != merged.MergeCommit {
				t.Errorf("main is at %s after the merge, want the merge commit %s", main.Commit.ID, merged.MergeCommit)
			}
			var commit struct {
				Commit struct{ Message string } `json:"commit"`
			}
			api.do(t, ctx, http.MethodGet, "/repos/"+gc.Repo+"/git/commits/"+merged.MergeCommit, nil, &commit)
			if c.method != MethodRebase && (!strings.Contains(commit.Commit.Message, title) || !strings.Contains(commit.Commit.Message, message)) {
				t.Errorf("%s commit message %q, want the given title %q and message %q", c.method, commit.Commit.Message, title, message)
			}
			got, err := f.Get(ctx, pr.Number)
			if err != nil || got.State != Merged || got.MergeCommit != merged.MergeCommit || got.MergedBy != gc.Login {
				t.Errorf("Get after Merge: %+v, %v", got, err)
			}
			again, err := f.Merge(ctx, pr.Number, open.HeadSHA, c.method, title, message)
			if err != nil || again.State != Merged || again.MergeCommit != merged.MergeCommit {
				t.Errorf("Merge again (a retry after a lost answer): %+v, %v; want the merged request, no error", again, err)
			}
		})
	}

	t.Run("merged by a human", func(t *testing.T) {
		pr, err := f.Create(ctx, NewPullRequest{Head: branch("pr-human"), Base: "main", Title: "Promote pr-human", Reviewers: []string{gc.Reviewer}})
		if err != nil {
			t.Fatal(err)
		}
		giteaWaitMergeable(t, ctx, f, pr.Number)
		for deadline := time.Now().Add(time.Minute); ; {
			// 405 "Please try again later" while Gitea re-checks the request after the
			// merges above moved main; a human would press the button again.
			status, answer := human.try(t, ctx, http.MethodPost, fmt.Sprintf("/repos/%s/pulls/%d/merge", gc.Repo, pr.Number), map[string]string{"Do": "merge"})
			if status/100 == 2 {
				break
			}
			if status != http.StatusMethodNotAllowed || time.Now().After(deadline) {
				t.Fatalf("%s merging #%d: %d %s", gc.Reviewer, pr.Number, status, answer)
			}
			time.Sleep(200 * time.Millisecond)
		}
		got, err := f.Get(ctx, pr.Number)
		if err != nil || got.State != Merged || got.MergedBy != gc.Reviewer || got.MergeCommit == "" {
			t.Errorf("Get after %s merged it: %+v, %v; want merged by %s", gc.Reviewer, got, err, gc.Reviewer)
		}
	})

	t.Run("close with a comment", func(t *testing.T) {
		pr, err := f.Create(ctx, NewPullRequest{Head: branch("pr-close"), Base: "main", Title: "Promote pr-close"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(ctx, pr.Number, "Superseded by 1.2.4."); err != nil {
			t.Fatal(err)
		}
		got, err := f.Get(ctx, pr.Number)
		if err != nil || got.State != Closed || got.ClosedBy != gc.Login {
			t.Errorf("Get after Close: %+v, %v; want closed by %s", got, err, gc.Login)
		}
		var comments []struct{ Body string }
		api.do(t, ctx, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/comments", gc.Repo, pr.Number), nil, &comments)
		if len(comments) != 1 || comments[0].Body != "Superseded by 1.2.4." {
			t.Errorf("comments on the closed request: %+v, want the one Close made", comments)
		}
		if err := f.Close(ctx, pr.Number, "again"); err != nil {
			t.Errorf("Close of a closed request: %v, want nil", err)
		}
		if found, err := f.Find(ctx, branch("pr-close"), "main"); err != nil || found != nil {
			t.Errorf("Find after Close: %+v, %v; want none open", found, err)
		}
	})

	t.Run("merge of a head that moved", func(t *testing.T) {
		head := branch("pr-stale")
		pr, err := f.Create(ctx, NewPullRequest{Head: head, Base: "main", Title: "Promote pr-stale"})
		if err != nil {
			t.Fatal(err)
		}
		old := giteaWaitMergeable(t, ctx, f, pr.Number).HeadSHA
		// Someone pushes to the branch (through the contents API: a commit on top of it).
		api.do(t, ctx, http.MethodPost, "/repos/"+gc.Repo+"/contents/moved.txt", map[string]string{
			"branch": head, "content": base64.StdEncoding.EncodeToString([]byte("moved\n")), "message": "Move the head"}, nil)
		deadline := time.Now().Add(time.Minute)
		for {
			got, err := f.Get(ctx, pr.Number)
			if err != nil {
				t.Fatal(err)
			}
			if got.HeadSHA != old {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Gitea still reports head %s a minute after the push", old)
			}
			time.Sleep(200 * time.Millisecond)
		}
		_, err = f.Merge(ctx, pr.Number, old, MethodMerge, "t", "m")
		if !errors.Is(err, ErrHeadMoved) || Retryable(err) {
			t.Errorf("Merge at the old head %s: %v; want ErrHeadMoved, not retryable", old[:8], err)
		}
		if got, err := f.Get(ctx, pr.Number); err != nil || got.State != Open {
			t.Errorf("after the refused merge: %+v, %v; want still open", got, err)
		}
	})

	t.Run("an invalid token", func(t *testing.T) {
		bad, err := New(repoURL, Config{Kind: Gitea, Token: "0000000000000000000000000000000000000000"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Find(ctx, "pr-merge", "main")
		if !errors.Is(err, ErrUnauthorized) || Retryable(err) {
			t.Errorf("Find with an invalid token: %v; want ErrUnauthorized, not retryable", err)
		}
		noSecret(t, err, "0000000000")
	})

	t.Run("503 from a proxy", func(t *testing.T) {
		down, err := New(repoURL, Config{Kind: Gitea, Token: gc.Token, APIURL: gc.UnavailableURL + "/api/v1"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = down.Find(ctx, "pr-merge", "main")
		var fe *Error
		if !Retryable(err) || !errors.As(err, &fe) || fe.Status != http.StatusServiceUnavailable {
			t.Errorf("Find through a proxy answering 503: %v; want a retryable *Error with status 503", err)
		}
		noSecret(t, err, gc.Token)
	})
}

// giteaMergeRetried merges as the engine does: ErrNotMergeable means "not yet" to it (its
// next pass asks again). Gitea re-checks every open request after its base moved, in the
// background: Get may say mergeable while a re-check is queued, and the merge then answers
// 405 "Please try again later".
func giteaMergeRetried(t *testing.T, ctx context.Context, f Forge, n int, sha string, method MergeMethod, title, message string) (*PullRequest, error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for refused := 0; ; refused++ {
		pr, err := f.Merge(ctx, n, sha, method, title, message)
		if !errors.Is(err, ErrNotMergeable) || time.Now().After(deadline) {
			if refused > 0 {
				t.Logf("merge of #%d refused %d times as not mergeable (yet) before: %v", n, refused, err)
			}
			return pr, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// giteaWaitMergeable polls Get until Gitea has checked the new request (it does so in the
// background after a push or a create): a merge before that is refused.
func giteaWaitMergeable(t *testing.T, ctx context.Context, f Forge, n int) *PullRequest {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		pr, err := f.Get(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if pr.Mergeable != nil && *pr.Mergeable {
			return pr
		}
		if time.Now().After(deadline) {
			t.Fatalf("pull request #%d not mergeable a minute after it was opened: %+v", n, pr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// giteaSetupAPI is the test's own client for what the forge client does not do (commit
// statuses, pushes, a human's merge), so its setup does not go through the code under test.
type giteaSetupAPI struct{ url, token string }

func (a giteaSetupAPI) do(t *testing.T, ctx context.Context, method, path string, in, out any) {
	t.Helper()
	status, b := a.try(t, ctx, method, path, in)
	if status/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// try sends the request and returns the answer's status and body, whatever the status.
func (a giteaSetupAPI) try(t *testing.T, ctx context.Context, method, path string, in any) (int, []byte) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url+"/api/v1"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "token "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func giteaLabelNames(ls []struct{ Name string }) []string {
	var names []string
	for _, l := range ls {
		names = append(names, l.Name)
	}
	return names
}
