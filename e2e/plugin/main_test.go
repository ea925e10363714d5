// Package plugin_test proves the kro Config Management Plugin through real Argo CD: the
// repository's plugin.yaml in argocd-cmp-server, the freshly built cmp-sidecar, Applications
// synced by argocd-application-controller into a real kube-apiserver with kwok nodes.
package plugin_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kropipe/kropipe/e2e/stack"
)

// repoName is the served Git repository seeded from examples/gitops.
const repoName = "gitops"

var (
	st *stack.Stack
	// checkout is the harness's clone of the served repository; gitMu serialises edits to it.
	checkout *stack.Checkout
	gitMu    sync.Mutex
	// examplesDir is examples/gitops in this repository.
	examplesDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: -short: skipping the Argo CD stack")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctx := context.Background()
	begin := time.Now()
	var err error
	st, err = stack.Start(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stack did not start: %v\n", err)
		return 1
	}
	defer func() {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "e2e: failed; component logs kept in %s\n%s", filepath.Join(st.Dir, "logs"), st.LogTails(25))
		}
		stopped := time.Now()
		st.Stop()
		fmt.Printf("e2e: stack stopped in %s\n", time.Since(stopped).Round(10*time.Millisecond))
		if code == 0 && os.Getenv("KROPIPE_E2E_KEEP") == "" {
			os.RemoveAll(st.Dir)
		} else {
			fmt.Printf("e2e: run folder kept: %s\n", st.Dir)
		}
	}()
	for name, d := range st.Binaries.BuildTimes {
		fmt.Printf("e2e: build %s: %s\n", name, d.Round(time.Second))
	}
	if err := seedRepo(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: seeding the Git repository: %v\n", err)
		return 1
	}
	fmt.Printf("e2e: stack and repository ready %s after start\n", time.Since(begin).Round(10*time.Millisecond))
	return m.Run()
}

// seedRepo serves examples/gitops as repository "gitops", plus a broken copy of the frontend
// instance (required field image removed) under broken/frontend.
func seedRepo(ctx context.Context) error {
	examplesDir = filepath.Join(st.PluginConfigDir, "examples", "gitops")
	if err := st.Git.CreateRepo(ctx, repoName); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(st.Dir, "checkout-")
	if err != nil {
		return err
	}
	checkout, err = st.Git.Clone(ctx, repoName, filepath.Join(dir, repoName))
	if err != nil {
		return err
	}
	if err := checkout.CopyTree(examplesDir, "."); err != nil {
		return err
	}
	if err := checkout.WriteFile("broken/frontend/instance.yaml", []byte(brokenInstance)); err != nil {
		return err
	}
	_, err = checkout.CommitAndPush(ctx, "seed from examples/gitops")
	return err
}

// brokenInstance lacks spec.values.deployment.image, which webapp.yaml marks required=true.
const brokenInstance = `apiVersion: kro.run/v1alpha1
kind: WebApp
metadata:
  name: broken
spec:
  values:
    deployment:
      tag: "1.0.0"
`
