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

// A rollback from the page records the name of the token its session logged in with.
func TestPage_ActionsRecordTheLoginsTokenName(t *testing.T) {
	p := startPromoter(t, "alice: a1ice-s3cret\nbob: b0b-s3cret\n")
	v := newVisitor(t, p.url)
	login(t, v, "b0b-s3cret")
	_, html := v.get("/stages/develop-frontend/confirm?action=rollback")
	code, body, _ := v.post("/stages/develop-frontend/rollback", url.Values{"csrf": {formToken(t, html)}, "expect": {"1.2.2"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("rollback: %d %.300s", code, body)
	}
	out, err := gitserver.GitOutput(context.Background(), p.git.Dir("gitops.git"), "log", "-1", "--format=%s%n%(trailers:key=Kropipe-Requested-By,valueonly)", "main")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "Roll back image from 1.2.2 to 1.2.1\nbob" {
		t.Fatalf("the page's rollback commit:\n%s\nwant it requested by bob", got)
	}
	// Who asked shows where people look: the stage's history and the freight's journey.
	_, stagePage := v.get("/stages/develop-frontend")
	if !strings.Contains(stagePage, `<span class="who">bob</span>`) {
		t.Errorf("the stage's history does not say bob asked for the rollback")
	}
	if !strings.Contains(stagePage, `<span class="auto">kropipe</span>`) {
		t.Errorf("the stage's history does not say kropipe made the automatic promotion")
	}
	_, found := v.get("/freight/find?" + url.Values{"image": {p.registry + "/team/frontend"}, "value": {"1.2.2"}}.Encode())
	id := regexp.MustCompile(`href="(/freight/[0-9a-f]+)"`).FindStringSubmatch(found)
	if id == nil {
		t.Fatalf("/freight/find does not lead to the freight page of 1.2.2:\n%.500s", found)
	}
	_, journey := v.get(id[1])
	if !strings.Contains(journey, "requested by bob") {
		t.Errorf("the journey of 1.2.2 does not say bob rolled it back:\n%.2000s", journey)
	}
}
