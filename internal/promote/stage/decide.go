package stage

import (
	"fmt"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// input is everything decide reads about one unit (a release group, or a stage alone): what
// the pass observed of its members and its upstream's, its commits and the stored state. It
// holds no Engine, Git or registry: a table test builds it by hand.
type input struct {
	u *group
	// obs holds the observations of the unit's members and of its upstream's members.
	obs map[string]*observation
	// recs are the unit's own commits, newest first (for a stage alone, the stage's);
	// upRecs its upstream's.
	recs, upRecs []gitwrite.Record
	state        State
	now          time.Time
}

// decision is what decide concluded for a unit. The pass performs it: verifies what runs
// (verify), writes what is due (DecisionPromote).
type decision struct {
	Decision Decision
	Reason   string
	// Err is why the unit failed; Member, when set, is the member it concerns.
	Err    error
	Member string
	// Cand is the set the unit would run next, nil when there is none yet.
	Cand freight.Set
	// SoakEnd is when the upstream's soak the unit waits for ends.
	SoakEnd time.Time
	// Verify is set when what the unit runs is to be verified: Running, since Commit put it
	// there (at PlacedAt; zero when no commit of the unit did). That is its candidate when it
	// runs it, or what the unit's own newest commit placed while it holds or waits.
	Verify   bool
	Running  freight.Set
	Commit   string
	PlacedAt time.Time
}

// decide says what a unit should do: wait, hold, promote, or verify what it runs.
func decide(in input) decision {
	d := decideMove(in)
	if d.Verify || d.Decision == DecisionPromote || d.Decision == DecisionFailed {
		return d
	}
	verifyRunning(in, &d)
	return d
}

// verifyRunning has a unit that holds or waits still verify what its own newest commit put
// in place: a value promoted by hand (one rolled back here before included) is a new
// deployment, and nothing downstream may take it until it is verified at that commit.
func verifyRunning(in input, d *decision) {
	cur, ok := running(in)
	if ok && len(in.recs) > 0 && in.recs[0].Value == in.u.value(cur) {
		d.Verify, d.Running, d.Commit, d.PlacedAt = true, cur, in.recs[0].Commit, in.recs[0].Time
	}
}

// running is the set the unit runs as the pass observed it, false when a member's
// observation failed.
func running(in input) (freight.Set, bool) {
	set := make(freight.Set, len(in.u.members))
	for i, m := range in.u.members {
		o := in.obs[m.Name]
		if o == nil || o.err != nil {
			return nil, false
		}
		set[i] = freight.Member{Stage: m.Name, Freight: runningFreight(m, o, in.state), Value: o.current}
	}
	return set, true
}

// decideMove says whether the unit moves: wait, hold, promote, or (running its candidate)
// verify it.
func decideMove(in input) decision {
	u, state := in.u, in.state
	if u.problem != nil {
		return decision{Decision: DecisionFailed, Err: u.problem}
	}
	cur := make([]string, len(u.members))
	for i, m := range u.members {
		o := in.obs[m.Name]
		if o.err != nil {
			return decision{Decision: DecisionFailed, Err: o.err, Member: m.Name}
		}
		cur[i] = o.current
	}
	cand, verified, held := candidate(in, cur)
	if held != nil {
		return *held
	}
	d := decision{Cand: cand}
	offer := u.display(cand, cur)
	if u.lone {
		offer = cand[0].Value
	}

	if sameValues(cand, cur) {
		d.Decision, d.Reason, d.Verify, d.Running = DecisionUpToDate, "up to date at "+u.displaySet(cand), true, cand
		if u.lone {
			d.Reason += rejectedNote(in.obs[u.members[0].Name], state, u.Name)
		}
		d.Commit = in.obs[u.members[0].Name].commit
		if len(in.recs) > 0 && in.recs[0].Value == u.value(cand) {
			// The unit's newest commit put this in place.
			d.Commit, d.PlacedAt = in.recs[0].Commit, in.recs[0].Time
		}
		if _, paused := state.Paused[u.Name]; paused {
			d.Decision, d.Reason = DecisionHold, "paused; "+d.Reason
		}
		return d
	}
	if _, paused := state.Paused[u.Name]; paused {
		d.Decision, d.Reason = DecisionHold, fmt.Sprintf("paused; %s is waiting", offer)
		return d
	}
	// Older first: a soak counting down towards a value that will never be taken
	// automatically would read as a rollback on its way.
	for i, m := range u.members {
		if older(m.Strategy, cand[i].Value, cur[i]) {
			d.Decision = DecisionHold
			if u.lone {
				d.Reason = fmt.Sprintf("%s is older than the current %s; promote it by hand if that is intended", cand[i].Value, cur[i])
			} else {
				d.Reason = fmt.Sprintf("%s %s is older than the current %s; promote the set by hand if that is intended", u.label(m), cand[i].Value, cur[i])
			}
			return d
		}
	}
	if soak := u.soak(); verified != nil && soak > 0 {
		if left := verified.VerifiedAt.Add(soak).Sub(in.now); left > 0 {
			d.SoakEnd = in.now.Add(left)
			d.Decision, d.Reason = DecisionWait, fmt.Sprintf("waiting: %s soak, %s left", u.upstream, left.Round(time.Second))
			return d
		}
	}
	if !u.autoPromote() && !state.approved(u.Name, u.value(cand)) {
		d.Decision, d.Reason = DecisionWait, "waiting for approval of "+offer
		return d
	}
	d.Decision, d.Reason = DecisionPromote, "promoting "+u.display(cand, cur)
	return d
}

// candidate is the set a unit would run next and the upstream's verification it comes
// from (nil without an upstream), or the decision that there is none yet.
func candidate(in input, cur []string) (freight.Set, *Verification, *decision) {
	u, state := in.u, in.state
	wait := func(d Decision, cand freight.Set, format string, args ...any) (freight.Set, *Verification, *decision) {
		return nil, nil, &decision{Decision: d, Cand: cand, Reason: fmt.Sprintf(format, args...)}
	}
	var cand freight.Set
	if u.up == nil {
		var missing []string
		for i, m := range u.members {
			o := in.obs[m.Name]
			if u.lone {
				if o.noMatch {
					return wait(DecisionWait, nil, "%s", noMatchReason(o))
				}
				cand = append(cand, freight.Member{Stage: m.Name, Freight: o.candidate, Value: o.candidate.Value(m.Strategy)})
				continue
			}
			// A member without a new candidate keeps what it runs in the set.
			if !o.noMatch && !o.candidate.IsZero() {
				v := o.candidate.Value(m.Strategy)
				if v != cur[i] && !older(m.Strategy, v, cur[i]) {
					cand = append(cand, freight.Member{Stage: m.Name, Freight: o.candidate, Value: v})
					continue
				}
			}
			missing = append(missing, m.Name)
			cand = append(cand, freight.Member{Stage: m.Name, Freight: runningFreight(m, o, state), Value: cur[i]})
		}
		if u.RequireAll && len(missing) > 0 && len(missing) < len(u.members) {
			return wait(DecisionWait, cand, "waiting for a new candidate of %s (require-all); %s", strings.Join(missing, ", "), u.display(cand, cur))
		}
		return cand, nil, nil
	}

	up := u.up
	var upSet freight.Set
	for _, um := range up.members {
		o := in.obs[um.Name]
		if o.err != nil || up.problem != nil {
			if up.lone {
				return wait(DecisionWait, nil, "waiting: upstream %s failed", up.Name)
			}
			return wait(DecisionWait, nil, "waiting: upstream group %s failed", up.Name)
		}
		upSet = append(upSet, freight.Member{Stage: um.Name, Value: o.current})
	}
	v, ok := verifiedValue(state, up.Name, up.value(upSet))
	if !ok {
		if up.lone {
			return wait(DecisionWait, nil, "waiting for %s to verify %s", up.Name, orNothing(upSet[0].Value))
		}
		return wait(DecisionWait, nil, "waiting for %s to verify its set (%s)", up.Name, up.displaySet(upSet))
	}
	// A verification counts only since the upstream's newest commit put its value in place:
	// after a rollback there and a re-promotion of the same value, the earlier verdict judged
	// another deployment.
	if recs := in.upRecs; len(recs) > 0 && recs[0].Value == up.value(upSet) && !verifiedSince(v, recs[0].Commit, recs[0].Time) {
		if up.lone {
			return wait(DecisionWait, nil, "waiting for %s to verify %s since %s put it there again", up.Name, upSet[0].Value, short(recs[0].Commit))
		}
		return wait(DecisionWait, nil, "waiting for %s to verify its set (%s) since %s put it there again", up.Name, up.displaySet(upSet), short(recs[0].Commit))
	}
	for _, m := range u.members {
		um := u.upMember[m.Name]
		value := in.obs[um].current
		// The freight the upstream verified, bytes included: what is written downstream.
		f := freight.Freight{Image: m.Image, Tag: value}
		if uv, ok := verifiedValue(state, um, value); ok {
			f = uv.Freight
		}
		cand = append(cand, freight.Member{Stage: m.Name, Freight: f, Value: value})
	}
	for i, m := range u.members {
		if cand[i].Value != cur[i] && in.obs[m.Name].rejected[cand[i].Value] {
			if u.lone {
				return wait(DecisionBlocked, cand, "%s was rolled back here; waiting for %s to verify a newer one", cand[i].Value, up.Name)
			}
			return wait(DecisionBlocked, cand, "%s %s was rolled back here; waiting for %s to verify a newer set", u.label(m), cand[i].Value, up.Name)
		}
	}
	return cand, &v, nil
}

// rejectedNote says which values were rolled back in a stage alone, and why the newest
// failed verification when it did.
func rejectedNote(o *observation, state State, stage string) string {
	rej := rejectedList(o.rejected)
	if rej == "" {
		return ""
	}
	note := "; " + rej + " rolled back here"
	if r, ok := state.failedRejected(stage, o.rejected); ok {
		note += fmt.Sprintf(" (%s failed verification: %s)", r.Value, r.Message)
		if r.Log != "" {
			note += "; log: " + r.Log
		}
	}
	return note
}

// runningFreight is the freight a member runs: its candidate when that is what runs,
// else the one it was verified with, else one made of the value.
func runningFreight(m Spec, o *observation, state State) freight.Freight {
	if !o.candidate.IsZero() && o.candidate.Value(m.Strategy) == o.current {
		return o.candidate
	}
	if v, ok := verifiedValue(state, m.Name, o.current); ok {
		return v.Freight
	}
	f := freight.Freight{Image: m.Image, Tag: o.current}
	if m.Strategy == warehouse.StrategyDigest {
		f.Tag, f.Digest = m.Constraint, o.current
	}
	return f
}
