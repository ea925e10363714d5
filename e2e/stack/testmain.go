package stack

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// RunTests is the TestMain of a test package whose tests share one stack. Under -short it
// starts nothing and runs nothing. Otherwise it starts the stack with opts, calls setup (the
// package keeps the stack, seeds repositories), runs the tests and stops the stack. After a
// failure the run folder is kept and every component's log tail printed; after a success it
// is removed unless KROPIPE_E2E_KEEP is set. It returns the exit code for os.Exit.
func RunTests(m *testing.M, setup func(context.Context, *Stack) error, opts ...Option) (code int) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: -short: skipping the stack")
		return 0
	}
	ctx := context.Background()
	begin := time.Now()
	st, err := Start(ctx, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stack did not start: %v\n", err)
		return 1
	}
	defer func() {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "e2e: failed; component logs kept in %s\n%s", filepath.Join(st.Dir, "logs"), st.LogTails(40))
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
	if err := setup(ctx, st); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setting up the tests: %v\n", err)
		return 1
	}
	fmt.Printf("e2e: stack ready %s after start\n", time.Since(begin).Round(10*time.Millisecond))
	return m.Run()
}
