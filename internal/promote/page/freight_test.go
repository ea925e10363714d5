package page_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// takeToProd approves 1.2.2 for staging-frontend, waits for its commit, then promotes it
// to prod-frontend by hand (past its soak); it returns the three stages' promotion commits.
func takeToProd(t *testing.T, p *promoter) map[string]string {
	t.Helper()
	ctx := context.Background()
	if _, err := p.engine.Approve(ctx, "staging-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	p.engine.Notify(p.registry + "/team/frontend")
	p.waitFor(t, "staging-frontend at 1.2.2", func() bool {
		st, _ := p.engine.StatusOf("staging-frontend")
		return st.CurrentTag == "1.2.2"
	})
	if _, err := p.engine.Promote(ctx, "prod-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	commits := map[string]string{}
	for _, s := range []string{"develop-frontend", "staging-frontend", "prod-frontend"} {
		out, err := gitserver.GitOutput(ctx, p.git.Dir("gitops.git"), "log", "-1", "--format=%h", "--abbrev=7", "main", "--", strings.Replace(s, "-", "/", 1)+"/instance.yaml")
		if err != nil {
			t.Fatal(err)
		}
		commits[s] = strings.TrimSpace(out)
	}
	return commits
}

var journeyRE = regexp.MustCompile(`(?s)<li class="journey-stage[^"]*" id="journey-([^"]+)">(.*?)</li>\n?</ul>`)

// From develop-frontend's value a link leads to the freight page of 1.2.2, which follows it
// through develop → staging → prod: promoted with each stage's commit, verified in develop,
// approved in staging, and running in all three.
func TestPage_FreightPageFollowsATagThroughThePipeline(t *testing.T) {
	p := startPromoter(t, "")
	commits := takeToProd(t, p)
	v := newVisitor(t, p.url)
	_, html := v.get("/")
	m := currentValue.FindStringSubmatch(html)
	if m == nil || m[2] != "1.2.2" {
		t.Fatalf("develop-frontend's value links nowhere: %q", m)
	}
	code, html := v.get(strings.ReplaceAll(m[1], "&amp;", "&"))
	if code != 200 {
		t.Fatalf("GET %s: %d\n%s", m[1], code, html)
	}
	stages := map[string]string{}
	var order []string
	for _, j := range journeyRE.FindAllStringSubmatch(html, -1) {
		stages[j[1]] = j[2]
		order = append(order, j[1])
	}
	if strings.Join(order, " ") != "develop-frontend staging-frontend prod-frontend" {
		t.Fatalf("the journey's stages %v, want develop → staging → prod:\n%s", order, html)
	}
	for s, want := range map[string][]string{
		"develop-frontend": {"runs it", "<strong>promoted</strong> from 1.2.1", "<strong>verified</strong>", commits["develop-frontend"]},
		"staging-frontend": {"runs it", "<strong>approved</strong>", "<strong>promoted</strong> from 1.2.1", commits["staging-frontend"]},
		"prod-frontend":    {"runs it", "<strong>promoted</strong> from 1.2.1", commits["prod-frontend"]},
	} {
		for _, w := range want {
			if !strings.Contains(stages[s], w) {
				t.Errorf("the journey in %s lacks %q:\n%s", s, w, stages[s])
			}
		}
	}
}

// A value no commit names an id for (1.2.1, written into the seed by hand) still has its
// page: /freight/find shows where it runs; a value a commit names redirects to its id.
func TestPage_FreightFindByImageAndValue(t *testing.T) {
	p := startPromoter(t, "")
	v := newVisitor(t, p.url)
	image := p.registry + "/team/frontend"
	code, html := v.get("/freight/find?" + url.Values{"image": {image}, "value": {"1.2.1"}}.Encode())
	if code != http.StatusOK || !strings.Contains(html, `id="journey-staging-frontend"`) || !strings.Contains(html, "runs it") {
		t.Fatalf("the page of 1.2.1: %d\n%s", code, html)
	}
	resp, err := v.c.Get(p.url + "/freight/find?" + url.Values{"image": {image}, "value": {"1.2.2"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !regexp.MustCompile(`^/freight/[0-9a-f]{12}$`).MatchString(loc) {
		t.Fatalf("finding 1.2.2, which develop's commit names: %d %q, want a redirect to its id", resp.StatusCode, loc)
	}
	if code, _ := v.get("/freight/not-an-id"); code != http.StatusBadRequest {
		t.Errorf("GET /freight/not-an-id: %d, want 400", code)
	}
}
