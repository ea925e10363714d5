package stage

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// This file performs what decide concluded, for a release group and a stage alone (a set
// of one) the same way: statuses, verification, the Git write and what landed.

// pendingSet is a unit's set due to be written.
type pendingSet struct {
	g       *group
	set     freight.Set
	current []string // each member's value before
	kind    gitwrite.Kind
	// err is why the set was not written, or written but not verified (nil when it was).
	err error
	// written says Apply took the set: commit is its commit, "" when the files held it.
	written bool
	commit  string
	// proposed is, in pull-request mode, the pull request the set waits in.
	proposed *PullRequest
	// signed are, per member whose value changes, its signature policies' results as
	// checked right before the write (Kropipe-Signed-By, Kropipe-Provenance trailers).
	signed [][]signature.Result
	// requestedBy is who asked for a manual set (Kropipe-Requested-By), "" for a pass's.
	requestedBy string
}

// MemberStatus is one member of a release group as the group's status lists it.
type MemberStatus struct {
	Stage     string `json:"stage"`
	Current   string `json:"current,omitempty"`   // the value in Git
	Candidate string `json:"candidate,omitempty"` // its value in the set the group would run next
}

// unitStatuses starts the statuses of a unit and of its members from what the pass observed
// and puts them in statuses; it returns the unit's (for a stage alone, the stage's own).
func unitStatuses(u *group, obs map[string]*observation, recs []gitwrite.Record, state State, statuses map[string]*Status) *Status {
	var cur freight.Set
	for _, m := range u.members {
		o := obs[m.Name]
		st := &Status{Name: m.Name, Image: m.Image, Upstream: m.Upstream, File: m.File, Key: m.Key, CurrentTag: o.current}
		_, st.Paused = state.Paused[m.Name]
		st.PausedBy = state.PausedBy[m.Name]
		if len(o.records) > 0 {
			st.LastCommit, st.LastPromotion = o.records[0].Commit, o.records[0].Time
		}
		if !u.lone {
			st.Group = u.Name
		}
		st.Skipped = o.skipped
		statuses[m.Name] = st
		cur = append(cur, freight.Member{Stage: m.Name, Freight: freight.Freight{Image: m.Image}, Value: o.current})
	}
	if u.lone {
		return statuses[u.Name]
	}
	st := &Status{Name: u.Name, Upstream: u.upstream, CurrentTag: cur.Value()}
	_, st.Paused = state.Paused[u.Name]
	st.PausedBy = state.PausedBy[u.Name]
	for _, m := range u.members {
		st.Members = append(st.Members, MemberStatus{Stage: m.Name, Current: obs[m.Name].current})
		for _, sk := range obs[m.Name].skipped {
			st.Skipped = append(st.Skipped, m.Name+" "+sk)
		}
	}
	if len(recs) > 0 {
		st.LastCommit, st.LastPromotion = recs[0].Commit, recs[0].Time
	}
	statuses[u.Name] = st
	return st
}

// settle writes a decision into the statuses of a unit and its members.
func (e *Engine) settle(u *group, d decision, statuses map[string]*Status) {
	st := statuses[u.Name]
	if d.Decision == DecisionFailed {
		fail(u, statuses, d.Member, d.Err, "")
		return
	}
	st.Decision, st.Reason = d.Decision, d.Reason
	if d.Cand != nil {
		st.setCandidate(u, d.Cand)
		if d.Decision != DecisionBlocked && !u.lone { // a stage alone's is its status' Candidate
			e.mu.Lock()
			e.groupCand[u.Name] = d.Cand
			e.mu.Unlock()
		}
	}
	if !d.SoakEnd.IsZero() {
		e.soakEnd(u.Name, d.SoakEnd)
	}
}

// fail fails a unit: because of one member (its own error kept on it, the group's message
// led by prefix), or as a whole (member "").
func fail(u *group, statuses map[string]*Status, member string, err error, prefix string) {
	st := statuses[u.Name]
	switch {
	case member == "" && !u.lone:
		st.Decision, st.Error = DecisionFailed, (&StageError{Stage: u.Name, Err: err}).Error()
		if ge := (*GroupError)(nil); errors.As(err, &ge) {
			st.Error = ge.Error() // it names the group itself
		}
	case u.lone:
		st.Decision, st.Error = DecisionFailed, (&StageError{Stage: u.Name, Err: err}).Error()
	default:
		ms := statuses[member]
		ms.Decision, ms.Error = DecisionFailed, (&StageError{Stage: member, Err: err}).Error()
		ms.Reason = ms.Error
		st.Decision, st.Error = DecisionFailed, prefix+"member "+ms.Error
	}
	st.Reason = st.Error
}

// setCandidate shows the set the unit would run next: a stage's candidate, a group's
// members' values (mirror gives them to the members).
func (st *Status) setCandidate(u *group, set freight.Set) {
	if u.lone {
		f := set[0].Freight
		st.Candidate = &f
		return
	}
	for i := range set {
		if i < len(st.Members) {
			st.Members[i].Candidate = set[i].Value
		}
	}
	st.candidateSet = set
}

// mirror gives every member of a group the group's decision: a member moves only with its
// group. A member that failed on its own keeps its error; the others say what blocks them.
func mirror(u *group, statuses map[string]*Status) {
	if u.lone {
		return
	}
	st := statuses[u.Name]
	for i, m := range u.members {
		ms := statuses[m.Name]
		if i < len(st.Members) {
			st.Members[i].Current = ms.CurrentTag
		}
		if ms.Decision == DecisionFailed {
			continue
		}
		switch st.Decision {
		case DecisionFailed:
			ms.Decision, ms.Reason = DecisionBlocked, fmt.Sprintf("group %s: %s", u.Name, st.Error)
		default:
			ms.Decision, ms.Reason = st.Decision, fmt.Sprintf("group %s: %s", u.Name, st.Reason)
		}
		if i < len(st.candidateSet) {
			f := st.candidateSet[i].Freight
			ms.Candidate = &f
		}
		ms.PullRequest = st.PullRequest
	}
}

// showVerified shows the newest verifications and runs of a unit and its members.
func showVerified(u *group, statuses map[string]*Status, state State) {
	for _, m := range u.members {
		st := statuses[m.Name]
		if v, ok := state.latestVerified(m.Name); ok {
			st.VerifiedFreight = &v
		}
		if r, ok := state.latestRun(m.Name); ok {
			st.Verification = &r
		}
	}
	if !u.lone {
		if v, ok := state.latestVerified(u.Name); ok {
			statuses[u.Name].VerifiedFreight = &v
		}
	}
}

// verifySet makes sure every member runs its freight verified since commit put the set
// there (at placedAt; zero when no commit of the unit did), and records the set verified
// when all are. A member whose verification fails fails the unit: nothing downstream takes
// it. landed says the commit was just made. It returns why the set is not verified.
func (e *Engine) verifySet(ctx context.Context, u *group, set freight.Set, commit string, placedAt time.Time, landed bool, state *working, now time.Time, statuses map[string]*Status) error {
	st := statuses[u.Name]
	var pending []string
	for i, m := range u.members {
		err := e.verifyCurrent(ctx, m, set[i].Freight, commit, placedAt, state, now)
		switch {
		case err == nil:
		case errors.Is(err, ErrPending):
			pending = append(pending, m.Name)
		default:
			if u.lone && landed {
				err = fmt.Errorf("%s landed in %s but verification failed: %w", set[i].Value, short(commit), err)
			} else {
				err = fmt.Errorf("verification of %s failed: %w", set[i].Value, err)
			}
			fail(u, statuses, m.Name, err, "the set is not verified: ")
			return err
		}
	}
	switch {
	case len(pending) > 0 && u.lone:
		st.Reason += "; verification pending"
		return ErrPending
	case len(pending) > 0:
		st.Reason += fmt.Sprintf("; verification pending (%s)", strings.Join(pending, ", "))
		return ErrPending
	case u.lone:
		return nil // the member's verification is the stage's
	}
	// Every member is verified with its freight (its bytes included: a member re-pushed and
	// verified again counts); the set's own record is made once per commit.
	if v, ok := state.verified(u.Name, set.ID()); !ok || !verifiedSince(v, commit, placedAt) {
		state.verifiedNow(u.Name, Verification{FreightID: set.ID(), Value: set.Value(), Commit: commit, VerifiedAt: now})
		e.log.Info("set verified", "group", u.Name, "set", set.Value(), "commit", commit)
	}
	return nil
}

// verifiedSince reports whether verification v counts for what commit put in place at
// placedAt: made at that commit, or after it (freight kropipe found running when it
// started counts), or there is no commit of the unit to compare with.
func verifiedSince(v Verification, commit string, placedAt time.Time) bool {
	return v.Commit == commit || placedAt.IsZero() || v.VerifiedAt.After(placedAt.Add(time.Second))
}

// verifyCurrent makes sure the freight a stage runs is verified since commit put it
// there. Freight verified before a rollback or a re-promotion wrote it again is verified
// again: the new commit must reach the cluster, and the verifier is what syncs it.
func (e *Engine) verifyCurrent(ctx context.Context, s Spec, f freight.Freight, commit string, placedAt time.Time, state *working, now time.Time) error {
	if v, ok := state.verified(s.Name, f.ID()); ok && verifiedSince(v, commit, placedAt) {
		return nil
	}
	err := e.verifier.Verify(ctx, s, f, commit)
	if rr, ok := e.verifier.(RunReporter); ok {
		if run, ok := rr.LastRun(s.Name); ok && run.Freight == f.ID() {
			state.ranNow(s.Name, run)
		}
	}
	if errors.Is(err, ErrPending) {
		// Every pass while Argo CD syncs or a Job runs: the status says so, the log need not.
		e.log.Debug("verification pending", "stage", s.Name, "freight", f.Ref(), "err", err)
		return err
	}
	if err != nil {
		e.log.Warn("verification not passed", "stage", s.Name, "freight", f.Ref(), "err", err)
		return err
	}
	state.verifiedNow(s.Name, Verification{Freight: f, FreightID: f.ID(), Value: f.Value(s.Strategy), Commit: commit, VerifiedAt: now})
	e.log.Info("verified", "stage", s.Name, "freight", f.Ref(), "commit", commit)
	return nil
}

// write writes the due sets, one Apply (one push) per repository and branch, and verifies
// what landed. look is the pass's registry look (recheck).
func (e *Engine) write(ctx context.Context, look *warehouse.Pass, due []*pendingSet, statuses map[string]*Status, state *working) {
	byRepo := map[string][]*pendingSet{}
	var keys []string
	for _, p := range due {
		held, unsigned, err := e.recheck(ctx, look, p)
		if err != nil || held != "" {
			p.err = err
			switch {
			case err != nil:
				fail(p.g, statuses, "", err, "")
			case unsigned:
				st := statuses[p.g.Name]
				st.Decision, st.Reason = DecisionHold, held
				p.err = fmt.Errorf("%w: %s; push its signature, or name a signed tag", ErrNothingToDo, held)
			default:
				st := statuses[p.g.Name]
				st.Decision, st.Reason = DecisionHold, held
				p.err = fmt.Errorf("%w: %s; name the tags to take what they are now", ErrNothingToDo, held)
			}
			mirror(p.g, statuses)
			continue
		}
		if p.g.pullRequestMode() {
			e.propose(ctx, p, statuses, state)
			mirror(p.g, statuses)
			continue
		}
		k := p.g.members[0].RepoURL + "\x00" + p.g.members[0].Branch + "\x00" + p.g.members[0].commitVia()
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
		if err == nil && first.commitVia() == CommitViaGitHubAPI {
			var c gitwrite.Committer
			if c, err = e.committerOf(ctx, first); err == nil {
				results, _ = repo.ApplyThrough(ctx, c, first.Branch, changes...)
			}
		} else if err == nil {
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
			e.landed(ctx, p, rs, err, statuses, state)
			mirror(p.g, statuses)
		}
	}
}

// recheck reads anew the digest of each value a set changes, right before it is written
// (one HEAD; the manifest only when the registry reports a digest not proven before).
// Discovery may have taken a digest proven in an earlier pass (warehouse.Pass), and a tag
// pushed again since must not be written with its old digest: a member that discovers its
// own freight takes what the tag names now. A member taking its upstream's verified
// freight must write exactly those bytes: when the tag names others now, the set holds
// (the returned reason) until the upstream has verified them. Rollbacks go back to a value
// already in Git, and the digest strategy's candidate is its digest, read in this pass:
// neither needs a second look.
//
// The digest about to be written is then checked under the member's signature policies
// (answered from the verifiers' cache unless the digest is new): unsigned says the set holds
// because one is not signed as required.
func (e *Engine) recheck(ctx context.Context, look *warehouse.Pass, p *pendingSet) (held string, unsigned bool, err error) {
	if p.kind != gitwrite.Promote {
		return "", false, nil
	}
	p.signed = make([][]signature.Result, len(p.g.members))
	for i, m := range p.g.members {
		f := p.set[i].Freight
		if p.set[i].Value == p.current[i] {
			continue
		}
		if m.Strategy != warehouse.StrategyDigest && f.Tag != "" {
			now, err := look.Resolve(ctx, f.Image, f.Tag)
			if err != nil {
				if p.g.lone {
					return "", false, err
				}
				return "", false, fmt.Errorf("member %s: %w", m.Name, err)
			}
			if m.Upstream != "" && f.Digest != "" && f.Digest != now.Digest {
				return fmt.Sprintf("held: %s:%s was re-pushed: the registry now has %s, %s verified %s", path.Base(m.Image), f.Tag, shortDigest(now.Digest), m.Upstream, shortDigest(f.Digest)), false, nil
			}
			p.set[i].Freight.Digest = now.Digest
		}
		res, why, err := e.checkSigned(ctx, m.Signatures, p.set[i].Freight)
		switch {
		case err != nil && p.g.lone:
			return "", false, err
		case err != nil:
			return "", false, fmt.Errorf("member %s: %w", m.Name, err)
		case why != "" && p.g.lone:
			return "held: not signed as required: " + why, true, nil
		case why != "":
			return fmt.Sprintf("held: member %s is not signed as required: %s", m.Name, why), true, nil
		}
		p.signed[i] = res
	}
	return "", false, nil
}

// changes are the set's member changes, in member order, for one commit. A stage alone
// writes a change of its own (its commit subject names the image, not a group).
func (p *pendingSet) changes() []gitwrite.Change {
	out := make([]gitwrite.Change, len(p.g.members))
	for i, m := range p.g.members {
		f := p.set[i].Freight
		out[i] = gitwrite.Change{
			Stage: m.Name, File: m.File, Key: m.Key,
			Image: m.Image, Tag: f.Tag, Digest: f.Digest, Value: p.set[i].Value,
			FreightID: f.ID(), Kind: p.kind, Expect: p.current[i], RequestedBy: p.requestedBy,
		}
		if !p.g.lone {
			out[i].Group, out[i].GroupFreight, out[i].Label, out[i].SubjectTemplate = p.g.Name, p.set.ID(), p.g.label(m), p.g.Subject
		}
		if p.kind == gitwrite.Rollback && p.current[i] != p.set[i].Value {
			out[i].Rejected = p.current[i]
		}
		if i < len(p.signed) {
			for _, r := range p.signed[i] {
				out[i].SignedBy = append(out[i].SignedBy, r.SignedBy)
				if r.Provenance != nil {
					out[i].Provenance = append(out[i].Provenance, gitwrite.Provenance{Builder: r.Provenance.Builder, Source: r.Provenance.Source, Digest: r.Provenance.Digest})
				}
			}
		}
	}
	return out
}

// landed records a set's Apply results in the statuses and verifies it.
func (e *Engine) landed(ctx context.Context, p *pendingSet, rs []gitwrite.Result, applyErr error, statuses map[string]*Status, state *working) {
	u := p.g
	st := statuses[u.Name]
	now := e.clock.Now()
	if applyErr != nil {
		p.err = applyErr
		fail(u, statuses, "", applyErr, "")
		return
	}
	commit := ""
	for i, r := range rs {
		var ce *gitwrite.ChangeError
		if r.Err != nil && errors.As(r.Err, &ce) && !errors.Is(r.Err, gitwrite.ErrSetIncomplete) {
			// This member's own edit failed (a missing key, someone else's edit).
			p.err = r.Err
			fail(u, statuses, u.members[i].Name, r.Err, "the set was not written: ")
			e.log.Error("promotion failed", "stage", u.Name, "err", r.Err)
			return
		}
		if r.Err != nil && p.err == nil {
			p.err = r.Err
			fail(u, statuses, "", r.Err, "")
		}
		if r.Commit != "" {
			commit = r.Commit
		}
	}
	if p.err != nil {
		e.log.Error("promotion failed", "stage", u.Name, "err", p.err)
		return
	}
	p.written, p.commit = true, commit
	verb := "promoted"
	if p.kind == gitwrite.Rollback {
		verb = "rolled back"
	}
	placedAt := now
	st.Error = ""
	if commit == "" {
		st.Decision, st.Reason = DecisionUpToDate, "up to date at "+u.displaySet(p.set)
		commit, placedAt = statuses[u.members[0].Name].LastCommit, time.Time{}
	} else {
		st.LastCommit, st.LastPromotion = commit, now
		st.Decision, st.Reason = DecisionPromote, fmt.Sprintf("%s %s in %s", verb, u.display(p.set, p.current), short(commit))
		e.log.Info(verb, "stage", u.Name, "set", u.value(p.set), "commit", commit, "freight", u.id(p.set))
	}
	for i, m := range u.members {
		ms := statuses[m.Name]
		ms.CurrentTag = p.set[i].Value
		if i < len(st.Members) {
			st.Members[i].Current = p.set[i].Value
		}
		if commit != "" && p.set[i].Value != p.current[i] {
			ms.LastCommit, ms.LastPromotion = commit, now
		}
	}
	st.CurrentTag = u.value(p.set)
	if err := e.verifySet(ctx, u, p.set, commit, placedAt, true, state, now, statuses); err != nil && !errors.Is(err, ErrPending) {
		p.err = err
	}
	showVerified(u, statuses, state.State)
}

// justTook tells the units downstream of a unit that just promoted that they decided
// before it moved, or their table reads as if they ignored the new freight.
func justTook(units []*group, statuses map[string]*Status) {
	for _, u := range units {
		st := statuses[u.Name]
		if u.up == nil || st == nil {
			continue
		}
		up, ok := statuses[u.up.Name]
		if !ok || up.Decision != DecisionPromote || st.Decision == DecisionFailed || st.Decision == DecisionPromote {
			continue
		}
		msg := fmt.Sprintf("%s just took a new set", u.up.Name)
		if u.lone {
			msg = fmt.Sprintf("%s just took %s", u.up.Name, up.CurrentTag)
		}
		if soak := u.soak(); soak > 0 {
			msg += fmt.Sprintf(", then a %s soak", soak)
		}
		if st.Paused {
			st.Reason += "; " + msg
		} else {
			st.Decision, st.Reason = DecisionWait, "waiting: "+msg
			if u.lone {
				st.Candidate = up.Candidate
			}
		}
		mirror(u, statuses)
	}
}
