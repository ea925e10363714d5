// Package promoter_test runs the freshly built promoter against the stack's real servers: local
// mode against Debian's docker-registry and git http-backend, and the controller in front of
// real Argo CD and kube-apiserver, driving an ApplicationSet's pipeline.
package promoter_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kropipe/kropipe/e2e/stack"
)

var (
	st *stack.Stack
	// repoRoot is the kropipe repository (examples/, manifests/).
	repoRoot string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: -short: skipping the stack")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctx := context.Background()
	begin := time.Now()
	var err error
	if _, repoRoot, err = stack.FindE2EDir(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if st, err = stack.Start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stack did not start: %v\n", err)
		return 1
	}
	defer func() {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "e2e: failed; component logs kept in %s\n%s", filepath.Join(st.Dir, "logs"), st.LogTails(40))
		}
		st.Stop()
		if code == 0 && os.Getenv("KROPIPE_E2E_KEEP") == "" {
			os.RemoveAll(st.Dir)
		} else {
			fmt.Printf("e2e: run folder kept: %s\n", st.Dir)
		}
	}()
	for name, d := range st.Binaries.BuildTimes {
		fmt.Printf("e2e: build %s: %s\n", name, d.Round(time.Second))
	}
	fmt.Printf("e2e: stack ready %s after start\n", time.Since(begin).Round(10*time.Millisecond))
	return m.Run()
}
