package promoter_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The release group of the README in local mode, against the CNCF distribution registry and git
// http-backend: develop/shop and staging/shop of frontend and backend. Pushing backend:2.1.0 and
// frontend:1.2.2 gives one develop commit changing both files, then one staging commit; pushing
// frontend:1.2.3 alone gives the set {1.2.3, 2.1.0}; a group rollback is one commit.
func TestPromoterOnce_ReleaseGroupMovesAsOneSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const name = "groups"
	localSetup(t, ctx, name)
	cfg := fmt.Sprintf(`git:
  url: %s
  author: {name: kropipe, email: kropipe@example.com}
registries:
  - {host: %s, insecure: true}
stages:
  - {name: develop-frontend, image: %[2]s/%[3]s/frontend, constraint: "^1.2", file: develop/frontend/instance.yaml}
  - {name: develop-backend, image: %[2]s/%[3]s/backend, constraint: "^2", file: develop/backend/instance.yaml}
  - {name: staging-frontend, image: %[2]s/%[3]s/frontend, upstream: develop-frontend, file: staging/frontend/instance.yaml}
  - {name: staging-backend, image: %[2]s/%[3]s/backend, upstream: develop-backend, file: staging/backend/instance.yaml}
groups:
  - {name: develop/shop, members: [develop-frontend, develop-backend]}
  - {name: staging/shop, members: [staging-frontend, staging-backend]}
`, st.Git.RepoURL(name), st.RegistryAddr, name)
	cfgPath := filepath.Join(t.TempDir(), "promoter.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	promoter := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, st.Binaries.Promoter, append(args, "--config", cfgPath, "--data-dir", dataDir, "--log-level", "error")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promoter %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	check, err := st.Git.Clone(ctx, name, filepath.Join(t.TempDir(), "check"))
	if err != nil {
		t.Fatal(err)
	}
	last := func() (subject string, files []string) {
		t.Helper()
		if err := check.Pull(ctx); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("git", "show", "--name-only", "--format=%s", "HEAD")
		cmd.Dir = check.Dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines[0], lines[1:]
	}

	pushImage(t, st.RegistryAddr, name+"/frontend", "1.2.1")
	pushImage(t, st.RegistryAddr, name+"/backend", "2.0.0")
	pushImage(t, st.RegistryAddr, name+"/backend", "2.1.0")
	pushImage(t, st.RegistryAddr, name+"/frontend", "1.2.2")
	promoter("run", "--once")
	if s, files := last(); s != "Promote shop: frontend 1.2.1 → 1.2.2, backend 2.0.0 → 2.1.0" || strings.Join(files, " ") != "develop/backend/instance.yaml develop/frontend/instance.yaml" {
		t.Fatalf("develop: %q changing %q", s, files)
	}
	promoter("run", "--once")
	if s, files := last(); s != "Promote shop: frontend 1.2.0 → 1.2.2, backend 1.9.3 → 2.1.0" || strings.Join(files, " ") != "staging/backend/instance.yaml staging/frontend/instance.yaml" {
		t.Fatalf("staging: %q changing %q", s, files)
	}
	pushImage(t, st.RegistryAddr, name+"/frontend", "1.2.3")
	promoter("run", "--once")
	if s, files := last(); s != "Promote shop: frontend 1.2.2 → 1.2.3" || strings.Join(files, " ") != "develop/frontend/instance.yaml" {
		t.Fatalf("frontend alone: %q changing %q", s, files)
	}
	if out := promoter("status", "develop/shop"); !strings.Contains(out, "member develop-frontend  1.2.3") || !strings.Contains(out, "member develop-backend   2.1.0") {
		t.Fatalf("status:\n%s", out)
	}
	promoter("rollback", "develop/shop")
	if s, _ := last(); s != "Roll back shop: frontend 1.2.3 → 1.2.2" {
		t.Fatalf("rollback: %q", s)
	}
}
