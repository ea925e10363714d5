package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kropipe/kropipe/internal/render"
	"github.com/kropipe/kropipe/internal/render/server"
)

// TestReadPluginEnv_ReadsOnlyWhatTheClientForwards: every variable generate reads must reach
// the render server, or the server would render another application than Argo CD asked for.
func TestReadPluginEnv_ReadsOnlyWhatTheClientForwards(t *testing.T) {
	var read []string
	getenv := func(k string) string {
		read = append(read, k)
		return ""
	}
	if _, err := readPluginEnv(getenv); err != nil {
		t.Fatal(err)
	}
	for _, name := range read {
		if len(server.ForwardedEnv([]string{name + "=x"})) != 1 {
			t.Errorf("generate reads %s, which cmp-sidecar does not send to the render server", name)
		}
	}
}

// TestAnswer_SameAsGenerate: the server's handler gives, for one request, what the command
// prints in that folder with that environment — with a cache, cold and warm.
func TestAnswer_SameAsGenerate(t *testing.T) {
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../../examples/gitops")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "develop", "frontend")
	env := []string{"ARGOCD_APP_NAME=develop-frontend", "ARGOCD_APP_NAMESPACE=develop", "ARGOCD_APP_SOURCE_PATH=develop/frontend"}
	want := run(t, dir, env, "generate")
	if want.code != 0 {
		t.Fatalf("generate: %+v", want)
	}
	cache := render.NewDefinitionCache(0)
	for _, pass := range []string{"cold", "warm"} {
		a := answer(context.Background(), server.Request{Dir: dir, Env: env}, cache)
		if got := (result{string(a.Stdout), string(a.Stderr), a.Code}); got != want {
			t.Errorf("%s: answer %+v, generate %+v", pass, got, want)
		}
	}
}
