package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// waitingOnPR is an engine whose develop-frontend waits in a pull request, and whose State
// remembers the merged pull request of its last promotion.
type waitingOnPR struct {
	*stage.Engine
	pr  *stage.PullRequest
	log []stage.PullRequest
}

func (w waitingOnPR) Status() []stage.Status {
	sts := w.Engine.Status()
	for i := range sts {
		sts[i].PullRequest = w.pr
	}
	return sts
}

func (w waitingOnPR) StatusOf(name string) (stage.Status, bool) {
	st, ok := w.Engine.StatusOf(name)
	st.PullRequest = w.pr
	return st, ok
}

func (w waitingOnPR) PullRequestLog(context.Context, string) ([]stage.PullRequest, error) {
	return w.log, nil
}

func TestAPI_StatusCarriesThePullRequestInCamelCase(t *testing.T) {
	e := newEngine(t)
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	yes := true
	pr := &stage.PullRequest{
		PullRequest: forge.PullRequest{Number: 12, URL: "https://git.example.com/org/gitops/pulls/12", State: forge.Open, Checks: forge.ChecksPending,
			Head: "kropipe/develop-frontend", Base: "main", HeadSHA: "0123456789abcdef", Mergeable: &yes},
		Kind: "promote", FreightID: "f-1.2.2", Value: "1.2.2", From: "1.2.1", Commit: "0123456789abcdef",
		OpenedAt: time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC), Action: "waiting for a human to merge",
	}
	ts := httptest.NewServer(New(waitingOnPR{Engine: e, pr: pr}, WithLogger(quiet())))
	defer ts.Close()
	res, err := http.Get(ts.URL + "/api/v1/stages/develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var raw struct {
		PullRequest map[string]any `json:"pullRequest"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"number": 12.0, "url": pr.URL, "state": "open", "checks": "pending", "head": "kropipe/develop-frontend",
		"mergeable": true, "value": "1.2.2", "commit": "0123456789abcdef", "action": "waiting for a human to merge", "openedAt": "2026-12-07T15:00:00Z"}
	for k, v := range want {
		if raw.PullRequest[k] != v {
			t.Errorf("pullRequest.%s = %v, want %v\n%s", k, raw.PullRequest[k], v, body)
		}
	}
	// The client reads it back as it was.
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "", nil)
	st, err := c.Stage(context.Background(), "develop-frontend")
	if err != nil || st.PullRequest == nil || st.PullRequest.Number != 12 || st.PullRequest.Checks != forge.ChecksPending || *st.PullRequest.Mergeable != true || !st.PullRequest.OpenedAt.Equal(pr.OpenedAt) {
		t.Fatalf("round trip: %+v, %v", st.PullRequest, err)
	}
}

func TestAPI_HistoryLinksPullRequestsByCommit(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := e.Promote(ctx, "develop-frontend", "1.2.2")
	if err != nil {
		t.Fatal(err)
	}
	// A squash merge: the commit on the branch is the request's merge commit.
	log := []stage.PullRequest{{Commit: "proposed-elsewhere", PullRequest: forge.PullRequest{Number: 7, URL: "https://git.example.com/org/gitops/pulls/7", MergeCommit: out.Commit}}}
	ts := httptest.NewServer(New(waitingOnPR{Engine: e, log: log}, WithLogger(quiet())))
	defer ts.Close()
	h, err := NewClient(strings.TrimPrefix(ts.URL, "http://"), "", nil).History(ctx, "develop-frontend")
	if err != nil || len(h.Entries) != 1 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if got := h.Entries[0].PullRequest; got == nil || got.Number != 7 || got.URL != log[0].URL {
		t.Fatalf("entry %+v not linked to #7", h.Entries[0])
	}
	// With no pull request in the State the history is the same, unlinked.
	plain := httptest.NewServer(New(e, WithLogger(quiet())))
	defer plain.Close()
	if h, err := NewClient(strings.TrimPrefix(plain.URL, "http://"), "", nil).History(ctx, "develop-frontend"); err != nil || len(h.Entries) != 1 || h.Entries[0].PullRequest != nil {
		t.Fatalf("history of the engine itself: %+v, %v", h, err)
	}
}
