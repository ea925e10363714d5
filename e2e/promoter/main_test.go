// Package promoter_test runs the freshly built promoter against the stack's real servers: local
// mode against the CNCF distribution registry and git http-backend, and the controller in front of
// real Argo CD and kube-apiserver, driving an ApplicationSet's pipeline.
package promoter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/kropipe/kropipe/e2e/stack"
)

var (
	st *stack.Stack
	// repoRoot is the kropipe repository (examples/, manifests/).
	repoRoot string
	// The registry sends its push notifications to webhookAddr with webhookSecret; a test's
	// promoter listens there.
	webhookAddr, webhookSecret string
)

func TestMain(m *testing.M) {
	ports, err := stack.FreePorts(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	webhookAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	webhookSecret = hex.EncodeToString(b)
	os.Exit(stack.RunTests(m, func(_ context.Context, s *stack.Stack) (err error) {
		st = s
		_, repoRoot, err = stack.FindE2EDir()
		return err
	}, stack.WithRegistryNotifications("http://"+webhookAddr+"/webhook/registry", "Bearer "+webhookSecret), stack.WithArgoRollouts(), stack.WithSpokeCluster(),
		// Argo CD v3 with the Source Hydrator, for hydrator_cluster_test.go.
		stack.WithArgoCDV3()))
}
