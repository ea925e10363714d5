// Package plugin_test proves the kro Config Management Plugin through real Argo CD, v2.14 and
// v3 side by side: the repository's plugin.yaml in each line's argocd-cmp-server, the freshly
// built cmp-sidecar, Applications synced by each line's argocd-application-controller into a
// real kube-apiserver with kwok nodes.
package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

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
	os.Exit(stack.RunTests(m, func(ctx context.Context, s *stack.Stack) error {
		st = s
		return seedRepo(ctx)
	}, stack.WithArgoCDV3()))
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
