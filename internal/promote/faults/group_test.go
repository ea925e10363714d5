package faults

import (
	"os"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
)

// shopGroups makes the two services of chains(2, "develop", "staging") release groups.
const shopGroups = `groups:
  - name: develop/shop
    members: [develop-svc00, develop-svc01]
  - name: staging/shop
    members: [staging-svc00, staging-svc01]
`

// TestCrashPoints_ReleaseGroupIsCommittedOnceWhereverTheKillFalls kills the promoter at each
// step of a release group's promotion, between building the set's commit and verifying it
// (in local mode the verification is what follows the push), restarts it, and requires one
// commit per group carrying both members, never two, and the downstream group to follow.
func TestCrashPoints_ReleaseGroupIsCommittedOnceWhereverTheKillFalls(t *testing.T) {
	for _, point := range []string{crashpoint.AfterCommit, crashpoint.BeforePush, crashpoint.AfterPush} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, chains(2, "develop", "staging"), "")
			cfg, err := os.ReadFile(w.config)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(w.config, append(cfg, shopGroups...), 0o600); err != nil {
				t.Fatal(err)
			}
			heads := []string{w.head()}
			for _, svc := range w.services() {
				w.push(svc, "1.1.0")
			}
			p, err := w.once([]string{crashpoint.Env + "=" + point})
			if err == nil || !p.killed() || !strings.Contains(p.stderr.String(), "crashpoint: killing the process at "+point) {
				t.Fatalf("want a SIGKILL at %s, got %v\n%s", point, err, p.stderr)
			}
			heads = append(heads, w.head())
			w.converge(map[string]string{"develop-svc00": "1.1.0", "develop-svc01": "1.1.0", "staging-svc00": "1.1.0", "staging-svc01": "1.1.0"}, 4)
			heads = append(heads, w.head())
			w.checkHistory(heads)
			subjects := strings.Split(strings.TrimSpace(w.gitOut("log", "--format=%s", "main")), "\n")
			want := []string{
				"Promote shop: svc00 1.0.0 → 1.1.0, svc01 1.0.0 → 1.1.0", // staging/shop
				"Promote shop: svc00 1.0.0 → 1.1.0, svc01 1.0.0 → 1.1.0", // develop/shop
				"Seed repository",
			}
			if strings.Join(subjects, "\n") != strings.Join(want, "\n") {
				t.Fatalf("git log:\n%s\nwant one commit per group", strings.Join(subjects, "\n"))
			}
			groups := strings.Fields(w.gitOut("log", "--format=%(trailers:key=Kropipe-Group,valueonly)", "main"))
			if strings.Join(groups, " ") != "staging/shop develop/shop" {
				t.Fatalf("Kropipe-Group trailers %q", groups)
			}
			w.checkStateReadable()
		})
	}
}
