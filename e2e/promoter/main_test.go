// Package promoter_test runs the freshly built promoter against the stack's real servers: local
// mode against Debian's docker-registry and git http-backend, and the controller in front of
// real Argo CD and kube-apiserver, driving an ApplicationSet's pipeline.
package promoter_test

import (
	"context"
	"os"
	"testing"

	"github.com/kropipe/kropipe/e2e/stack"
)

var (
	st *stack.Stack
	// repoRoot is the kropipe repository (examples/, manifests/).
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(stack.RunTests(m, func(_ context.Context, s *stack.Stack) (err error) {
		st = s
		_, repoRoot, err = stack.FindE2EDir()
		return err
	}))
}
