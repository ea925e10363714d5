package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// Webhook deliveries as GitLab and Bitbucket Cloud send them: their recorded bodies
// (testdata/README.md) with the headers each forge sets.

func TestParseGitLabEvent_ReadsMergeRequestHooksWithTheirSecret(t *testing.T) {
	mr := webhookBody(t, "gitlab/webhook_merge_request.json")
	push := webhookBody(t, "gitlab/webhook_push.json")
	tests := []struct {
		name    string
		header  map[string]string
		body    []byte
		secret  string
		wantOK  bool
		wantErr bool
		want    Event
	}{
		{
			name: "merge request hook, secret matches", secret: "s3cret-hook", body: mr, wantOK: true,
			header: map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": "s3cret-hook"},
			want:   Event{Forge: GitLab, Repo: "gitlabhq/gitlab-test", Number: 1, Head: "ms-viewport", Base: "master", Action: "open"},
		},
		{
			name: "no secret configured", body: mr, wantOK: true,
			header: map[string]string{"X-Gitlab-Event": "Merge Request Hook"},
			want:   Event{Forge: GitLab, Repo: "gitlabhq/gitlab-test", Number: 1, Head: "ms-viewport", Base: "master", Action: "open"},
		},
		{
			name: "wrong secret", secret: "s3cret-hook", body: mr, wantOK: true, wantErr: true,
			header: map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": "guess"},
		},
		{
			name: "secret missing", secret: "s3cret-hook", body: mr, wantOK: true, wantErr: true,
			header: map[string]string{"X-Gitlab-Event": "Merge Request Hook"},
		},
		{
			name: "push hook: GitLab's, nothing to wake", body: push, wantOK: true,
			header: map[string]string{"X-Gitlab-Event": "Push Hook"},
			want:   Event{Forge: GitLab, Repo: "mike/diaspora", Action: "Push Hook"},
		},
		{
			name: "another forge's delivery", body: mr,
			header: map[string]string{"X-GitHub-Event": "pull_request"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			ev, ok, err := parseGitLabEvent(h, tt.body, tt.secret)
			if ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Fatalf("ok %v err %v, want ok %v err %v", ok, err, tt.wantOK, tt.wantErr)
			}
			if err == nil && ev != tt.want {
				t.Errorf("got %+v\nwant %+v", ev, tt.want)
			}
		})
	}
}

func TestParseBitbucketEvent_ReadsPullRequestHooksWithTheirSignature(t *testing.T) {
	fulfilled := webhookBody(t, "bitbucket/webhook_pullrequest_fulfilled.json")
	push := webhookBody(t, "bitbucket/webhook_repo_push.json")
	sign := func(body []byte, secret string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	merged := Event{Forge: Bitbucket, Repo: "kropipe/gitops", Number: 7, Head: "kropipe/prod-frontend", Base: "prod", Action: "fulfilled"}
	tests := []struct {
		name    string
		header  map[string]string
		body    []byte
		secret  string
		wantOK  bool
		wantErr bool
		want    Event
	}{
		{
			name: "pullrequest:fulfilled, signed", secret: "s3cret-hook", body: fulfilled, wantOK: true,
			header: map[string]string{"X-Event-Key": "pullrequest:fulfilled", "X-Hub-Signature": sign(fulfilled, "s3cret-hook")},
			want:   merged,
		},
		{
			name: "no secret configured", body: fulfilled, wantOK: true,
			header: map[string]string{"X-Event-Key": "pullrequest:fulfilled"},
			want:   merged,
		},
		{
			name: "signed with another secret", secret: "s3cret-hook", body: fulfilled, wantOK: true, wantErr: true,
			header: map[string]string{"X-Event-Key": "pullrequest:fulfilled", "X-Hub-Signature": sign(fulfilled, "guess")},
		},
		{
			name: "unsigned", secret: "s3cret-hook", body: fulfilled, wantOK: true, wantErr: true,
			header: map[string]string{"X-Event-Key": "pullrequest:fulfilled"},
		},
		{
			name: "body changed after signing", secret: "s3cret-hook", body: append([]byte(" "), fulfilled...), wantOK: true, wantErr: true,
			header: map[string]string{"X-Event-Key": "pullrequest:fulfilled", "X-Hub-Signature": sign(fulfilled, "s3cret-hook")},
		},
		{
			name: "repo:push: Bitbucket's, nothing to wake", body: push, wantOK: true,
			header: map[string]string{"X-Event-Key": "repo:push"},
			want:   Event{Forge: Bitbucket, Repo: "kropipe/gitops", Action: "repo:push"},
		},
		{
			name: "another forge's delivery", body: fulfilled,
			header: map[string]string{"X-Gitlab-Event": "Merge Request Hook"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			ev, ok, err := parseBitbucketEvent(h, tt.body, tt.secret)
			if ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Fatalf("ok %v err %v, want ok %v err %v", ok, err, tt.wantOK, tt.wantErr)
			}
			if err == nil && ev != tt.want {
				t.Errorf("got %+v\nwant %+v", ev, tt.want)
			}
		})
	}
}

func webhookBody(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
