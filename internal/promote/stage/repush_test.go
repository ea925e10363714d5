package stage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A tag pushed again after the upstream verified it is not taken downstream: the tag now
// names bytes the upstream never verified. The downstream holds and says why, naming both
// digests; once the upstream has verified the new bytes, the downstream takes them.
func TestReconcile_RepushedTagHoldsDownstreamUntilUpstreamVerifiesIt(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the engine, the stage or group downstream and its members' statuses
		// that must say the same (none for a stage alone).
		setup      func(f *fixture) (e *Engine, down string, members []string)
		soak       time.Duration
		downCommit string
	}{
		{
			name: "stage alone",
			setup: func(f *fixture) (*Engine, string, []string) {
				staging := f.spec("staging-frontend", "staging/frontend", "frontend")
				staging.Upstream = "develop-frontend"
				return f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), staging}), "staging-frontend", nil
			},
			downCommit: "Promote image from 1.2.0 to 1.2.2",
		},
		{
			name: "member of a release group",
			setup: func(f *fixture) (*Engine, string, []string) {
				specs, groups := f.shop()
				return f.engine(specs, WithGroups(groups...)), "staging/shop", []string{"staging-frontend"}
			},
			soak:       10 * time.Minute,
			downCommit: "Promote shop: frontend 1.2.0 → 1.2.2, backend 2.0.0 → 2.1.0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newGroupFixture(t)
			f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
			f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
			f.reg.push(t, "team/cart", "0.9.0")
			e, down, members := tt.setup(f)
			ctx := context.Background()
			verified := digestOf(t, f, "team/frontend:1.2.2")

			reconcile(t, e) // develop takes 1.2.2 and verifies it
			commits := len(f.subjects())
			f.reg.push(t, "team/frontend", "1.2.2") // same tag, other bytes
			repushed := digestOf(t, f, "team/frontend:1.2.2")
			f.clock.Step(tt.soak)

			_ = e.Reconcile(ctx)
			if got := f.subjects(); len(got) != commits {
				t.Fatalf("%s took the re-pushed tag: commits %q", down, got)
			}
			want := fmt.Sprintf("held: frontend:1.2.2 was re-pushed: the registry now has %s, develop-frontend verified %s", shortDigest(repushed), shortDigest(verified))
			st := mustStatus(t, e, down)
			if st.Decision != DecisionHold || st.Reason != want {
				t.Fatalf("%s: %s %q\nwant hold %q", down, st.Decision, st.Reason, want)
			}
			for _, m := range members {
				if ms := mustStatus(t, e, m); ms.Decision != DecisionHold || !strings.HasSuffix(ms.Reason, want) {
					t.Fatalf("member %s: %s %q\nwant hold %q", m, ms.Decision, ms.Reason, want)
				}
			}

			// develop verifies what the tag names now; then, and only then, it moves on.
			reconcile(t, e)
			f.clock.Step(tt.soak)
			reconcile(t, e)
			got := f.subjects()
			if len(got) != commits+1 || got[0] != tt.downCommit {
				t.Fatalf("after develop verified the re-pushed tag: commits %q, want %q on top", got, tt.downCommit)
			}
			body, err := gitOutput(f, "log", "-1", "--format=%B", "main")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(body, repushed) || strings.Contains(body, verified) {
				t.Fatalf("the commit does not name the digest develop verified last (%s):\n%s", repushed, body)
			}
		})
	}
}

// digestOf is what repo:tag points to in the test registry now.
func digestOf(t *testing.T, f *fixture, ref string) string {
	t.Helper()
	d, err := remote.Head(mustTag(t, f.reg.image(ref)))
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest.String()
}
