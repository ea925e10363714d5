package page_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// prodWaitingOnPR is a promoter whose prod-frontend waits in a pull request and whose
// history went through another one. The methods the page does not call are left nil.
type prodWaitingOnPR struct {
	api.Controller
	status stage.Status
	recs   []gitwrite.Record
	log    []stage.PullRequest
}

func (c prodWaitingOnPR) Status() []stage.Status { return []stage.Status{c.status} }
func (c prodWaitingOnPR) StatusOf(name string) (stage.Status, bool) {
	return c.status, name == c.status.Name
}
func (c prodWaitingOnPR) Passes() int { return 1 }
func (c prodWaitingOnPR) History(context.Context, string) ([]gitwrite.Record, error) {
	return c.recs, nil
}
func (c prodWaitingOnPR) PullRequestLog(context.Context, string) ([]stage.PullRequest, error) {
	return c.log, nil
}

func TestPage_CardLinksThePullRequestTheStageWaitsOn(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	pr := func(url, action string) *stage.PullRequest {
		return &stage.PullRequest{PullRequest: forge.PullRequest{Number: 12, URL: url, State: forge.Open, Checks: forge.ChecksPending}, Action: action, Value: "1.2.2"}
	}
	base := stage.Status{Name: "prod-frontend", Image: "registry.example.com/team/frontend", CurrentTag: "1.2.1", Decision: stage.DecisionWait, Reason: "waiting for pull request #12 to be merged"}
	tests := []struct {
		name string
		pr   *stage.PullRequest
		want []string
		not  []string
	}{
		{"link, state, checks and who must act", pr("https://git.example.com/org/gitops/pulls/12", "waiting for a human to merge"),
			[]string{`<dt>pull request</dt><dd class="pr pr-open"><a href="https://git.example.com/org/gitops/pulls/12">#12</a> open, checks pending, waiting for a human to merge</dd>`}, nil},
		{"text from the forge is escaped", pr("https://git.example.com/org/gitops/pulls/12", `waiting for <script>alert("x")</script>`),
			[]string{`waiting for &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`}, []string{`<script>alert`}},
		{"a URL that is not http(s) is no link", pr("javascript:alert(1)", "waiting for a human to merge"),
			[]string{`<dd class="pr pr-open">#12 open, checks pending`}, []string{"javascript:"}},
		{"credentials in the URL or the forge's error never show", &stage.PullRequest{PullRequest: forge.PullRequest{Number: 12, URL: "https://bot:hunter2@git.example.com/org/gitops/pulls/12", State: forge.Open},
			LastError: "fetching https://bot:hunter2@git.example.com/org/gitops.git: 503", NextAttempt: t0},
			[]string{`<a href="https://git.example.com/org/gitops/pulls/12">#12</a> open`, "next attempt 15:00:00Z"}, []string{"hunter2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := base
			st.PullRequest = tt.pr
			c := prodWaitingOnPR{status: st}
			h := api.New(c, api.WithLogger(quiet()))
			page.Mount(h, c, page.WithLogger(quiet()))
			html := get(t, h, "/")
			for _, w := range tt.want {
				if !strings.Contains(html, w) {
					t.Errorf("the card lacks %s\n%s", w, html)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(html, w) {
					t.Errorf("the card has %s", w)
				}
			}
		})
	}
}

func TestPage_StageHistoryLinksPullRequests(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	c := prodWaitingOnPR{
		status: stage.Status{Name: "prod-frontend", CurrentTag: "1.2.2", Decision: stage.DecisionUpToDate},
		recs: []gitwrite.Record{
			{Commit: "0123456789abcdef0123456789abcdef01234567", Time: t0, Subject: "Promote image from 1.2.1 to 1.2.2", Kind: gitwrite.Promote, Previous: "1.2.1", Value: "1.2.2"},
			{Commit: "89abcdef0123456789abcdef0123456789abcdef", Time: t0.Add(-time.Hour), Subject: "Seed", Kind: gitwrite.Promote, Value: "1.2.1"},
		},
		log: []stage.PullRequest{{Commit: "0123456789abcdef0123456789abcdef01234567", PullRequest: forge.PullRequest{Number: 12, URL: "https://git.example.com/org/gitops/pulls/12"}}},
	}
	h := api.New(c, api.WithLogger(quiet()))
	page.Mount(h, c, page.WithLogger(quiet()))
	html := get(t, h, "/stages/prod-frontend")
	if !strings.Contains(html, `<span class="subject">Promote image from 1.2.1 to 1.2.2</span> <span class="pr"><a href="https://git.example.com/org/gitops/pulls/12">PR #12</a></span>`) {
		t.Fatalf("the history does not link PR #12:\n%s", html)
	}
	if strings.Count(html, "PR #") != 1 {
		t.Fatalf("a commit that went through no pull request is linked:\n%s", html)
	}
}

func get(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Host = "127.0.0.1:8080"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Body)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, w.Code, body)
	}
	return string(body)
}
