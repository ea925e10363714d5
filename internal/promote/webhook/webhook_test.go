package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse_RegistryFormats(t *testing.T) {
	tests := []struct {
		file string
		want []Push
	}{
		{"distribution.json", []Push{{Repository: "registry.example.com/team/frontend", Tag: "1.2.2", Digest: "sha256:64343275da24356cf9213825814454ea915054612d53dec2a6a8b9be38280d1d"}}},
		{"harbor.json", []Push{{Repository: "harbor.example.com/team/frontend", Tag: "1.2.2"}}},
		{"dockerhub.json", []Push{{Repository: "index.docker.io/team/frontend", Tag: "1.2.2"}}},
		{"quay.json", []Push{{Repository: "quay.io/team/frontend", Tag: "1.2.2"}, {Repository: "quay.io/team/frontend", Tag: "latest"}}},
		{"github.json", []Push{{Repository: "ghcr.io/team/frontend", Tag: "1.2.2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParse_PlainImagesAndBadInput(t *testing.T) {
	got, err := Parse([]byte(`{"images": ["127.0.0.1:5000/team/frontend:1.2.2", "nginx", "ghcr.io/team/x@sha256:` + strings.Repeat("a", 64) + `"]}`))
	want := []Push{
		{Repository: "127.0.0.1:5000/team/frontend", Tag: "1.2.2"},
		{Repository: "index.docker.io/library/nginx"},
		{Repository: "ghcr.io/team/x", Digest: "sha256:" + strings.Repeat("a", 64)},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse = %+v, %v\nwant %+v", got, err, want)
	}
	for body, wantErr := range map[string]string{
		`not json`:                  "not JSON",
		`{"image": "UPPER/Case:1"}`: `image "UPPER/Case:1"`,
		`{"events":[{"action":"delete","target":{"repository":"team/frontend"}}]}`: ErrNoPush.Error(),
		`{"zen": "GitHub ping"}`: ErrNoPush.Error(),
	} {
		if _, err := Parse([]byte(body)); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", body, err, wantErr)
		}
	}
}

// handler serves the webhook with a notify that records what it was told.
func handler(t *testing.T, notify Notify) *httptest.Server {
	t.Helper()
	h, err := NewHandler("s3cret-webhook", notify, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, body []byte, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHandler_AcceptsEachWayOfSendingTheSecretAndNothingElse(t *testing.T) {
	var told [][]Push
	srv := handler(t, func(_ context.Context, p []Push) ([]string, error) {
		told = append(told, p)
		return []string{"develop-frontend"}, nil
	})
	body, _ := os.ReadFile(filepath.Join("testdata", "distribution.json"))
	mac := hmac.New(sha256.New, []byte("s3cret-webhook"))
	mac.Write(body)
	signature := "sha256=" + hex.EncodeToString(mac.Sum(nil))

	for _, tt := range []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"bearer", Path, map[string]string{"Authorization": "Bearer s3cret-webhook"}, http.StatusAccepted},
		{"bare Authorization (Harbor)", Path, map[string]string{"Authorization": "s3cret-webhook"}, http.StatusAccepted},
		{"GitHub signature", Path, map[string]string{"X-Hub-Signature-256": signature}, http.StatusAccepted},
		{"secret in the path (Docker Hub, Quay)", Path + "/s3cret-webhook", nil, http.StatusAccepted},
		{"no secret", Path, nil, http.StatusUnauthorized},
		{"wrong bearer", Path, map[string]string{"Authorization": "Bearer guess"}, http.StatusUnauthorized},
		{"signature of another body", Path, map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("0", 64)}, http.StatusUnauthorized},
		{"wrong path secret", Path + "/guess", nil, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(told)
			code, answer := post(t, srv.URL+tt.path, body, tt.header)
			if code != tt.want {
				t.Fatalf("status %d %s, want %d", code, answer, tt.want)
			}
			if strings.Contains(answer, "s3cret-webhook") {
				t.Errorf("the answer echoes the secret: %s", answer)
			}
			if accepted := len(told) > before; accepted != (tt.want == http.StatusAccepted) {
				t.Errorf("notify called: %v", accepted)
			}
			if tt.want == http.StatusAccepted {
				var a Answer
				if err := json.Unmarshal([]byte(answer), &a); err != nil || len(a.Stages) != 1 || a.Pushes[0].Tag != "1.2.2" {
					t.Errorf("answer %s (%v)", answer, err)
				}
			}
		})
	}
}

func TestHandler_PingsAreFineBadBodiesAreNamedStandbysAsk503(t *testing.T) {
	srv := handler(t, func(context.Context, []Push) ([]string, error) {
		return nil, errors.Join(ErrUnavailable, errors.New("this replica is standing by; the leader is promoter-a"))
	})
	auth := map[string]string{"Authorization": "Bearer s3cret-webhook"}
	if code, body := post(t, srv.URL+Path, []byte(`{"zen":"ping"}`), auth); code != http.StatusAccepted {
		t.Errorf("ping: %d %s", code, body)
	}
	if code, body := post(t, srv.URL+Path, []byte(`{"image":"not a ref"}`), auth); code != http.StatusBadRequest || !strings.Contains(body, `image \"not a ref\"`) {
		t.Errorf("bad image: %d %s", code, body)
	}
	if code, body := post(t, srv.URL+Path, bytes.Repeat([]byte(" "), maxBody+1), auth); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d %s", code, body)
	}
	if code, body := post(t, srv.URL+Path, []byte(`{"image":"ghcr.io/team/frontend:1.2.2"}`), auth); code != http.StatusServiceUnavailable || !strings.Contains(body, "the leader is promoter-a") {
		t.Errorf("standby: %d %s, want 503 naming the leader", code, body)
	}
	if _, err := NewHandler("  ", nil, nil); err == nil {
		t.Error("an empty secret was accepted")
	}
}

// Forward hands pushes to another promoter's listener with the secret, marked as forwarded so
// that one is never passed on again (two standbys cannot bounce a notification between them).
func TestForward_PassesPushesOnMarkedAsForwarded(t *testing.T) {
	var got []Push
	var forwarded bool
	var leaked bool
	srv := handler(t, func(ctx context.Context, p []Push) ([]string, error) {
		got, forwarded = p, Forwarded(ctx)
		return []string{"develop-frontend"}, nil
	})
	// The secret itself never travels: an eavesdropper (or a wrong address) learns nothing.
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		for _, v := range r.Header {
			leaked = leaked || strings.Contains(strings.Join(v, " "), "s3cret-webhook")
		}
		leaked = leaked || bytes.Contains(b, []byte("s3cret-webhook"))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer spy.Close()
	if _, err := Forward(context.Background(), http.DefaultClient, spy.URL+Path, "s3cret-webhook", []Push{{Repository: "ghcr.io/team/frontend"}}); err == nil || leaked {
		t.Fatalf("Forward to a spy: err %v, secret leaked %v", err, leaked)
	}
	pushes := []Push{{Repository: "ghcr.io/team/frontend", Tag: "1.2.2"}, {Repository: "ghcr.io/team/backend", Digest: "sha256:" + strings.Repeat("b", 64)}}
	stages, err := Forward(context.Background(), http.DefaultClient, srv.URL+Path, "s3cret-webhook", pushes)
	if err != nil || !reflect.DeepEqual(stages, []string{"develop-frontend"}) {
		t.Fatalf("Forward = %q, %v", stages, err)
	}
	if !reflect.DeepEqual(got, pushes) || !forwarded {
		t.Fatalf("the receiver got %+v (forwarded %v), want %+v marked forwarded", got, forwarded, pushes)
	}
	if _, err := Forward(context.Background(), http.DefaultClient, srv.URL+Path, "wrong", pushes); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Forward with a wrong secret: %v", err)
	}
}

// The CNCF distribution registry notifies each layer blob (a digest, no tag) before the
// manifest (with its tag): only pushes that may move a tag name a repository to check.
func TestRepositories_LeavesOutPushesThatMoveNoTag(t *testing.T) {
	pushes := []Push{
		{Repository: "r.example.com/team/frontend", Digest: "sha256:" + strings.Repeat("1", 64)},
		{Repository: "r.example.com/team/frontend", Tag: "1.2.2", Digest: "sha256:" + strings.Repeat("2", 64)},
		{Repository: "r.example.com/team/backend"},
	}
	got := Repositories(pushes)
	want := []string{"r.example.com/team/frontend", "r.example.com/team/backend"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Repositories = %q, want %q", got, want)
	}
}
