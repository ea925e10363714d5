package stage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// pendingSet is a group's set due to be written.
type pendingSet struct {
	g       *group
	set     freight.Set
	current []string // each member's value before
	kind    gitwrite.Kind
}

// MemberStatus is one member of a release group as the group's status lists it.
type MemberStatus struct {
	Stage     string `json:"stage"`
	Current   string `json:"current,omitempty"`   // the value in Git
	Candidate string `json:"candidate,omitempty"` // its value in the set the group would run next
}

// groupStatus starts a group's status from what the pass observed.
func (e *Engine) groupStatus(g *group, obs map[string]*observation, state *working) *Status {
	st := &Status{Name: g.Name, Upstream: g.upstream}
	_, st.Paused = state.Paused[g.Name]
	var cur freight.Set
	for _, m := range g.members {
		o := obs[m.Name]
		st.Members = append(st.Members, MemberStatus{Stage: m.Name, Current: o.current})
		cur = append(cur, freight.Member{Stage: m.Name, Freight: freight.Freight{Image: m.Image}, Value: o.current})
	}
	st.CurrentTag = cur.Value()
	if v, ok := state.latestVerified(g.Name); ok {
		st.VerifiedFreight = &v
	}
	return st
}

// memberStatus starts a member's status the way decide does for a stage.
func memberStatus(m Spec, g *group, o *observation, state *working) *Status {
	st := &Status{Name: m.Name, Image: m.Image, Upstream: m.Upstream, File: m.File, Key: m.Key, CurrentTag: o.current, Group: g.Name}
	_, st.Paused = state.Paused[m.Name]
	if v, ok := state.latestVerified(m.Name); ok {
		st.VerifiedFreight = &v
	}
	if len(o.records) > 0 {
		st.LastCommit, st.LastPromotion = o.records[0].Commit, o.records[0].Time
	}
	return st
}

// decideGroup decides a group once all its members (and upstream members) are observed:
// it fills the statuses of the group and its members and returns the set due, if any.
func (e *Engine) decideGroup(ctx context.Context, g *group, obs map[string]*observation, state *working, now time.Time, write bool, statuses map[string]*Status) *pendingSet {
	st := e.groupStatus(g, obs, state)
	statuses[g.Name] = st
	recs := e.groupRecords(ctx, g)
	if len(recs) > 0 {
		st.LastCommit, st.LastPromotion = recs[0].Commit, recs[0].Time
	}
	members := map[string]*Status{}
	for _, m := range g.members {
		members[m.Name] = memberStatus(m, g, obs[m.Name], state)
		statuses[m.Name] = members[m.Name]
	}
	defer e.mirror(g, st, members)

	if g.problem != nil {
		st.Decision, st.Error = DecisionFailed, g.problem.Error()
		st.Reason = st.Error
		return nil
	}
	for _, m := range g.members {
		if o := obs[m.Name]; o.err != nil {
			e.failMember(st, members, m.Name, o.err)
			return nil
		}
	}
	cur := make([]string, len(g.members))
	for i, m := range g.members {
		cur[i] = obs[m.Name].current
	}

	var (
		cand     freight.Set
		verified *Verification // the upstream group's verification, for soak
	)
	if g.upstream == "" {
		var missing []string
		changed := 0
		for _, m := range g.members {
			o := obs[m.Name]
			if !o.noMatch && !o.candidate.IsZero() {
				v := o.candidate.Value(m.Strategy)
				if v != o.current && !older(m.Strategy, v, o.current) {
					cand = append(cand, freight.Member{Stage: m.Name, Freight: o.candidate, Value: v})
					changed++
					continue
				}
			}
			missing = append(missing, m.Name)
			cand = append(cand, freight.Member{Stage: m.Name, Freight: e.runningFreight(m, o, state), Value: o.current})
		}
		if changed > 0 && g.RequireAll && len(missing) > 0 {
			st.setCandidate(cand)
			st.Decision, st.Reason = DecisionWait, fmt.Sprintf("waiting for a new candidate of %s (require-all); %s", strings.Join(missing, ", "), e.display(g, cand, cur))
			return nil
		}
	} else {
		ug, _ := e.groups.named(g.upstream)
		var up freight.Set
		for _, um := range ug.members {
			o := obs[um.Name]
			if o.err != nil || ug.problem != nil {
				st.Decision, st.Reason = DecisionWait, fmt.Sprintf("waiting: upstream group %s failed", ug.Name)
				return nil
			}
			up = append(up, freight.Member{Stage: um.Name, Value: o.current})
		}
		v, ok := verifiedValue(state.State, ug.Name, up.Value())
		if !ok {
			st.Decision, st.Reason = DecisionWait, fmt.Sprintf("waiting for %s to verify its set (%s)", ug.Name, e.displaySet(ug, up))
			return nil
		}
		verified = &v
		for _, m := range g.members {
			um := g.upMember[m.Name]
			value := obs[um].current
			f := freight.Freight{Image: m.Image, Tag: value}
			if uv, ok := verifiedValue(state.State, um, value); ok {
				f = uv.Freight
			}
			cand = append(cand, freight.Member{Stage: m.Name, Freight: f, Value: value})
		}
		for i, m := range g.members {
			if cand[i].Value != cur[i] && obs[m.Name].rejected[cand[i].Value] {
				st.setCandidate(cand)
				st.Decision = DecisionBlocked
				st.Reason = fmt.Sprintf("%s %s was rolled back here; waiting for %s to verify a newer set", g.label(m), cand[i].Value, ug.Name)
				return nil
			}
		}
	}
	st.setCandidate(cand)
	e.mu.Lock()
	e.groupCand[g.Name] = cand
	e.mu.Unlock()

	if sameValues(cand, cur) {
		st.Decision, st.Reason = DecisionUpToDate, "up to date at "+e.displaySet(g, cand)
		if write {
			commit, placedAt := obs[g.members[0].Name].commit, time.Time{}
			if len(recs) > 0 && recs[0].Value == cand.Value() {
				// The group's newest commit put this set in place.
				commit, placedAt = recs[0].Commit, recs[0].Time
			}
			e.verifySet(ctx, g, cand, commit, placedAt, state, now, st, members)
		}
		if st.Paused && st.Decision != DecisionFailed {
			st.Decision, st.Reason = DecisionHold, "paused; "+st.Reason
		}
		return nil
	}
	if st.Paused {
		st.Decision, st.Reason = DecisionHold, fmt.Sprintf("paused; %s is waiting", e.display(g, cand, cur))
		return nil
	}
	if g.upstream != "" {
		for i, m := range g.members {
			if older(m.Strategy, cand[i].Value, cur[i]) {
				st.Decision, st.Reason = DecisionHold, fmt.Sprintf("%s %s is older than the current %s; promote the set by hand if that is intended", g.label(m), cand[i].Value, cur[i])
				return nil
			}
		}
	}
	if verified != nil && g.soak() > 0 {
		if left := verified.VerifiedAt.Add(g.soak()).Sub(now); left > 0 {
			e.soakEnd(g.Name, now.Add(left))
			st.Decision, st.Reason = DecisionWait, fmt.Sprintf("waiting: %s soak, %s left", g.upstream, left.Round(time.Second))
			return nil
		}
	}
	if !g.autoPromote() && !state.approved(g.Name, cand.Value()) {
		st.Decision, st.Reason = DecisionWait, "waiting for approval of "+e.display(g, cand, cur)
		return nil
	}
	st.Decision, st.Reason = DecisionPromote, "promoting "+e.display(g, cand, cur)
	return &pendingSet{g: g, set: cand, current: cur, kind: gitwrite.Promote}
}

// mirror gives every member the group's decision: a member moves only with its group.
// A member that failed on its own keeps its error; the others say what blocks them.
func (e *Engine) mirror(g *group, st *Status, members map[string]*Status) {
	for i, m := range g.members {
		ms := members[m.Name]
		if i < len(st.Members) {
			st.Members[i].Current = ms.CurrentTag
		}
		if ms.Decision == DecisionFailed {
			continue
		}
		switch st.Decision {
		case DecisionFailed:
			ms.Decision, ms.Reason = DecisionBlocked, fmt.Sprintf("group %s: %s", g.Name, st.Error)
		default:
			ms.Decision, ms.Reason = st.Decision, fmt.Sprintf("group %s: %s", g.Name, st.Reason)
		}
		if i < len(st.Members) && st.Members[i].Candidate != "" {
			ms.Candidate = st.memberCandidate(i)
		}
	}
}

// failMember fails the group because of one member.
func (e *Engine) failMember(st *Status, members map[string]*Status, member string, err error) {
	ms := members[member]
	ms.Decision, ms.Error = DecisionFailed, (&StageError{Stage: member, Err: err}).Error()
	ms.Reason = ms.Error
	st.Decision, st.Error = DecisionFailed, fmt.Sprintf("member %s", ms.Error)
	st.Reason = st.Error
}

// runningFreight is the freight a member runs: its candidate when that is what runs,
// else the one it was verified with, else one made of the value.
func (e *Engine) runningFreight(m Spec, o *observation, state *working) freight.Freight {
	if !o.candidate.IsZero() && o.candidate.Value(m.Strategy) == o.current {
		return o.candidate
	}
	if v, ok := verifiedValue(state.State, m.Name, o.current); ok {
		return v.Freight
	}
	f := freight.Freight{Image: m.Image, Tag: o.current}
	if m.Strategy == warehouse.StrategyDigest {
		f.Tag, f.Digest = m.Constraint, o.current
	}
	return f
}

// groupRecords are the group's commits as of the pass's fetch, newest first; nil when
// they cannot be read (the members' observation reports that).
func (e *Engine) groupRecords(ctx context.Context, g *group) []gitwrite.Record {
	if len(g.members) == 0 {
		return nil
	}
	first := g.members[0]
	repo, err := e.Repo(ctx, first.RepoURL)
	if err != nil {
		return nil
	}
	recs, err := repo.FetchedHistory(ctx, first.Branch, g.Name)
	if err != nil {
		return nil
	}
	return recs
}

// verifySet verifies every member at the set's commit; the set is verified when all
// are. A member whose verification fails fails the group: nothing downstream takes it.
func (e *Engine) verifySet(ctx context.Context, g *group, set freight.Set, commit string, placedAt time.Time, state *working, now time.Time, st *Status, members map[string]*Status) {
	var pending []string
	for i, m := range g.members {
		err := e.verifyCurrent(ctx, m, set[i].Freight, commit, placedAt, state, now)
		if v, ok := state.latestVerified(m.Name); ok {
			members[m.Name].VerifiedFreight = &v
		}
		switch {
		case err == nil:
		case errors.Is(err, ErrPending):
			pending = append(pending, m.Name)
		default:
			e.failMember(st, members, m.Name, fmt.Errorf("verification of %s failed: %w", set[i].Value, err))
			st.Error = fmt.Sprintf("the set is not verified: %s", st.Error)
			st.Reason = st.Error
			return
		}
	}
	if len(pending) > 0 {
		st.Reason += fmt.Sprintf("; verification pending (%s)", strings.Join(pending, ", "))
		return
	}
	// Every member is verified with its freight (its bytes included: a member re-pushed and
	// verified again counts); the set's own record is made once per commit.
	if v, ok := state.verified(g.Name, set.ID()); !ok || !(v.Commit == commit || placedAt.IsZero() || v.VerifiedAt.After(placedAt.Add(time.Second))) {
		state.verifiedNow(g.Name, Verification{FreightID: set.ID(), Value: set.Value(), Commit: commit, VerifiedAt: now})
		e.log.Info("set verified", "group", g.Name, "set", set.Value(), "commit", commit)
	}
	v, _ := state.latestVerified(g.Name)
	st.VerifiedFreight = &v
}

// writeGroups writes the due sets, one Apply (one push) per repository and branch, and
// verifies what landed.
func (e *Engine) writeGroups(ctx context.Context, look *warehouse.Pass, due []*pendingSet, statuses map[string]*Status, state *working) {
	byRepo := map[string][]*pendingSet{}
	var keys []string
	for _, p := range due {
		held, err := e.recheckSet(ctx, look, p)
		if err != nil || held != "" {
			st := statuses[p.g.Name]
			if err != nil {
				st.Decision, st.Error = DecisionFailed, (&StageError{Stage: p.g.Name, Err: err}).Error()
				st.Reason = st.Error
			} else {
				st.Decision, st.Reason = DecisionHold, held
			}
			members := map[string]*Status{}
			for _, m := range p.g.members {
				members[m.Name] = statuses[m.Name]
			}
			e.mirror(p.g, st, members)
			continue
		}
		k := p.g.members[0].RepoURL + "\x00" + p.g.members[0].Branch
		if _, ok := byRepo[k]; !ok {
			keys = append(keys, k)
		}
		byRepo[k] = append(byRepo[k], p)
	}
	for _, k := range keys {
		ps := byRepo[k]
		var changes []gitwrite.Change
		for _, p := range ps {
			changes = append(changes, p.changes()...)
		}
		first := ps[0].g.members[0]
		repo, err := e.Repo(ctx, first.RepoURL)
		var results []gitwrite.Result
		if err == nil {
			results, _ = repo.Apply(ctx, first.Branch, changes...)
		}
		at := 0
		for _, p := range ps {
			n := len(p.g.members)
			var rs []gitwrite.Result
			if err == nil {
				rs = results[at : at+n]
			}
			at += n
			members := map[string]*Status{}
			for _, m := range p.g.members {
				members[m.Name] = statuses[m.Name]
			}
			e.landedSet(ctx, p, rs, err, statuses[p.g.Name], members, state)
			e.mirror(p.g, statuses[p.g.Name], members)
		}
	}
}

// recheckSet reads anew the digest of each member value the group found in the registry
// itself, for the reason recheck gives. Values taken from an upstream group are what the
// upstream verified and stay as they are; so do rollbacks, which go back to a value
// already in Git.
func (e *Engine) recheckSet(ctx context.Context, look *warehouse.Pass, p *pendingSet) (string, error) {
	if p.kind != gitwrite.Promote {
		return "", nil
	}
	for i, m := range p.g.members {
		if m.Strategy == warehouse.StrategyDigest || i >= len(p.set) || p.set[i].Value == p.current[i] {
			continue
		}
		f := p.set[i].Freight
		if f.Tag == "" {
			continue
		}
		cur, err := look.Resolve(ctx, f.Image, f.Tag)
		if err != nil {
			return "", fmt.Errorf("member %s: %w", m.Name, err)
		}
		if held := repushed(m, f, cur); held != "" {
			return held, nil
		}
		p.set[i].Freight.Digest = cur.Digest
	}
	return "", nil
}

// changes are the set's member changes, in member order, for one commit.
func (p *pendingSet) changes() []gitwrite.Change {
	out := make([]gitwrite.Change, len(p.g.members))
	for i, m := range p.g.members {
		f := p.set[i].Freight
		out[i] = gitwrite.Change{
			Stage: m.Name, File: m.File, Key: m.Key,
			Image: m.Image, Tag: f.Tag, Digest: f.Digest, Value: p.set[i].Value,
			FreightID: f.ID(), Kind: p.kind, Expect: p.current[i],
			Group: p.g.Name, GroupFreight: p.set.ID(), Label: p.g.label(m), SubjectTemplate: p.g.Subject,
		}
		if p.kind == gitwrite.Rollback && p.current[i] != p.set[i].Value {
			out[i].Rejected = p.current[i]
		}
	}
	return out
}

// landedSet records a set's Apply results in the statuses and verifies it.
func (e *Engine) landedSet(ctx context.Context, p *pendingSet, rs []gitwrite.Result, applyErr error, st *Status, members map[string]*Status, state *working) {
	g := p.g
	now := e.clock.Now()
	if applyErr != nil {
		st.Decision, st.Error = DecisionFailed, (&StageError{Stage: g.Name, Err: applyErr}).Error()
		st.Reason = st.Error
		return
	}
	commit, failed := "", false
	for i, r := range rs {
		var ce *gitwrite.ChangeError
		if r.Err != nil && errors.As(r.Err, &ce) && !errors.Is(r.Err, gitwrite.ErrSetIncomplete) {
			// This member's own edit failed (a missing key, someone else's edit).
			e.failMember(st, members, g.members[i].Name, r.Err)
			st.Error = fmt.Sprintf("the set was not written: %s", st.Error)
			st.Reason = st.Error
			e.log.Error("set not written", "group", g.Name, "err", r.Err)
			return
		}
		if r.Err != nil {
			st.Decision, st.Error = DecisionFailed, (&StageError{Stage: g.Name, Err: r.Err}).Error()
			st.Reason, failed = st.Error, true
		}
		if r.Commit != "" {
			commit = r.Commit
		}
	}
	if failed {
		return
	}
	verb := "promoted"
	if p.kind == gitwrite.Rollback {
		verb = "rolled back"
	}
	placedAt := now
	if commit == "" {
		st.Decision, st.Reason = DecisionUpToDate, "up to date at "+e.displaySet(g, p.set)
		commit, placedAt = members[g.members[0].Name].LastCommit, time.Time{}
	} else {
		st.LastCommit, st.LastPromotion = commit, now
		st.Decision, st.Reason = DecisionPromote, fmt.Sprintf("%s %s in %s", verb, e.display(g, p.set, p.current), short(commit))
		e.log.Info(verb, "group", g.Name, "set", p.set.Value(), "commit", commit, "freight", p.set.ID())
	}
	for i, m := range g.members {
		ms := members[m.Name]
		ms.CurrentTag = p.set[i].Value
		st.Members[i].Current = p.set[i].Value
		if commit != "" && p.set[i].Value != p.current[i] {
			ms.LastCommit, ms.LastPromotion = commit, now
		}
	}
	st.CurrentTag = p.set.Value()
	e.verifySet(ctx, g, p.set, commit, placedAt, state, now, st, members)
}

// display is a set as people read it: "frontend 1.2.1 → 1.2.2, backend 2.1.0".
func (e *Engine) display(g *group, set freight.Set, cur []string) string {
	parts := make([]string, len(set))
	for i, m := range g.members {
		if set[i].Value == cur[i] {
			parts[i] = fmt.Sprintf("%s %s", g.label(m), orNothing(set[i].Value))
		} else {
			parts[i] = fmt.Sprintf("%s %s → %s", g.label(m), orNothing(cur[i]), set[i].Value)
		}
	}
	return strings.Join(parts, ", ")
}

func (e *Engine) displaySet(g *group, set freight.Set) string {
	parts := make([]string, len(set))
	for i, m := range g.members {
		parts[i] = fmt.Sprintf("%s %s", g.label(m), orNothing(set[i].Value))
	}
	return strings.Join(parts, ", ")
}

func sameValues(set freight.Set, cur []string) bool {
	for i := range set {
		if set[i].Value != cur[i] {
			return false
		}
	}
	return true
}

// setCandidate lists the set's values as the members' candidates.
func (st *Status) setCandidate(set freight.Set) {
	for i := range set {
		if i < len(st.Members) {
			st.Members[i].Candidate = set[i].Value
		}
	}
	st.candidateSet = set
}

func (st *Status) memberCandidate(i int) *freight.Freight {
	if i < len(st.candidateSet) {
		f := st.candidateSet[i].Freight
		return &f
	}
	return nil
}

// groupsJustTook tells the groups downstream of a group that just promoted that they
// decided before it moved, or their table reads as if they ignored the new set.
func (e *Engine) groupsJustTook(statuses map[string]*Status) {
	for _, g := range e.groups.list {
		up, ok := statuses[g.upstream]
		st := statuses[g.Name]
		if g.upstream == "" || !ok || st == nil || up.Decision != DecisionPromote || st.Decision == DecisionFailed || st.Decision == DecisionPromote {
			continue
		}
		msg := fmt.Sprintf("%s just took a new set", g.upstream)
		if g.soak() > 0 {
			msg += fmt.Sprintf(", then a %s soak", g.soak())
		}
		if st.Paused {
			st.Reason += "; " + msg
		} else {
			st.Decision, st.Reason = DecisionWait, "waiting: "+msg
		}
		members := map[string]*Status{}
		for _, m := range g.members {
			members[m.Name] = statuses[m.Name]
		}
		e.mirror(g, st, members)
	}
}
