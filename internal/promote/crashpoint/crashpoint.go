// Package crashpoint lets the fault suite kill the promoter at a named step of a
// promotion, deterministically: the process SIGKILLs itself when KROPIPE_CRASH_AT
// names the step it reaches. Unset (always, outside tests) a Hit costs one load.
package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Env is the variable naming the step: "after-commit" kills at the first time the
// step is reached, "after-commit:3" at the third.
const Env = "KROPIPE_CRASH_AT"

// The steps of a promotion a crash can be placed at.
const (
	// AfterDiscovery: the registry was read, nothing decided or written.
	AfterDiscovery = "after-discovery"
	// AfterCommit: the promotion commit exists in memory, nothing is pushed.
	AfterCommit = "after-commit"
	// BeforePush: the pack is built and the push is about to start.
	BeforePush = "before-push"
	// AfterPush: the server took the push; the clone's branch and the promoter's
	// state (verifications, statuses) do not know it yet.
	AfterPush = "after-push"
	// DuringSync: controller mode, the Application is read and the sync patch is
	// about to be sent.
	DuringSync = "during-sync"
	// AfterMerge: pull-request mode, the forge merged the pull request; the promoter's state
	// does not know it yet.
	AfterMerge = "after-merge"
)

var (
	once  sync.Once
	point string
	nth   int64
	hits  atomic.Int64
)

func load() {
	v := os.Getenv(Env)
	if v == "" {
		return
	}
	name, count, ok := strings.Cut(v, ":")
	point, nth = name, 1
	if ok {
		if n, err := strconv.ParseInt(count, 10, 64); err == nil && n > 0 {
			nth = n
		}
	}
}

// Hit kills the process when step is the one KROPIPE_CRASH_AT names and this is its
// n-th hit. It says so on stderr first, so the test can tell a planned death from a
// crash.
func Hit(step string) {
	once.Do(load)
	if point == "" || step != point {
		return
	}
	if hits.Add(1) != nth {
		return
	}
	fmt.Fprintf(os.Stderr, "crashpoint: killing the process at %s\n", step)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way: never run past the point
}
