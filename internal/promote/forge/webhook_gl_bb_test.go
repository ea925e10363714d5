package forge

import (
	"net/http"
	"testing"
)

// Webhook deliveries as GitLab and Bitbucket Cloud send them: their recorded bodies
// (testdata/README.md) with the headers each forge sets.

func TestParseGitLabEvent_ReadsMergeRequestHooksWithTheirSecret(t *testing.T) {
	mr := recorded(t, "gitlab/webhook_merge_request.json")
	push := recorded(t, "gitlab/webhook_push.json")
	checkHookParser(t, parseGitLabEvent, []hookCase{
		{
			name: "merge request hook, secret matches", secret: "s3cret-hook", body: mr, wantOK: true,
			header: hdr("X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Token", "s3cret-hook"),
			want:   Event{Forge: GitLab, Repo: "gitlabhq/gitlab-test", Number: 1, Head: "ms-viewport", Base: "master", Action: "open"},
		},
		{
			name: "no secret configured", body: mr, wantOK: true,
			header: hdr("X-Gitlab-Event", "Merge Request Hook"),
			want:   Event{Forge: GitLab, Repo: "gitlabhq/gitlab-test", Number: 1, Head: "ms-viewport", Base: "master", Action: "open"},
		},
		{
			name: "wrong secret", secret: "s3cret-hook", body: mr, wantOK: true, wantErr: true,
			header: hdr("X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Token", "guess"),
		},
		{
			name: "secret missing", secret: "s3cret-hook", body: mr, wantOK: true, wantErr: true,
			header: hdr("X-Gitlab-Event", "Merge Request Hook"),
		},
		{
			name: "push hook: GitLab's, nothing to wake", body: push, wantOK: true,
			header: hdr("X-Gitlab-Event", "Push Hook"),
			want:   Event{Forge: GitLab, Repo: "mike/diaspora", Action: "Push Hook"},
		},
		{
			name: "another forge's delivery", body: mr,
			header: hdr("X-GitHub-Event", "pull_request"),
		},
	})
}

func TestParseBitbucketEvent_ReadsPullRequestHooksWithTheirSignature(t *testing.T) {
	fulfilled := recorded(t, "bitbucket/webhook_pullrequest_fulfilled.json")
	push := recorded(t, "bitbucket/webhook_repo_push.json")
	merged := Event{Forge: Bitbucket, Repo: "kropipe/gitops", Number: 7, Head: "kropipe/prod-frontend", Base: "prod", Action: "fulfilled"}
	checkHookParser(t, parseBitbucketEvent, []hookCase{
		{
			name: "pullrequest:fulfilled, signed", secret: "s3cret-hook", body: fulfilled, wantOK: true,
			header: hdr("X-Event-Key", "pullrequest:fulfilled", "X-Hub-Signature", "sha256="+hmacHex("s3cret-hook", fulfilled)),
			want:   merged,
		},
		{
			name: "no secret configured", body: fulfilled, wantOK: true,
			header: hdr("X-Event-Key", "pullrequest:fulfilled"),
			want:   merged,
		},
		{
			name: "signed with another secret", secret: "s3cret-hook", body: fulfilled, wantOK: true, wantErr: true,
			header: hdr("X-Event-Key", "pullrequest:fulfilled", "X-Hub-Signature", "sha256="+hmacHex("guess", fulfilled)),
		},
		{
			name: "unsigned", secret: "s3cret-hook", body: fulfilled, wantOK: true, wantErr: true,
			header: hdr("X-Event-Key", "pullrequest:fulfilled"),
		},
		{
			name: "body changed after signing", secret: "s3cret-hook", body: append([]byte(" "), fulfilled...), wantOK: true, wantErr: true,
			header: hdr("X-Event-Key", "pullrequest:fulfilled", "X-Hub-Signature", "sha256="+hmacHex("s3cret-hook", fulfilled)),
		},
		{
			name: "repo:push: Bitbucket's, nothing to wake", body: push, wantOK: true,
			header: hdr("X-Event-Key", "repo:push"),
			want:   Event{Forge: Bitbucket, Repo: "kropipe/gitops", Action: "repo:push"},
		},
		{
			name: "another forge's delivery", body: fulfilled,
			header: hdr("X-Gitlab-Event", "Merge Request Hook"),
		},
	})
}

// hookCase is a webhook delivery and what a forge's parser makes of it.
type hookCase struct {
	name    string
	header  http.Header
	body    []byte
	secret  string
	wantOK  bool
	wantErr bool
	want    Event
}

func checkHookParser(t *testing.T, parse func(http.Header, []byte, string) (Event, bool, error), tests []hookCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, ok, err := parse(tt.header, tt.body, tt.secret)
			if ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Fatalf("ok %v err %v, want ok %v err %v", ok, err, tt.wantOK, tt.wantErr)
			}
			if err == nil && ev != tt.want {
				t.Errorf("got %+v\nwant %+v", ev, tt.want)
			}
			if tt.secret != "" {
				noSecret(t, err, tt.secret)
			}
		})
	}
}
