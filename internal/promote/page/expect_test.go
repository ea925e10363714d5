package page_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// handEdit commits a change of develop-frontend's tag to value straight to the Git server, as
// a human would: the promoter's status does not know it until its next pass.
func (p *promoter) handEdit(t *testing.T, value string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if err := gitserver.Git(ctx, dir, "clone", "-q", "-b", "main", p.git.URL("gitops.git"), "."); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "develop/frontend/instance.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), `tag: "1.2.2"`, `tag: "`+value+`"`, 1)
	if edited == string(data) {
		t.Fatalf("develop-frontend does not run 1.2.2:\n%s", data)
	}
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"commit", "-qam", "Hotfix by hand"}, {"push", "-q", "origin", "main"}} {
		if err := gitserver.Git(ctx, dir, args...); err != nil {
			t.Fatal(err)
		}
	}
}

// The confirmation page names the value the stage runs; if Git holds another when the button
// is pressed (here a hand-made hotfix the last pass did not see), nothing is written and the
// answer says what the stage runs now — for every action that writes.
func TestPage_ActionOnAStageMovedInGitDoesNothing(t *testing.T) {
	tests := []struct {
		action, value string
	}{
		{"promote", "1.2.1"},
		{"rollback", "1.2.1"},
		{"approve", "1.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			p := startPromoter(t, "")
			v := newVisitor(t, p.url)
			code, html := v.get("/stages/develop-frontend/confirm?action=" + tt.action + "&value=" + tt.value)
			if code != http.StatusOK || !strings.Contains(html, "develop-frontend: 1.2.2 → "+tt.value) {
				t.Fatalf("confirmation: %d\n%s", code, html)
			}
			p.handEdit(t, "1.2.2-hotfix")
			form := url.Values{"csrf": {formToken(t, html)}, "value": {tt.value}, "expect": {"1.2.2"}}
			code, body, _ := v.post("/stages/develop-frontend/"+tt.action, form, nil)
			if code != http.StatusConflict || !strings.Contains(body, "now runs 1.2.2-hotfix, you expected 1.2.2") || !strings.Contains(body, "nothing was done") {
				t.Errorf("%s on a stage moved in Git: %d\n%s", tt.action, code, body)
			}
			if got := p.lastSubject(t); got != "Hotfix by hand" { // an approval commits nothing anyway
				t.Errorf("the hand-made hotfix was overwritten: last commit %q", got)
			}
		})
	}
}
