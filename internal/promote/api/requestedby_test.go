package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// lastMessage is the full message of the newest commit on main.
func lastMessage(t *testing.T, bare string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "log", "-1", "--format=%B", "main")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const namedTokens = "# who may act\nalice: a1ice-s3cret\nci-bot: b0t-s3cret\n"

// A manual promotion and a rollback through the API record the name of the token that asked
// for them in their commit, and the history reads it back.
func TestAPI_ActionsRecordTheTokensName(t *testing.T) {
	e, _, bare := newEngineAt123(t)
	ts := httptest.NewServer(New(e, WithToken(namedTokens), WithRequireToken(true), WithLogger(quiet())))
	defer ts.Close()
	ctx := context.Background()
	addr := strings.TrimPrefix(ts.URL, "http://")
	alice, bot := NewClient(addr, "a1ice-s3cret", nil), NewClient(addr, "b0t-s3cret", nil)

	// A claimed name counts for nothing where a token names the caller.
	out, err := alice.As("mallory").Rollback(ctx, "develop-frontend", "", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if msg := lastMessage(t, bare); !strings.Contains(msg, "\nKropipe-Requested-By: alice\n") || out.RequestedBy != "alice" {
		t.Fatalf("the rollback's commit does not name alice (outcome %+v):\n%s", out, msg)
	}
	if _, err := bot.Promote(ctx, "develop-frontend", "1.2.3", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	if msg := lastMessage(t, bare); !strings.Contains(msg, "\nKropipe-Requested-By: ci-bot\n") {
		t.Fatalf("the promotion's commit does not name ci-bot:\n%s", msg)
	}
	h, err := alice.History(ctx, "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range h.Entries {
		got = append(got, en.Kind+" "+en.Value+" by "+en.RequestedBy)
	}
	want := []string{"promote 1.2.3 by ci-bot", "rollback 1.2.2 by alice", "promote 1.2.3 by ", "promote 1.2.2 by "}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("history %q, want %q", got, want)
	}
}

// With a single token in the file (the form every promoter had before named tokens), its
// name is "api".
func TestAPI_ASingleTokenIsNamedAPI(t *testing.T) {
	e, _, bare := newEngineAt123(t)
	ts := httptest.NewServer(New(e, WithToken("0nly-s3cret\n"), WithLogger(quiet())))
	defer ts.Close()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "0nly-s3cret", nil)
	if _, err := c.Rollback(context.Background(), "develop-frontend", "", ""); err != nil {
		t.Fatal(err)
	}
	if msg := lastMessage(t, bare); !strings.Contains(msg, "\nKropipe-Requested-By: api\n") {
		t.Fatalf("the commit does not name the token api:\n%s", msg)
	}
}

// Without a token the API takes the name the promoter command claims ($USER@host); a claim
// that cannot go into a trailer is refused before anything is done.
func TestAPI_WithoutATokenTheClaimedNameCounts(t *testing.T) {
	e, _, bare := newEngineAt123(t)
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "", nil)
	before := head(t, bare)
	if _, err := c.As("eve\nKropipe-Rejected: 9.9.9").Rollback(context.Background(), "develop-frontend", "", ""); err == nil {
		t.Fatal("a requester with a line break was taken")
	}
	if head(t, bare) != before {
		t.Fatal("a refused requester still wrote a commit")
	}
	if _, err := c.As("carol@laptop").Rollback(context.Background(), "develop-frontend", "", ""); err != nil {
		t.Fatal(err)
	}
	if msg := lastMessage(t, bare); !strings.Contains(msg, "\nKropipe-Requested-By: carol@laptop\n") {
		t.Fatalf("the commit does not name carol@laptop:\n%s", msg)
	}
}

// A request another replica passes on with the replicas' credential keeps the name its
// caller authenticated with there; the same claim from an API token holder does not count.
func TestAPI_AForwardedActionKeepsItsCallersName(t *testing.T) {
	e, _, bare := newEngineAt123(t)
	ts := httptest.NewServer(New(e, WithToken(namedTokens+"replicas: p33r-s3cret\n"), WithForwarders("p33r-s3cret"), WithLogger(quiet())))
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "http://")
	ctx := context.Background()
	if _, err := NewClient(addr, "b0t-s3cret", nil).Forwarding().As("alice").Rollback(ctx, "develop-frontend", "", "1.2.3"); err != nil {
		t.Fatal(err)
	}
	if msg := lastMessage(t, bare); !strings.Contains(msg, "\nKropipe-Requested-By: ci-bot\n") {
		t.Fatalf("a token holder's claim counted:\n%s", msg)
	}
	if _, err := NewClient(addr, "p33r-s3cret", nil).Forwarding().As("alice").Promote(ctx, "develop-frontend", "1.2.3", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	if msg := lastMessage(t, bare); !strings.Contains(msg, "\nKropipe-Requested-By: alice\n") {
		t.Fatalf("the forwarded action lost its caller's name:\n%s", msg)
	}
}

// Approvals and pauses write no commit: the State keeps who asked.
func TestAPI_ApprovalAndPauseKeepWhoAskedInTheState(t *testing.T) {
	store := stage.NewFileStore(t.TempDir() + "/state.json")
	e2 := newEngineWithOptions(t, nil, []stage.Option{stage.WithStore(store)})
	ctx := context.Background()
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(e2, WithToken(namedTokens), WithLogger(quiet())))
	defer ts.Close()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "a1ice-s3cret", nil)
	if _, err := c.Approve(ctx, "develop-frontend", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(ctx, "develop-frontend", true); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if as := st.Approvals["develop-frontend"]; len(as) != 1 || as[0].RequestedBy != "alice" || as[0].Value != "1.2.2" {
		t.Fatalf("approvals %+v", as)
	}
	if st.PausedBy["develop-frontend"] != "alice" {
		t.Fatalf("pausedBy %+v", st.PausedBy)
	}
	// The history lists the approval, who gave it, and no commit.
	h, err := c.History(ctx, "develop-frontend")
	if err != nil || len(h.Entries) == 0 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if a := h.Entries[0]; a.Kind != KindApprove || a.Value != "1.2.2" || a.RequestedBy != "alice" || a.Commit != "" {
		t.Fatalf("newest history entry %+v, want alice's approval of 1.2.2", a)
	}
	// The status says who paused it, after the next pass too.
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Stage(ctx, "develop-frontend"); err != nil || !got.Paused || got.PausedBy != "alice" {
		t.Fatalf("status after the pause: %+v, %v", got, err)
	}
	if err := NewClient(strings.TrimPrefix(ts.URL, "http://"), "b0t-s3cret", nil).Pause(ctx, "develop-frontend", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Stage(ctx, "develop-frontend"); got.Paused || got.PausedBy != "" {
		t.Fatalf("status after resume: %+v", got)
	}
}

// No token ever shows in a log line, an error or an answer: not a wrong one sent, not the
// right ones, not a token file that cannot be read.
func TestAPI_TokensNeverShow(t *testing.T) {
	e, _, _ := newEngineAt123(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := httptest.NewServer(New(e, WithToken(namedTokens), WithLogger(log)))
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "http://")
	ctx := context.Background()
	var seen strings.Builder
	note := func(err error) {
		if err != nil {
			seen.WriteString(err.Error() + "\n")
		}
	}
	wrong := NewClient(addr, "a1ice-s3cret-typo", nil)
	_, err := wrong.Promote(ctx, "develop-frontend", "1.2.2", "")
	note(err)
	right := NewClient(addr, "a1ice-s3cret", nil)
	_, err = right.Rollback(ctx, "develop-frontend", "", "")
	note(err)
	note(right.Pause(ctx, "develop-frontend", true))
	_, err = right.Promote(ctx, "nope", "", "")
	note(err)
	for _, route := range []string{"/api/v1/stages", "/api/v1/stages/develop-frontend", "/api/v1/stages/develop-frontend/history", OpenAPIPath} {
		resp, err := http.Get(ts.URL + route)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen.Write(b)
	}
	for _, content := range []string{"alice a1ice-s3cret", "alice: a1ice-s3cret\nalice: b0t-s3cret", "alice: a1ice-s3cret\nbob: a1ice-s3cret", "al ice: a1ice-s3cret\nbob: b0t-s3cret"} {
		_, err := ParseTokens(content)
		if content != "alice a1ice-s3cret" && err == nil {
			t.Errorf("token file %q was taken", content)
		}
		note(err)
	}
	_, err = NewClient(addr, "", nil).Stages(ctx)
	note(err)
	if _, err := (Tokens{"alice": "a1ice-s3cret", "bob": "b0t-s3cret"}).Pick(""); err != nil {
		note(err)
	}
	if _, err := (Tokens{"alice": "a1ice-s3cret"}).Pick("carol"); err != nil {
		note(err)
	}
	all := seen.String() + logs.String()
	for _, secret := range []string{"s3cret"} {
		if strings.Contains(all, secret) {
			t.Fatalf("a token shows:\n%s", all)
		}
	}
	if !strings.Contains(logs.String(), "api request") {
		t.Fatal("the test read no log: it proves nothing")
	}
}

// A replica passing a history on gives the approvals back as they were.
func TestHistory_ApprovalsAmongCommitsNewestFirstAndBack(t *testing.T) {
	at := func(m int) time.Time { return fixtureTime.Add(time.Duration(m) * time.Minute) }
	h := History{Stage: "prod-frontend", Entries: []HistoryEntry{
		{Commit: "c3", Time: at(30), Kind: "promote", Value: "1.2.2"},
		{Commit: "c1", Time: at(10), Kind: "promote", Value: "1.2.1"},
	}}
	as := []stage.Approval{{Value: "1.2.1", ApprovedAt: at(5), RequestedBy: "alice"}, {Value: "1.2.2", ApprovedAt: at(20), RequestedBy: "bob"}}
	got := h.WithApprovals(as)
	var order []string
	for _, e := range got.Entries {
		order = append(order, e.Kind+" "+e.Value)
	}
	if strings.Join(order, ", ") != "promote 1.2.2, approve 1.2.2, promote 1.2.1, approve 1.2.1" {
		t.Fatalf("entries %v", order)
	}
	if back := got.Approvals(); !reflect.DeepEqual(back, as) {
		t.Fatalf("approvals back %+v, want %+v", back, as)
	}
	if len(h.Entries) != 2 {
		t.Fatal("WithApprovals changed the history it was given")
	}
}
