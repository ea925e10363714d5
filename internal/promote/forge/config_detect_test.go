package forge

import (
	"errors"
	"strings"
	"testing"
)

func TestDetect_FromRepositoryURL(t *testing.T) {
	tests := []struct {
		url  string
		kind Kind
		repo Repo
	}{
		{"https://github.com/acme/deploy.git", GitHub, Repo{Host: "github.com", Scheme: "https", Path: "acme/deploy"}},
		{"git@github.com:acme/deploy.git", GitHub, Repo{Host: "github.com", Scheme: "https", Path: "acme/deploy"}},
		{"ssh://git@github.com:22/acme/deploy.git", GitHub, Repo{Host: "github.com", Scheme: "https", Path: "acme/deploy"}},
		{"https://github.acme.example/platform/deploy", GitHub, Repo{Host: "github.acme.example", Scheme: "https", Path: "platform/deploy"}},
		{"https://acme.ghe.com/platform/deploy.git", GitHub, Repo{Host: "acme.ghe.com", Scheme: "https", Path: "platform/deploy"}},
		{"https://gitlab.com/acme/deploy.git", GitLab, Repo{Host: "gitlab.com", Scheme: "https", Path: "acme/deploy"}},
		{"https://gitlab.acme.example/group/sub/deploy.git", GitLab, Repo{Host: "gitlab.acme.example", Scheme: "https", Path: "group/sub/deploy"}},
		{"git@gitlab.acme.example:group/sub/team/deploy.git", GitLab, Repo{Host: "gitlab.acme.example", Scheme: "https", Path: "group/sub/team/deploy"}},
		{"https://bitbucket.org/acme/deploy.git", Bitbucket, Repo{Host: "bitbucket.org", Scheme: "https", Path: "acme/deploy"}},
		{"git@bitbucket.org:acme/deploy.git", Bitbucket, Repo{Host: "bitbucket.org", Scheme: "https", Path: "acme/deploy"}},
		{"https://codeberg.org/acme/deploy.git", Forgejo, Repo{Host: "codeberg.org", Scheme: "https", Path: "acme/deploy"}},
		{"https://forgejo.acme.example/acme/deploy", Forgejo, Repo{Host: "forgejo.acme.example", Scheme: "https", Path: "acme/deploy"}},
		{"https://gitea.com/acme/deploy.git", Gitea, Repo{Host: "gitea.com", Scheme: "https", Path: "acme/deploy"}},
		{"http://gitea.test:3000/acme/deploy.git", Gitea, Repo{Host: "gitea.test:3000", Scheme: "http", Path: "acme/deploy"}},
		{"ssh://git@gitea.acme.example:2222/acme/deploy.git", Gitea, Repo{Host: "gitea.acme.example", Scheme: "https", Path: "acme/deploy"}},
		{"https://user:secret@gitea.acme.example/acme/deploy.git", Gitea, Repo{Host: "gitea.acme.example", Scheme: "https", Path: "acme/deploy"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			kind, err := Detect(tt.url)
			if err != nil || kind != tt.kind {
				t.Errorf("Detect = %s, %v; want %s", kind, err, tt.kind)
			}
			repo, err := ParseRepo(tt.url)
			if err != nil || repo != tt.repo {
				t.Errorf("ParseRepo = %+v, %v; want %+v", repo, err, tt.repo)
			}
		})
	}
}

func TestDetect_UnknownHostSaysToSetTheForge(t *testing.T) {
	for _, url := range []string{"https://git.acme.example/acme/deploy.git", "https://user:s3cret@git.acme.example/acme/deploy.git", "git@10.0.0.7:acme/deploy.git"} {
		_, err := Detect(url)
		if !errors.Is(err, ErrUnknownForge) || !strings.Contains(err.Error(), "kropipe.io/forge") {
			t.Errorf("%s: err %v, want ErrUnknownForge saying to set kropipe.io/forge", url, err)
		}
		noSecret(t, err, "s3cret") // the URL's password
		if _, err := New(url, Config{}); !errors.Is(err, ErrUnknownForge) {
			t.Errorf("New(%s): err %v, want ErrUnknownForge", url, err)
		}
	}
}

func TestParseRepo_RefusesURLsWithoutOwnerAndName(t *testing.T) {
	for _, url := range []string{"https://github.com/acme", "github.com/acme/deploy", "https://github.com/"} {
		if _, err := ParseRepo(url); err == nil {
			t.Errorf("%s: no error", url)
		}
	}
}
