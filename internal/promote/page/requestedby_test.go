package page_test

import (
	"context"
	"net/http"
	"net/url"
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
}
