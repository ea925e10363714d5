package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// newEngineAt123 is a real engine whose develop-frontend ran 1.2.1, 1.2.2 and now runs 1.2.3,
// each promoted by the engine (so Git history names every previous value), and the Git server.
func newEngineAt123(t *testing.T) (*stage.Engine, *gitserver.Server, string) {
	t.Helper()
	ctx := context.Background()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(ctx, "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2", "1.2.3")
	wh, err := warehouse.New(warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true}), warehouse.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	e, err := stage.New([]stage.Spec{{
		Name: "develop-frontend", Image: host + "/team/frontend", Constraint: "^1.2",
		RepoURL: srv.URL("gitops.git"), File: "develop/frontend/instance.yaml",
	}}, stage.WithWarehouse(wh), stage.WithGit(t.TempDir()), stage.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"1.2.2", "1.2.3"} {
		if _, err := e.Promote(ctx, "develop-frontend", tag); err != nil {
			t.Fatal(err)
		}
	}
	return e, srv, bare
}

// lostAnswer plays a replica that passed an action on to the stage's owner and timed out
// before the owner answered: the owner acts (its work is not cancelled with the caller), the
// caller hears 504.
func lostAnswer(owner http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owner.ServeHTTP(httptest.NewRecorder(), r.WithContext(context.WithoutCancel(r.Context())))
		writeError(w, http.StatusGatewayTimeout, errors.New("the stage's owner did not answer in time"))
	})
}

func rollbacks(t *testing.T, bare string) []string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	var rs []string
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(s, "Roll back") {
			rs = append(rs, s)
		}
	}
	return rs
}

// A rollback whose answer was lost (a forwarded call that timed out while the owner still
// acted) and that the user then retries rolls back once: the retry carries the value the
// user saw (1.2.3), the stage now runs 1.2.2, so the retry is refused with 409 and does
// nothing.
func TestAPI_RetriedRollbackAfterALostAnswerRollsBackOnce(t *testing.T) {
	e, _, bare := newEngineAt123(t)
	owner := New(e, WithLogger(quiet()))
	direct := httptest.NewServer(owner)
	defer direct.Close()
	forwarder := httptest.NewServer(lostAnswer(owner))
	defer forwarder.Close()
	ctx := context.Background()

	seen, err := NewClient(direct.URL, "", nil).Stage(ctx, "develop-frontend")
	if err != nil || seen.CurrentTag != "1.2.3" {
		t.Fatalf("status before: %+v %v", seen, err)
	}
	_, err = NewClient(forwarder.URL, "", nil).Rollback(ctx, "develop-frontend", "", seen.CurrentTag)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusGatewayTimeout {
		t.Fatalf("first attempt: %v; want the lost answer", err)
	}
	out, err := NewClient(direct.URL, "", nil).Rollback(ctx, "develop-frontend", "", seen.CurrentTag)
	if !errors.As(err, &se) || se.Code != http.StatusConflict ||
		!strings.Contains(se.Msg, `stage "develop-frontend" now runs 1.2.2, you expected 1.2.3`) || !strings.Contains(se.Msg, "nothing was done") {
		t.Errorf("retry: %+v, %v; want 409 saying the stage moved and nothing was done", out, err)
	}
	if got := rollbacks(t, bare); len(got) != 1 || got[0] != "Roll back image from 1.2.3 to 1.2.2" {
		t.Errorf("rollback commits %q; want exactly one, 1.2.3 → 1.2.2", got)
	}
}

// Every action carries the value the caller expects the stage to run; when Git holds another
// the action is refused with 409, the message says what the stage runs now, and Git is
// unchanged.
func TestAPI_ActionOnAMovedStageIsRefusedAndDoesNothing(t *testing.T) {
	tests := []struct {
		name string
		act  func(ctx context.Context, c *Client) error
	}{
		{"promote", func(ctx context.Context, c *Client) error {
			_, err := c.Promote(ctx, "develop-frontend", "1.2.1", "1.2.2")
			return err
		}},
		{"promote member alone", func(ctx context.Context, c *Client) error {
			_, err := c.PromoteMember(ctx, "develop-frontend", "1.2.1", "1.2.2")
			return err
		}},
		{"rollback", func(ctx context.Context, c *Client) error {
			_, err := c.Rollback(ctx, "develop-frontend", "1.2.1", "1.2.2")
			return err
		}},
		{"rollback member alone", func(ctx context.Context, c *Client) error {
			_, err := c.RollbackMember(ctx, "develop-frontend", "1.2.1", "1.2.2")
			return err
		}},
		{"approve", func(ctx context.Context, c *Client) error {
			_, err := c.Approve(ctx, "develop-frontend", "1.2.1", "1.2.2")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _, bare := newEngineAt123(t)
			ts := httptest.NewServer(New(e, WithLogger(quiet())))
			defer ts.Close()
			before := head(t, bare)
			err := tt.act(context.Background(), NewClient(ts.URL, "", nil))
			var se *StatusError
			if !errors.As(err, &se) || se.Code != http.StatusConflict ||
				se.Msg != `stage "develop-frontend" now runs 1.2.3, you expected 1.2.2: the stage moved; nothing was done: look at its status and act again` {
				t.Errorf("%s on a moved stage: %v; want 409 naming what it runs now", tt.name, err)
			}
			if after := head(t, bare); after != before {
				t.Errorf("Git moved from %s to %s", before, after)
			}
		})
	}
}

func head(t *testing.T, bare string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "rev-parse", "main")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
