package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
)

// shopConfig is the scenario's release groups: develop/shop and staging/shop, each of
// frontend and backend, and develop-cart outside any group.
const shopConfig = `stages:
  - {name: develop-frontend, image: REGISTRY/team/frontend, constraint: "^1.2", file: develop/frontend/instance.yaml}
  - {name: develop-backend, image: REGISTRY/team/backend, constraint: "^2", file: develop/backend/instance.yaml}
  - {name: develop-cart, image: REGISTRY/team/cart, constraint: "^0.9", file: develop/cart/instance.yaml}
  - {name: staging-frontend, image: REGISTRY/team/frontend, upstream: develop-frontend, file: staging/frontend/instance.yaml}
  - {name: staging-backend, image: REGISTRY/team/backend, upstream: develop-backend, file: staging/backend/instance.yaml}
groups:
  - name: develop/shop
    members: [develop-frontend, develop-backend]
  - name: staging/shop
    members: [staging-frontend, staging-backend]
`

type groupEnv struct {
	config, dataDir, regHost, bare string
}

func newGroupEnv(t *testing.T) groupEnv {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/groupseed")
	if err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1")
	registrytest.Push(t, host, "team/backend", "2.0.0")
	registrytest.Push(t, host, "team/cart", "0.9.0")
	dir := t.TempDir()
	cfg := fmt.Sprintf("git:\n  url: %s\n  author: {name: kropipe, email: kropipe@example.com}\nregistries:\n  - {host: %q, insecure: true}\n%s",
		srv.URL("gitops.git"), host, strings.ReplaceAll(shopConfig, "REGISTRY", host))
	path := filepath.Join(dir, "promoter.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return groupEnv{config: path, dataDir: filepath.Join(dir, "data"), regHost: host, bare: bare}
}

func (e groupEnv) log(t *testing.T) []string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), e.bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[:len(lines)-1] // without the seed
}

func TestCommands_ReleaseGroupInLocalMode(t *testing.T) {
	e := newGroupEnv(t)
	flags := []string{"--config", e.config, "--data-dir", e.dataDir, "--log-level", "error"}
	cli := func(args ...string) string {
		t.Helper()
		out, err := run(t, append(args, flags...)...)
		if err != nil {
			t.Fatalf("promoter %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	registrytest.Push(t, e.regHost, "team/backend", "2.1.0")
	registrytest.Push(t, e.regHost, "team/frontend", "1.2.2")
	cli("run", "--once")
	if got := e.log(t); len(got) != 1 || got[0] != "Promote shop: frontend 1.2.1 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("after the first pass: %q", got)
	}
	cli("run", "--once") // staging takes the set develop verified
	if got := e.log(t); len(got) != 2 || got[0] != "Promote shop: frontend 1.2.0 → 1.2.2, backend 2.0.0 → 2.1.0" {
		t.Fatalf("after the second pass: %q", got)
	}

	registrytest.Push(t, e.regHost, "team/frontend", "1.2.3")
	out := cli("status", "develop/shop")
	for _, want := range []string{"develop/shop", "set of 2", "promote", "member develop-frontend  1.2.2", "1.2.3", "member develop-backend   2.1.0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status develop/shop lacks %q:\n%s", want, out)
		}
	}
	_, err := run(t, append([]string{"promote", "develop-frontend", "1.2.3"}, flags...)...)
	if err == nil || !strings.Contains(err.Error(), `member of a release group "develop/shop"`) || !strings.Contains(err.Error(), "--member") {
		t.Fatalf("promoting a member alone: %v", err)
	}
	cli("run", "--once")
	if got := e.log(t); got[0] != "Promote shop: frontend 1.2.2 → 1.2.3" {
		t.Fatalf("frontend alone: %q", got)
	}
	out = cli("rollback", "develop/shop")
	if !strings.Contains(out, "rolled back develop/shop: develop-frontend=1.2.3, develop-backend=2.1.0 → develop-frontend=1.2.2, develop-backend=2.1.0") {
		t.Fatalf("rollback:\n%s", out)
	}
	out = cli("history", "develop/shop")
	if strings.Count(out, "\n") != 4 || !strings.Contains(out, "rollback") {
		t.Fatalf("history:\n%s", out)
	}
	// The sibling outside the group never moved.
	for _, s := range e.log(t) {
		if strings.Contains(s, "cart") {
			t.Fatalf("develop-cart was touched: %q", s)
		}
	}
}

func TestRun_ReleaseGroupThroughTheAPI(t *testing.T) {
	e := newGroupEnv(t)
	registrytest.Push(t, e.regHost, "team/frontend", "1.2.2")
	s := serveUntil(t, e.config, e.dataDir, "the group never moved", func(ctx context.Context, c *api.Client) (bool, string) {
		st, err := c.Stage(ctx, "develop/shop") // a slash in the name, escaped in the URL
		if err == nil && st.CurrentTag == "develop-frontend=1.2.2, develop-backend=2.0.0" {
			if len(st.Members) != 2 || st.Members[1].Stage != "develop-backend" {
				t.Fatalf("members %+v", st.Members)
			}
			return true, ""
		}
		return false, fmt.Sprintf("%v %+v", err, st)
	}, "--interval", "1h", "--log-level", "error")
	addr := s.addr
	got, err := run(t, "promote", "develop-frontend", "1.2.1", "--member", "--addr", addr)
	if err != nil || !strings.Contains(got, "promoted develop-frontend: 1.2.2 → 1.2.1") {
		t.Fatalf("promote --member: %v\n%s", err, got)
	}
	got, err = run(t, "history", "develop/shop", "--addr", addr)
	if err != nil || strings.Count(got, "\n") != 2 {
		t.Fatalf("history --addr: %v\n%s", err, got)
	}
	s.stop(t)
}
