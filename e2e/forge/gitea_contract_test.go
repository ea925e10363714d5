// Package forge proves kropipe's forge clients against real forges the e2e stack runs: for
// now Gitea (stack.StartGitea).
package forge

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/e2e/stack"
)

// TestGiteaClient_ContractAgainstRealGitea runs the Gitea client's contract test
// (internal/promote/forge, TestGiteaContract_RealGitea) against a real Gitea: e2e does not
// import the product's packages (its dependencies would meet the product's), so the test runs
// there, in its own `go test`, told where this Gitea is through KROPIPE_E2E_GITEA.
func TestGiteaClient_ContractAgainstRealGitea(t *testing.T) {
	g := stack.StartGitea(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	admin := g.Admin
	repo, err := admin.CreateRepo(ctx, "contract", map[string]string{"README.md": "contract\n"})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := g.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.AddCollaborator(ctx, repo, alice.Login, "write"); err != nil {
		t.Fatal(err)
	}
	branches := []string{"pr-merge", "pr-squash", "pr-rebase", "pr-human", "pr-close", "pr-stale"}
	for _, b := range branches {
		if _, err := admin.PushFiles(ctx, repo, b, "main", map[string]string{b + ".txt": b + "\n"}, "Change "+b); err != nil {
			t.Fatal(err)
		}
	}
	proxy, err := stack.StartFaultProxy(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.Fail(http.StatusServiceUnavailable, stack.GiteaAPI)

	env, _ := json.Marshal(map[string]any{
		"url": g.URL, "repo": repo, "token": admin.Token, "login": admin.Login,
		"reviewer": alice.Login, "reviewerToken": alice.Token, "branches": branches,
		"unavailableURL": proxy.URL,
	})
	_, repoRoot, err := stack.FindE2EDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, stack.GoTool(), "test", "-count=1", "-v",
		"-run", "^TestGiteaContract_RealGitea$", "./internal/promote/forge")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "KROPIPE_E2E_GITEA="+string(env))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ran := false
	for sc.Scan() {
		line := sc.Text()
		ran = ran || strings.HasPrefix(line, "--- PASS: TestGiteaContract_RealGitea ")
		t.Log(line)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the Gitea client's contract test failed (%v): see its output above", err)
	}
	if !ran {
		t.Fatal("the contract test did not run (skipped?): see its output above")
	}
	t.Logf("contract test (with its build) took %s", time.Since(start).Round(time.Second))
}
