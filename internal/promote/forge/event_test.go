package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// The webhook payloads are recorded deliveries (testdata/*/hook-*.json, see
// testdata/README.md), signed here as each forge signs them.
func TestParseEvent_Signatures(t *testing.T) {
	const secret = "webhook-secret"
	ghBody := recorded(t, "github/hook-pull_request-merged.json")
	gtBody := recorded(t, "gitea/hook-pull_request-merged.json")
	ghPush := recorded(t, "github/hook-push.json")
	github := func(event, sig string) http.Header {
		h := hdr("X-GitHub-Event", event, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "Content-Type", "application/json")
		if sig != "" {
			h.Set("X-Hub-Signature-256", sig)
		}
		return h
	}
	gitea := func(prefix, sig string) http.Header {
		h := hdr("X-Gitea-Event", "pull_request", "X-Gitea-Event-Type", "pull_request", "X-Gitea-Delivery", "0e5f3a4c")
		if prefix == "X-Forgejo-" {
			h.Set("X-Forgejo-Event", "pull_request")
			h.Set("X-Forgejo-Event-Type", "pull_request")
		}
		if sig != "" {
			h.Set(prefix+"Signature", sig)
			h.Set("X-Gitea-Signature", sig)
		}
		return h
	}
	tests := []struct {
		name    string
		h       http.Header
		body    []byte
		secret  string
		want    Event
		wantErr string
		notPR   bool
	}{
		{"github, good signature: merged", github("pull_request", "sha256="+hmacHex(secret, ghBody)), ghBody, secret,
			Event{Forge: GitHub, Repo: "Codertocat/Hello-World", Number: 2, Head: "kropipe/prod", Base: "master", Action: "merged"}, "", false},
		{"github, bad signature", github("pull_request", "sha256="+hmacHex("other", ghBody)), ghBody, secret, Event{}, "signature does not match", false},
		{"github, missing signature", github("pull_request", ""), ghBody, secret, Event{}, "no X-Hub-Signature-256", false},
		{"github, no secret set: not checked", github("pull_request", ""), ghBody, "",
			Event{Forge: GitHub, Repo: "Codertocat/Hello-World", Number: 2, Head: "kropipe/prod", Base: "master", Action: "merged"}, "", false},
		{"github push is not a pull request event", github("push", "sha256="+hmacHex(secret, ghPush)), ghPush, secret, Event{}, "", true},
		{"gitea, good signature: merged", gitea("X-Gitea-", hmacHex(secret, gtBody)), gtBody, secret,
			Event{Forge: Gitea, Repo: "foo/baz", Number: 7, Head: "kropipe/prod", Base: "main", Action: "merged"}, "", false},
		{"gitea, bad signature", gitea("X-Gitea-", hmacHex("other", gtBody)), gtBody, secret, Event{}, "signature does not match", false},
		{"gitea, missing signature", gitea("X-Gitea-", ""), gtBody, secret, Event{}, "no X-Gitea-Signature", false},
		{"forgejo, good signature: merged", gitea("X-Forgejo-", hmacHex(secret, gtBody)), gtBody, secret,
			Event{Forge: Forgejo, Repo: "foo/baz", Number: 7, Head: "kropipe/prod", Base: "main", Action: "merged"}, "", false},
		{"forgejo, bad signature", gitea("X-Forgejo-", "00"+hmacHex(secret, gtBody)[2:]), gtBody, secret, Event{}, "signature does not match", false},
		{"no forge's headers", hdr("Content-Type", "application/json"), ghBody, secret, Event{}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvent(tt.h, tt.body, tt.secret)
			switch {
			case tt.notPR:
				if !errors.Is(err, ErrNotPullRequestEvent) {
					t.Fatalf("err %v, want ErrNotPullRequestEvent", err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrNotPullRequestEvent) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				noSecret(t, err, tt.secret)
			case err != nil:
				t.Fatal(err)
			case got != tt.want:
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
