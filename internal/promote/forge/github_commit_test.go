package forge

import (
	"context"
	"encoding/base64"
	"testing"
)

// CommitFiles against recorded exchanges of GitHub's Git Data API: the content is sent
// byte for byte, the commit carries no author or committer (GitHub signs it for an
// App), and the branch moves without force from the parent only.
func TestGitHub_CommitFiles(t *testing.T) {
	const parent = "7638417db6d59f3c431d3e1f261cc637155684cd"
	const created = "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e"
	content := []byte("image:\n  tag: \"1.2.2\" # kropipe\n\ttabs and trailing space \n")
	start := []exchange{
		{method: "GET", path: githubAPI + "/git/commits/" + parent, file: "github/git-commit-parent.json"},
		{method: "POST", path: githubAPI + "/git/blobs", status: 201, file: "github/git-blob.json"},
		{method: "POST", path: githubAPI + "/git/trees", status: 201, file: "github/git-tree.json"},
		{method: "POST", path: githubAPI + "/git/commits", status: 201, file: "github/git-commit-created.json"},
	}
	tests := []struct {
		name          string
		create, force bool
		last          exchange
		wantErr       error
	}{
		{"moves the branch from the parent", false, false, exchange{method: "PATCH", path: githubAPI + "/git/refs/heads/kropipe/prod", file: "github/git-ref.json"}, nil},
		{"creates the branch", true, false, exchange{method: "POST", path: githubAPI + "/git/refs", status: 201, file: "github/git-ref.json"}, nil},
		{"a branch that moved meanwhile is refused", false, false, exchange{method: "PATCH", path: githubAPI + "/git/refs/heads/kropipe/prod", status: 422, file: "github/error-422-not-fast-forward.json"}, ErrConflict},
		{"force moves kropipe's own branch", false, true, exchange{method: "PATCH", path: githubAPI + "/git/refs/heads/kropipe/prod", file: "github/git-ref.json"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, api := newGitHubForTest(t, append(append([]exchange{}, start...), tt.last)...)
			sha, err := f.(*githubForge).CommitFiles(context.Background(), "kropipe/prod", parent, "Promote image from 1.2.1 to 1.2.2",
				map[string][]byte{"prod/frontend/values.yaml": content}, tt.create, tt.force)
			if tt.wantErr != nil {
				checkForgeError(t, err, tt.wantErr, false, "", 0, testToken)
			} else if err != nil || sha != created {
				t.Fatalf("got %s, %v; want %s", sha, err, created)
			}
			var blob struct{ Content, Encoding string }
			api.sentJSON("POST", githubAPI+"/git/blobs", &blob)
			if got, _ := base64.StdEncoding.DecodeString(blob.Content); blob.Encoding != "base64" || string(got) != string(content) {
				t.Errorf("blob sent %q (%s), want the file byte for byte", got, blob.Encoding)
			}
			var tree struct {
				BaseTree string `json:"base_tree"`
				Tree     []map[string]string
			}
			api.sentJSON("POST", githubAPI+"/git/trees", &tree)
			if tree.BaseTree != "691272480426f78a0138979dd3ce63b77f706feb" || len(tree.Tree) != 1 || tree.Tree[0]["path"] != "prod/frontend/values.yaml" || tree.Tree[0]["sha"] != "3a0f86fb8db8eea7ccbb9a95f325ddbedfb25e15" || tree.Tree[0]["mode"] != "100644" {
				t.Errorf("tree sent %+v", tree)
			}
			var commit map[string]any
			api.sentJSON("POST", githubAPI+"/git/commits", &commit)
			if commit["author"] != nil || commit["committer"] != nil || commit["tree"] != "cd8274d15fa3ae2ab983129fb037999f264ba9a7" || commit["message"] != "Promote image from 1.2.1 to 1.2.2" {
				t.Errorf("commit sent %v, want no author or committer", commit)
			}
			if ps, _ := commit["parents"].([]any); len(ps) != 1 || ps[0] != parent {
				t.Errorf("commit parents %v", commit["parents"])
			}
			var ref map[string]any
			if tt.create {
				api.sentJSON("POST", githubAPI+"/git/refs", &ref)
				if ref["ref"] != "refs/heads/kropipe/prod" || ref["sha"] != created {
					t.Errorf("ref created with %v", ref)
				}
				return
			}
			api.sentJSON("PATCH", githubAPI+"/git/refs/heads/kropipe/prod", &ref)
			if ref["sha"] != created || ref["force"] != tt.force {
				t.Errorf("ref moved with %v, want force %v", ref, tt.force)
			}
		})
	}
}
