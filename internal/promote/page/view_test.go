package page

import (
	"html/template"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestCommitURL_KnownForgesOnlyAndNoCredentials(t *testing.T) {
	const c = "0123456789abcdef0123456789abcdef01234567"
	for repo, want := range map[string]string{
		"https://github.com/acme/gitops.git":                       "https://github.com/acme/gitops/commit/" + c,
		"https://x-access-token:ghp_secret@github.com/acme/gitops": "https://github.com/acme/gitops/commit/" + c,
		"git@github.com:acme/gitops.git":                           "https://github.com/acme/gitops/commit/" + c,
		"ssh://git@gitlab.com/group/sub/gitops.git":                "https://gitlab.com/group/sub/gitops/-/commit/" + c,
		"https://gitlab.example.com/group/gitops":                  "https://gitlab.example.com/group/gitops/-/commit/" + c, // self-hosted, named gitlab.*
		"https://git.acme.io/group/gitops":                         "",                                                      // an unknown forge: no guess
		"https://gitea.acme.io/org/gitops.git":                     "https://gitea.acme.io/org/gitops/commit/" + c,
		"https://codeberg.org/org/gitops":                          "https://codeberg.org/org/gitops/commit/" + c,
		"https://user:app-password@bitbucket.org/team/gitops.git":  "https://bitbucket.org/team/gitops/commits/" + c,
		"http://127.0.0.1:3000/gitops.git":                         "",
		"https://github.com/":                                      "",
		"file:///srv/git/gitops.git":                               "",
	} {
		if got := commitURL(repo, c); got != want {
			t.Errorf("commitURL(%q) = %q, want %q", repo, got, want)
		}
	}
	if got := commitURL("https://github.com/acme/gitops", "not-a-sha"); got != "" {
		t.Errorf("a commit that is not hex made a link: %s", got)
	}
}

func TestLanes_FollowTheUpstreamGraph(t *testing.T) {
	sts := []stage.Status{
		{Name: "develop-frontend", Image: "registry.example.com/team/frontend"},
		{Name: "develop-backend", Image: "registry.example.com/team/backend"},
		{Name: "staging-frontend", Image: "registry.example.com/team/frontend", Upstream: "develop-frontend"},
		{Name: "prod-frontend", Image: "registry.example.com/team/frontend", Upstream: "staging-frontend"},
		{Name: "prod-eu-frontend", Image: "registry.example.com/team/frontend", Upstream: "staging-frontend"},
		{Name: "broken", Decision: stage.DecisionFailed, Error: "kropipe.io/image is missing"},
	}
	ls := lanes(cards(sts, nil, false))
	got := map[string][][]string{}
	var order []string
	for _, l := range ls {
		order = append(order, l.Name)
		for _, col := range l.Columns {
			var names []string
			for _, c := range col {
				names = append(names, c.Name)
			}
			got[l.Name] = append(got[l.Name], names)
		}
	}
	if want := []string{"team/frontend", "team/backend", "broken"}; len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("lanes %v, want %v", order, want)
	}
	front := got["team/frontend"]
	if len(front) != 3 || front[0][0] != "develop-frontend" || front[1][0] != "staging-frontend" ||
		len(front[2]) != 2 || front[2][0] != "prod-frontend" || front[2][1] != "prod-eu-frontend" {
		t.Fatalf("frontend lane columns %v", front)
	}
	if c := ls[2].Columns[0][0]; len(c.Problems) != 1 {
		t.Fatalf("the broken stage's card does not show its problem: %+v", c)
	}
	leaky := []stage.Status{{Name: "develop-frontend", Decision: stage.DecisionFailed,
		Reason: "fetching https://bot:hunter2@git.example.com/gitops.git: 403", Error: "fetching https://bot:hunter2@git.example.com/gitops.git: 403",
		Warnings: []string{"pushing to https://ghp_token@github.com/acme/gitops.git was slow"},
		Owed:     []stage.OwedAction{{Kind: "rollback", From: "1.2.2", Attempts: 1, LastError: "pushing main to https://bot:hunter2@git.example.com/gitops.git: pre-receive hook declined"}}}}
	unsigned := cards([]stage.Status{{Name: "develop-frontend", Skipped: []string{"1.2.3: no signature by key SHA256:ab"}}}, nil, false)[0]
	if len(unsigned.Skipped) != 1 || unsigned.Skipped[0] != "1.2.3: no signature by key SHA256:ab" {
		t.Errorf("the card does not say why 1.2.3 waits: %q", unsigned.Skipped)
	}
	c := cards(leaky, nil, false)[0]
	if len(c.Owed) != 1 || !strings.Contains(c.Owed[0], "rollback from 1.2.2 owed") || !strings.Contains(c.Owed[0], "pre-receive hook declined") {
		t.Errorf("the card does not show the owed rollback: %q", c.Owed)
	}
	for _, text := range append(append(append([]string{c.Reason}, c.Problems...), c.Warnings...), c.Owed...) {
		if strings.Contains(text, "hunter2") || strings.Contains(text, "ghp_token") {
			t.Errorf("a credential reaches the card: %s", text)
		}
	}
}

func TestCard_ShowsTheDryAndTheHydratedCommit(t *testing.T) {
	tmpl := template.Must(template.New("page").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))
	const dry, hyd, older = "5e6f7a8eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee2", "1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d", "0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d"
	tests := []struct {
		name string
		h    stage.Hydration
		want string
	}{
		{"hydrated", stage.Hydration{Phase: "Hydrated", DryCommit: dry, HydratedCommit: hyd, SyncBranch: "environments/develop"},
			`<dt>hydrated</dt><dd class="hydration y-hydrated"><code>1d1d1d1</code> on environments/develop from dry <code>5e6f7a8</code> (hydrated)</dd>`},
		{"failed", stage.Hydration{Phase: "Failed", DryCommit: dry, LastHydratedCommit: older, SyncBranch: "environments/develop", Message: "Failed to hydrate: https://kropipe:s3cret@git.example.com/gitops.git: bad"},
			`<code>0d0d0d0</code> on environments/develop from dry <code>5e6f7a8</code> (failed): Failed to hydrate: https://kropipe:***@git.example.com/gitops.git: bad`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := cards([]stage.Status{{Name: "develop-frontend", Sync: &stage.SyncStatus{Revision: hyd, Status: "Synced", Health: "Healthy", Hydration: &tt.h}}}, nil, false)
			var b strings.Builder
			if err := tmpl.ExecuteTemplate(&b, "card", cs[0]); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tt.want) {
				t.Fatalf("card\n%s\nlacks %s", b.String(), tt.want)
			}
			if strings.Contains(b.String(), "s3cret") {
				t.Fatal("a credential reached the card")
			}
		})
	}
}
