package faults

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
)

// TestCrashPoints_KillAtEveryStepLosesAndDoublesNothing kills the promoter at each
// step of a promotion (KROPIPE_CRASH_AT), restarts it, and requires Git to end with
// every stage promoted exactly once along its chain, every earlier head reachable,
// and the state the killed process left readable.
func TestCrashPoints_KillAtEveryStepLosesAndDoublesNothing(t *testing.T) {
	points := []string{crashpoint.AfterDiscovery, crashpoint.AfterCommit, crashpoint.BeforePush, crashpoint.AfterPush}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, chains(2, "develop", "staging"), "")
			heads := []string{w.head()}
			// Each round pushes a new version: the killed pass has develop promotions
			// to make, the restart finishes them and takes staging along.
			for _, version := range []string{"1.1.0", "1.2.0"} {
				for _, svc := range w.services() {
					w.push(svc, version)
				}
				p, err := w.once([]string{crashpoint.Env + "=" + point})
				if err == nil || !p.killed() || !strings.Contains(p.stderr.String(), "crashpoint: killing the process at "+point) {
					t.Fatalf("%s: want a SIGKILL at %s, got %v\n%s", version, point, err, p.stderr)
				}
				heads = append(heads, w.head())
				w.once(nil)
				heads = append(heads, w.head())
			}
			want := map[string]string{}
			for _, s := range w.stages {
				want[s.name] = "1.2.0"
			}
			w.converge(want, 4)
			w.checkHistory(heads)
			perStage := map[string]int{}
			for _, p := range w.promotions() {
				perStage[p.stage]++
			}
			for _, s := range w.stages {
				if s.upstream == "" && perStage[s.name] != 2 {
					t.Errorf("%s: %d promotions, want 2 (1.1.0 and 1.2.0)", s.name, perStage[s.name])
				}
			}
			w.checkStateReadable()
			if b, err := os.ReadFile(filepath.Join(w.dataDir, "state.json")); err == nil && !json.Valid(b) {
				t.Errorf("state.json is not valid JSON after a kill at %s:\n%s", point, b)
			}
		})
	}
}

// TestDamagedClone_IsClonedAgain leaves the persistent clone as a SIGKILL during a
// ref update does (the random-kill run found it: the ref file truncated to nothing,
// every later fetch failing with "ref file is empty"), and requires the next run to
// promote anyway.
func TestDamagedClone_IsClonedAgain(t *testing.T) {
	w := newWorld(t, chains(1, "develop"), "")
	if p, err := w.once(nil); err != nil {
		t.Fatalf("%v\n%s", err, p.stderr)
	}
	refs, err := filepath.Glob(filepath.Join(w.dataDir, "git", "*", "refs", "remotes", "origin", "main"))
	if err != nil || len(refs) != 1 {
		t.Fatalf("the clone's origin/main ref: %v %v", refs, err)
	}
	if err := os.Truncate(refs[0], 0); err != nil {
		t.Fatal(err)
	}
	w.push("svc00", "1.1.0")
	p, err := w.once(nil)
	if err != nil || w.values()["develop-svc00"] != "1.1.0" {
		t.Fatalf("run on a damaged clone: %v\n%s\n%s", err, p.stdout, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "the clone is damaged") {
		t.Errorf("the repair is not logged:\n%s", p.stderr)
	}
}
