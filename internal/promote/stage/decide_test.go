package stage

import (
	"errors"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// decide is driven here without Git or a registry: a stage alone and a release group are the
// same decision over a set (of one, or of several), only their sentences differ.
func TestDecide_StagesAloneAndGroupsDecideTheSameWay(t *testing.T) {
	spec := func(name, service, upstream string) Spec {
		return Spec{Name: name, Image: "reg/team/" + service, Upstream: upstream, Strategy: warehouse.StrategySemver, AutoPromote: true, RepoURL: "git", Branch: "main", File: name + ".yaml"}
	}
	tagged := func(service, tag, digest string) freight.Freight {
		return freight.Freight{Image: "reg/team/" + service, Tag: tag, Digest: digest}
	}
	verified := func(service, tag, digest string, at time.Time) Verification {
		f := tagged(service, tag, digest)
		return Verification{Freight: f, FreightID: f.ID(), Value: tag, VerifiedAt: at}
	}
	// Two pipelines: develop-frontend → staging-frontend alone, and develop/shop → staging/shop.
	devFE, stFE := spec("develop-frontend", "frontend", ""), spec("staging-frontend", "frontend", "develop-frontend")
	devA, devB := spec("develop-a", "frontend", ""), spec("develop-b", "backend", "")
	stA, stB := spec("staging-a", "frontend", "develop-a"), spec("staging-b", "backend", "develop-b")
	stA.Soak, stB.Soak = 10*time.Minute, 10*time.Minute
	prod := spec("prod-frontend", "frontend", "")
	prod.AutoPromote = false
	table := resolveGroups([]Spec{devFE, stFE, devA, devB, stA, stB, prod}, []GroupSpec{
		{Name: "develop/shop", Members: []string{"develop-a", "develop-b"}},
		{Name: "staging/shop", Members: []string{"staging-a", "staging-b"}},
	})
	now := t0.Add(time.Hour)

	type obs = map[string]*observation
	seen := func(s Spec, current string, cand freight.Freight) *observation {
		return &observation{spec: s, current: current, commit: "c0", candidate: cand, rejected: map[string]bool{}}
	}
	tests := []struct {
		name   string
		unit   string
		obs    obs
		state  State
		recs   []gitwrite.Record
		upRecs []gitwrite.Record
		want   Decision
		reason string
		check  func(t *testing.T, d decision)
	}{
		{
			name: "a stage alone takes a new tag", unit: "develop-frontend",
			obs:  obs{"develop-frontend": seen(devFE, "1.2.1", tagged("frontend", "1.2.2", "sha256:a"))},
			want: DecisionPromote, reason: "promoting 1.2.1 → 1.2.2",
		},
		{
			name: "a stage alone running its candidate verifies it since the commit that put it there", unit: "develop-frontend",
			obs:  obs{"develop-frontend": seen(devFE, "1.2.2", tagged("frontend", "1.2.2", "sha256:a"))},
			recs: []gitwrite.Record{{Commit: "c1", Value: "1.2.2", Time: t0}},
			want: DecisionUpToDate, reason: "up to date at 1.2.2",
			check: func(t *testing.T, d decision) {
				if !d.Verify || d.Commit != "c1" || !d.PlacedAt.Equal(t0) {
					t.Errorf("verify %v at %s placed %s, want c1 at %s", d.Verify, d.Commit, d.PlacedAt, t0)
				}
			},
		},
		{
			// 1.2.2 was rolled back here, so the registry's newest other tag, 1.2.1, is the
			// candidate; a human promoted 1.2.2 again: the stage holds, and verifies 1.2.2
			// since that commit, for staging may take only what develop verified there.
			name: "a stage alone holding verifies what its own newest commit put in place", unit: "develop-frontend",
			obs: obs{"develop-frontend": func() *observation {
				o := seen(devFE, "1.2.2", tagged("frontend", "1.2.1", "sha256:b"))
				o.rejected["1.2.2"] = true
				return o
			}()},
			recs: []gitwrite.Record{{Commit: "c3", Value: "1.2.2", Time: t0}, {Commit: "c2", Value: "1.2.1", Kind: gitwrite.Rollback}},
			want: DecisionHold, reason: "1.2.1 is older than the current 1.2.2; promote it by hand if that is intended",
			check: func(t *testing.T, d decision) {
				if !d.Verify || d.Commit != "c3" || len(d.Running) != 1 || d.Running[0].Value != "1.2.2" {
					t.Errorf("verify %v of %v at %s; want 1.2.2 verified since c3", d.Verify, d.Running, d.Commit)
				}
			},
		},
		{
			name: "a stage alone holding on a value it did not write itself verifies nothing", unit: "develop-frontend",
			obs:  obs{"develop-frontend": seen(devFE, "1.2.3-hotfix", tagged("frontend", "1.2.2", "sha256:a"))},
			recs: []gitwrite.Record{{Commit: "c1", Value: "1.2.2", Time: t0}},
			want: DecisionHold,
			check: func(t *testing.T, d decision) {
				if d.Verify {
					t.Errorf("verifies %v at %s; a value no commit of the stage wrote is not its promotion", d.Running, d.Commit)
				}
			},
		},
		{
			name: "a paused stage alone holds", unit: "develop-frontend",
			obs:   obs{"develop-frontend": seen(devFE, "1.2.1", tagged("frontend", "1.2.2", "sha256:a"))},
			state: State{Paused: map[string]time.Time{"develop-frontend": t0}},
			want:  DecisionHold, reason: "paused; 1.2.2 is waiting",
		},
		{
			name: "a stage alone with no matching tag says what it saw", unit: "develop-frontend",
			obs: obs{"develop-frontend": func() *observation {
				o := seen(devFE, "1.2.1", freight.Freight{})
				o.noMatch, o.report = true, warehouse.Report{Strategy: "semver", Constraint: "^1.2", Highest: "2.0.0"}
				return o
			}()},
			want: DecisionWait, reason: "no tag matches ^1.2 (newest seen 2.0.0)",
		},
		{
			name: "a stage alone without autoPromote waits for approval", unit: "prod-frontend",
			obs:  obs{"prod-frontend": seen(prod, "1.2.1", tagged("frontend", "1.2.2", "sha256:a"))},
			want: DecisionWait, reason: "waiting for approval of 1.2.2",
		},
		{
			name: "an approved value is promoted", unit: "prod-frontend",
			obs:   obs{"prod-frontend": seen(prod, "1.2.1", tagged("frontend", "1.2.2", "sha256:a"))},
			state: State{Approvals: map[string][]Approval{"prod-frontend": {{Value: "1.2.2"}}}},
			want:  DecisionPromote, reason: "promoting 1.2.1 → 1.2.2",
		},
		{
			name: "downstream waits for its upstream to verify", unit: "staging-frontend",
			obs:  obs{"develop-frontend": seen(devFE, "1.2.2", freight.Freight{}), "staging-frontend": seen(stFE, "1.2.1", freight.Freight{})},
			want: DecisionWait, reason: "waiting for develop-frontend to verify 1.2.2",
		},
		{
			name: "downstream takes exactly the bytes its upstream verified", unit: "staging-frontend",
			obs:   obs{"develop-frontend": seen(devFE, "1.2.2", freight.Freight{}), "staging-frontend": seen(stFE, "1.2.1", freight.Freight{})},
			state: State{Verifications: map[string][]Verification{"develop-frontend": {verified("frontend", "1.2.2", "sha256:a", t0)}}},
			want:  DecisionPromote, reason: "promoting 1.2.1 → 1.2.2",
			check: func(t *testing.T, d decision) {
				if got := d.Cand[0].Freight.Digest; got != "sha256:a" {
					t.Errorf("candidate digest %q, want the verified sha256:a", got)
				}
			},
		},
		{
			// develop verified 1.2.2 at c1, rolled it back (c2) and a human promoted it again
			// (c3): that verdict judged another deployment, not the one develop runs now.
			name: "downstream waits for its upstream to verify a re-promotion again", unit: "staging-frontend",
			obs:    obs{"develop-frontend": seen(devFE, "1.2.2", freight.Freight{}), "staging-frontend": seen(stFE, "1.2.1", freight.Freight{})},
			upRecs: []gitwrite.Record{{Commit: "c3333333", Value: "1.2.2", Time: t0.Add(2 * time.Minute)}, {Commit: "c2", Value: "1.2.1", Time: t0.Add(time.Minute), Kind: gitwrite.Rollback}, {Commit: "c1", Value: "1.2.2", Time: t0}},
			state: State{Verifications: map[string][]Verification{"develop-frontend": {func() Verification {
				v := verified("frontend", "1.2.2", "sha256:a", t0.Add(30*time.Second))
				v.Commit = "c1"
				return v
			}()}}},
			want: DecisionWait, reason: "waiting for develop-frontend to verify 1.2.2 since c333333 put it there again",
		},
		{
			name: "downstream takes a value its upstream verified since the commit that placed it", unit: "staging-frontend",
			obs:    obs{"develop-frontend": seen(devFE, "1.2.2", freight.Freight{}), "staging-frontend": seen(stFE, "1.2.1", freight.Freight{})},
			upRecs: []gitwrite.Record{{Commit: "c3333333", Value: "1.2.2", Time: t0}},
			state: State{Verifications: map[string][]Verification{"develop-frontend": {func() Verification {
				v := verified("frontend", "1.2.2", "sha256:a", t0.Add(30*time.Second))
				v.Commit = "c3333333"
				return v
			}()}}},
			want: DecisionPromote, reason: "promoting 1.2.1 → 1.2.2",
		},
		{
			name: "downstream holds rather than go back to an older version", unit: "staging-frontend",
			obs:   obs{"develop-frontend": seen(devFE, "1.2.1", freight.Freight{}), "staging-frontend": seen(stFE, "1.2.2", freight.Freight{})},
			state: State{Verifications: map[string][]Verification{"develop-frontend": {verified("frontend", "1.2.1", "sha256:a", t0)}}},
			want:  DecisionHold, reason: "1.2.1 is older than the current 1.2.2; promote it by hand if that is intended",
		},
		{
			name: "downstream never takes again what was rolled back there", unit: "staging-frontend",
			obs: obs{"develop-frontend": seen(devFE, "1.2.2", freight.Freight{}), "staging-frontend": func() *observation {
				o := seen(stFE, "1.2.1", freight.Freight{})
				o.rejected["1.2.2"] = true
				return o
			}()},
			state: State{Verifications: map[string][]Verification{"develop-frontend": {verified("frontend", "1.2.2", "sha256:a", t0)}}},
			want:  DecisionBlocked, reason: "1.2.2 was rolled back here; waiting for develop-frontend to verify a newer one",
		},
		{
			name: "a group takes every member's new tag in one set", unit: "develop/shop",
			obs: obs{
				"develop-a": seen(devA, "1.2.1", tagged("frontend", "1.2.2", "sha256:a")),
				"develop-b": seen(devB, "2.0.0", tagged("backend", "2.1.0", "sha256:b")),
			},
			want: DecisionPromote, reason: "promoting frontend 1.2.1 → 1.2.2, backend 2.0.0 → 2.1.0",
		},
		{
			name: "a group member without news keeps what it runs", unit: "develop/shop",
			obs: obs{
				"develop-a": seen(devA, "1.2.1", tagged("frontend", "1.2.2", "sha256:a")),
				"develop-b": seen(devB, "2.1.0", tagged("backend", "2.1.0", "sha256:b")),
			},
			want: DecisionPromote, reason: "promoting frontend 1.2.1 → 1.2.2, backend 2.1.0",
		},
		{
			name: "a failed member fails its group", unit: "develop/shop",
			obs: obs{
				"develop-a": seen(devA, "1.2.1", tagged("frontend", "1.2.2", "sha256:a")),
				"develop-b": func() *observation {
					o := seen(devB, "", freight.Freight{})
					o.err = errors.New("key not found")
					return o
				}(),
			},
			want: DecisionFailed,
			check: func(t *testing.T, d decision) {
				if d.Member != "develop-b" || d.Err == nil {
					t.Errorf("failed member %q (%v), want develop-b", d.Member, d.Err)
				}
			},
		},
		{
			name: "a group downstream waits for its upstream group to verify the set", unit: "staging/shop",
			obs: obs{
				"develop-a": seen(devA, "1.2.2", freight.Freight{}), "develop-b": seen(devB, "2.1.0", freight.Freight{}),
				"staging-a": seen(stA, "1.2.0", freight.Freight{}), "staging-b": seen(stB, "2.0.0", freight.Freight{}),
			},
			want: DecisionWait, reason: "waiting for develop/shop to verify its set (frontend 1.2.2, backend 2.1.0)",
		},
		{
			name: "a group downstream waits for a set its upstream verified before it was written again", unit: "staging/shop",
			obs: obs{
				"develop-a": seen(devA, "1.2.2", freight.Freight{}), "develop-b": seen(devB, "2.1.0", freight.Freight{}),
				"staging-a": seen(stA, "1.2.0", freight.Freight{}), "staging-b": seen(stB, "2.0.0", freight.Freight{}),
			},
			upRecs: []gitwrite.Record{{Commit: "c3333333", Value: "develop-a=1.2.2, develop-b=2.1.0", Time: now.Add(-time.Minute)}},
			state: State{Verifications: map[string][]Verification{
				"develop/shop": {{Value: "develop-a=1.2.2, develop-b=2.1.0", Commit: "c1", VerifiedAt: now.Add(-20 * time.Minute)}},
			}},
			want: DecisionWait, reason: "waiting for develop/shop to verify its set (frontend 1.2.2, backend 2.1.0) since c333333 put it there again",
		},
		{
			name: "a group downstream soaks, then takes the verified bytes", unit: "staging/shop",
			obs: obs{
				"develop-a": seen(devA, "1.2.2", freight.Freight{}), "develop-b": seen(devB, "2.1.0", freight.Freight{}),
				"staging-a": seen(stA, "1.2.0", freight.Freight{}), "staging-b": seen(stB, "2.0.0", freight.Freight{}),
			},
			state: State{Verifications: map[string][]Verification{
				"develop/shop": {{Value: "develop-a=1.2.2, develop-b=2.1.0", VerifiedAt: now.Add(-4 * time.Minute)}},
				"develop-a":    {verified("frontend", "1.2.2", "sha256:a", now)},
			}},
			want: DecisionWait, reason: "waiting: develop/shop soak, 6m0s left",
			check: func(t *testing.T, d decision) {
				if !d.SoakEnd.Equal(now.Add(6*time.Minute)) || d.Cand[0].Freight.Digest != "sha256:a" {
					t.Errorf("soak ends %s, candidate %+v", d.SoakEnd, d.Cand)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, ok := table.unit(tt.unit)
			if !ok {
				t.Fatalf("no unit %s", tt.unit)
			}
			state := tt.state.clone()
			d := decide(input{u: u, obs: tt.obs, recs: tt.recs, upRecs: tt.upRecs, state: state, now: now})
			if d.Decision != tt.want || tt.reason != "" && d.Reason != tt.reason {
				t.Fatalf("decision %s %q (%v), want %s %q", d.Decision, d.Reason, d.Err, tt.want, tt.reason)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}
