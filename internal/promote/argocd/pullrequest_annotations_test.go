package argocd

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestDerive_PullRequestModeFromAnnotations(t *testing.T) {
	// The ApplicationSet gives every member the forge and merge settings; only prod opens
	// pull requests, and develop (which pushes) is not blamed for what it inherited.
	set := appset("services", map[string]string{AnnForge: "gitea", AnnForgeAPIURL: "https://git.example.com/api/v1", AnnMerge: "auto"})
	apps := []*unstructured.Unstructured{
		ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "services"),
		ownedBy(app("prod-frontend", "prod/frontend", map[string]string{
			AnnImage: img("frontend"), AnnWrite: "pull-request", AnnMergeMethod: "squash",
			AnnPullRequestBranch: "promote/{{.Stage}}", AnnPullRequestLabels: "promotion, prod", AnnPullRequestReviewers: "alice,org/sre",
		}), "services"),
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set})
	if len(cfg.Problems) != 0 {
		t.Fatalf("problems %v", cfg.Problems)
	}
	got := map[string]stage.Spec{}
	for _, s := range cfg.Specs {
		got[s.Name] = s
	}
	if d := got["develop-frontend"]; d.Write != stage.WritePush || !reflect.DeepEqual(d.PullRequest, stage.PullRequestSpec{}) {
		t.Fatalf("develop-frontend pushes and carries no pull-request settings: %+v", d)
	}
	want := stage.PullRequestSpec{Branch: "promote/{{.Stage}}", Merge: "auto", Method: "squash", Labels: []string{"promotion", "prod"}, Reviewers: []string{"alice", "org/sre"}, Forge: "gitea", ForgeAPIURL: "https://git.example.com/api/v1"}
	if p := got["prod-frontend"]; p.Write != stage.WritePullRequest || !reflect.DeepEqual(p.PullRequest, want) {
		t.Fatalf("prod-frontend\n got %q %+v\nwant %+v", p.Write, p.PullRequest, want)
	}
	if b, err := got["prod-frontend"].PullRequestBranch(""); err != nil || b != "promote/prod-frontend" {
		t.Fatalf("branch %q, %v", b, err)
	}
}

func TestDerive_BadPullRequestAnnotationsAreProblemsNamingTheAnnotation(t *testing.T) {
	tests := []struct {
		name  string
		ann   map[string]string
		field string
		want  []string
	}{
		{"unknown write mode", map[string]string{AnnWrite: "merge-request"}, AnnWrite, []string{`"merge-request" is not a write mode`, "pull-request"}},
		{"merge on a pushing stage", map[string]string{AnnMerge: "auto"}, AnnMerge, []string{"set kropipe.io/write: pull-request"}},
		{"reviewers on a pushing stage", map[string]string{AnnWrite: "push", AnnPullRequestReviewers: "alice"}, AnnPullRequestReviewers, []string{"set kropipe.io/write: pull-request"}},
		{"unknown merge mode", map[string]string{AnnWrite: "pull-request", AnnMerge: "yes"}, AnnMerge, []string{`"yes" is not a merge mode`, "manual", "auto"}},
		{"unknown merge method", map[string]string{AnnWrite: "pull-request", AnnMergeMethod: "ff"}, AnnMergeMethod, []string{`"ff" is not a merge method`}},
		{"branch equal to the target", map[string]string{AnnWrite: "pull-request", AnnPullRequestBranch: "main"}, AnnPullRequestBranch, []string{"the branch the stage deploys from"}},
		{"branch template that does not parse", map[string]string{AnnWrite: "pull-request", AnnPullRequestBranch: "kropipe/{{.Stage"}, AnnPullRequestBranch, []string{"not a template"}},
		{"unknown forge", map[string]string{AnnWrite: "pull-request", AnnForge: "gogs"}, AnnForge, []string{`unknown forge "gogs"`}},
		{"forge API URL without scheme", map[string]string{AnnWrite: "pull-request", AnnForgeAPIURL: "git.example.com"}, AnnForgeAPIURL, []string{"not an http(s) URL"}},
		{"misspelt annotation", map[string]string{AnnWrite: "pull-request", "kropipe.io/merge-methd": "squash"}, "kropipe.io/merge-methd", []string{"did you mean kropipe.io/merge-method?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ann := map[string]string{AnnImage: img("frontend")}
			for k, v := range tt.ann {
				ann[k] = v
			}
			cfg := Derive([]*unstructured.Unstructured{app("prod-frontend", "prod/frontend", ann)}, nil)
			if len(cfg.Specs) != 0 {
				t.Fatalf("a stage with a problem runs: %+v", cfg.Specs)
			}
			var found bool
			for _, p := range cfg.Problems {
				if p.Field != tt.field || p.Stage != "prod-frontend" {
					continue
				}
				found = true
				for _, w := range tt.want {
					if !strings.Contains(p.Error(), w) {
						t.Errorf("problem %q does not contain %q", p.Error(), w)
					}
				}
			}
			if !found {
				t.Fatalf("no problem on %s: %v", tt.field, cfg.Problems)
			}
		})
	}
}

func TestDerive_ReleaseGroupMembersMustAgreeOnWriteSettings(t *testing.T) {
	member := func(name, service string, more map[string]string) *unstructured.Unstructured {
		ann := map[string]string{AnnImage: img(service), AnnGroup: "prod/shop"}
		for k, v := range more {
			ann[k] = v
		}
		return app(name, "prod/"+service, ann)
	}
	pr := map[string]string{AnnWrite: "pull-request", AnnMerge: "auto"}
	tests := []struct {
		name  string
		other map[string]string // the second member's annotations; the first has pr
		field string            // "" when they agree
	}{
		{"same settings", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto"}, ""},
		{"defaults written out agree with defaults left out", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnMergeMethod: "merge", AnnPullRequestBranch: stage.DefaultPullRequestBranch}, ""},
		{"labels may differ", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnPullRequestLabels: "backend"}, ""},
		{"one pushes", map[string]string{}, AnnWrite},
		{"merge differs", map[string]string{AnnWrite: "pull-request"}, AnnMerge},
		{"method differs", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnMergeMethod: "squash"}, AnnMergeMethod},
		{"branch differs", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnPullRequestBranch: "shop/{{.Stage}}"}, AnnPullRequestBranch},
		{"forge differs", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnForge: "gitlab"}, AnnForge},
		{"forge API URL differs", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnForgeAPIURL: "https://git.example.com/api/v4"}, AnnForgeAPIURL},
		{"commit-via git written out agrees with it left out", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnCommitVia: "git"}, ""},
		{"commit-via differs", map[string]string{AnnWrite: "pull-request", AnnMerge: "auto", AnnCommitVia: "github-api"}, AnnCommitVia},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Derive([]*unstructured.Unstructured{member("prod-backend", "backend", pr), member("prod-frontend", "frontend", tt.other)}, nil)
			if len(cfg.Groups) != 1 {
				t.Fatalf("groups %+v", cfg.Groups)
			}
			g := cfg.Groups[0]
			if tt.field == "" {
				if g.Problem != "" {
					t.Fatalf("agreeing members held: %s", g.Problem)
				}
				return
			}
			if !strings.Contains(g.Problem, "members disagree on "+tt.field+":") {
				t.Fatalf("group problem %q does not name %s", g.Problem, tt.field)
			}
			var warned bool
			for _, w := range cfg.Warnings {
				warned = warned || (w.Stage == "prod-frontend" && w.Field == tt.field)
			}
			if !warned {
				t.Fatalf("no warning naming %s on the disagreeing Application: %+v", tt.field, cfg.Warnings)
			}
		})
	}
}

func TestDerive_CommitViaGitHubAPIFromAnnotations(t *testing.T) {
	// The ApplicationSet names the forge (a GitHub Enterprise host the URL does not show):
	// a member committing through the API reads it although it pushes; one that commits
	// with git does not, and is not blamed for it.
	set := appset("services", map[string]string{AnnForge: "github", AnnForgeAPIURL: "https://git.example.com/api/v3"})
	apps := []*unstructured.Unstructured{
		ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "services"),
		ownedBy(app("prod-frontend", "prod/frontend", map[string]string{AnnImage: img("frontend"), AnnCommitVia: "github-api"}), "services"),
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set})
	if len(cfg.Problems) != 0 {
		t.Fatalf("problems %v", cfg.Problems)
	}
	got := map[string]stage.Spec{}
	for _, s := range cfg.Specs {
		got[s.Name] = s
	}
	if d := got["develop-frontend"]; d.CommitVia != "" || d.PullRequest.Forge != "" {
		t.Fatalf("develop-frontend commits with git: %+v", d)
	}
	if p := got["prod-frontend"]; p.Write != stage.WritePush || p.CommitVia != stage.CommitViaGitHubAPI || p.PullRequest.Forge != "github" || p.PullRequest.ForgeAPIURL != "https://git.example.com/api/v3" {
		t.Fatalf("prod-frontend %+v", p)
	}

	for _, tt := range []struct {
		name string
		ann  map[string]string
		want []string
	}{
		{"unknown way to commit", map[string]string{AnnCommitVia: "api"}, []string{`"api" is not a way to commit`, "github-api"}},
		{"a forge that is not GitHub", map[string]string{AnnCommitVia: "github-api", AnnWrite: "pull-request", AnnForge: "gitea"}, []string{"forge is gitea", "remove " + AnnCommitVia}},
		{"a URL that does not show GitHub", map[string]string{AnnCommitVia: "github-api"}, []string{"does not show GitHub", "set " + AnnForge + ": github"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ann := map[string]string{AnnImage: img("frontend")}
			for k, v := range tt.ann {
				ann[k] = v
			}
			cfg := Derive([]*unstructured.Unstructured{app("prod-frontend", "prod/frontend", ann)}, nil)
			var found bool
			for _, p := range cfg.Problems {
				if p.Field == AnnCommitVia && p.Stage == "prod-frontend" {
					found = true
					for _, w := range tt.want {
						if !strings.Contains(p.Error(), w) {
							t.Errorf("problem %q does not contain %q", p.Error(), w)
						}
					}
				}
			}
			if !found || len(cfg.Specs) != 0 {
				t.Fatalf("no problem on %s (specs %d): %v", AnnCommitVia, len(cfg.Specs), cfg.Problems)
			}
		})
	}
}
