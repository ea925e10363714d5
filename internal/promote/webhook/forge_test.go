package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// giteaMerged is the part of Gitea's pull_request webhook payload kropipe reads, as Gitea sends
// it when a pull request is merged (action closed, merged true).
const giteaMerged = `{"action":"closed","number":7,"pull_request":{"number":7,"merged":true,"head":{"ref":"kropipe/staging"},"base":{"ref":"main"}},"repository":{"full_name":"team/gitops"}}`

func giteaRequest(t *testing.T, url, secret, event, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req.Header.Set("X-Gitea-Event", event)
	req.Header.Set("X-Gitea-Signature", hex.EncodeToString(mac.Sum(nil)))
	return req
}

func TestForgeHandler_WakesTheStageOfASignedPullRequestEventAndPassesItOnVerbatim(t *testing.T) {
	var got []forge.Event
	var forwarded []bool
	var peer *httptest.Server
	notify := func(ctx context.Context, ev forge.Event, d Delivery) ([]string, error) {
		got = append(got, ev)
		forwarded = append(forwarded, Forwarded(ctx))
		if Forwarded(ctx) {
			return []string{"staging"}, nil
		}
		// The first replica passes the delivery on, as it came, to another.
		return ForwardForge(ctx, peer.Client(), peer.URL+ForgePath, d)
	}
	h, err := NewForgeHandler("s3cret", notify, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	peer = httptest.NewServer(mux)
	defer peer.Close()

	resp, err := http.DefaultClient.Do(giteaRequest(t, srv.URL+ForgePath, "s3cret", "pull_request", giteaMerged))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a ForgeAnswer
	_ = json.NewDecoder(resp.Body).Decode(&a)
	if resp.StatusCode != http.StatusAccepted || len(a.Stages) != 1 || a.Stages[0] != "staging" {
		t.Fatalf("answer %d %+v", resp.StatusCode, a)
	}
	want := forge.Event{Forge: forge.Gitea, Repo: "team/gitops", Number: 7, Head: "kropipe/staging", Base: "main", Action: "merged"}
	if len(got) != 2 || got[0] != want || got[1] != want || forwarded[0] || !forwarded[1] {
		t.Fatalf("events %+v forwarded %v", got, forwarded)
	}
}

func TestForgeHandler_RefusesABadSignatureAndIgnoresOtherEvents(t *testing.T) {
	called := 0
	h, err := NewForgeHandler("s3cret", func(context.Context, forge.Event, Delivery) ([]string, error) {
		called++
		return nil, nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, secret, event string
		code                int
	}{
		{"wrong secret", "guess", "pull_request", http.StatusUnauthorized},
		{"a push event", "s3cret", "push", http.StatusAccepted},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, giteaRequest(t, "http://x"+ForgePath, tt.secret, tt.event, giteaMerged))
		if rec.Code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.code)
		}
	}
	if called != 0 {
		t.Fatalf("notify called %d times", called)
	}
	if _, err := NewForgeHandler(" ", nil, nil); err == nil {
		t.Fatal("an empty secret was accepted")
	}
}
