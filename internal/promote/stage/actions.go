package stage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// Outcome is what a manual promotion or rollback did.
type Outcome struct {
	Stage   string `json:"stage"`
	Kind    string `json:"kind"` // promote or rollback
	Old     string `json:"old"`
	New     string `json:"new"`
	Commit  string `json:"commit,omitempty"`
	Skipped bool   `json:"skipped,omitempty"` // the file already held New
	// PullRequest is, in pull-request mode, the pull request the change waits in (Commit is
	// then the commit proposed on its branch, not yet on the stage's branch).
	PullRequest *PullRequest `json:"pullRequest,omitempty"`
	// RequestedBy is who asked (RequestedBy), as the commit's Kropipe-Requested-By says.
	RequestedBy string `json:"requestedBy,omitempty"`
}

// ErrNothingToDo is wrapped when an action has no candidate or no earlier value.
var ErrNothingToDo = errors.New("nothing to do")

// WithGroups sets the release groups among the stages (see GroupSpec).
func WithGroups(groups ...GroupSpec) Option { return func(e *Engine) { e.groupSpecs = groups } }

// Groups returns the release groups as configured.
func (e *Engine) Groups() []GroupSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]GroupSpec(nil), e.groupSpecs...)
}

func (e *Engine) groupNamed(name string) (*group, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.groups.named(name)
}

// actionUnit is the unit an action names: a release group, or a stage alone.
func (e *Engine) actionUnit(name string) (*group, error) {
	if g, ok := e.groupNamed(name); ok {
		return g, nil
	}
	return e.stageAlone(name)
}

// stageAlone is a stage as a unit of its own, a member of a group forced alone included.
func (e *Engine) stageAlone(name string) (*group, error) {
	s, err := e.spec(name)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok := e.groups.alone[name]; ok {
		return u, nil
	}
	return loneUnit(s), nil
}

// refuseMember says why a member of a group is not acted on alone.
func (e *Engine) refuseMember(stage, verb string) error {
	e.mu.Lock()
	g, ok := e.groups.groupOf(stage)
	e.mu.Unlock()
	if !ok {
		return nil
	}
	return fmt.Errorf("stage %q: %w %q, which moves its members together; %s the group (promoter %s %s) or force this member alone with --member", stage, ErrGroupMember, g.Name, verb, verb, g.Name)
}

// Promote writes tag to the stage now, bypassing soak, approval, pause and the
// rejected list: a human asked for it. tag "" means the stage's current candidate.
// The tag must exist in the registry. For a release group, tag "" is its candidate
// set and "member=tag,…" names members' tags; a member of a group is refused
// (ErrGroupMember): PromoteMember forces it alone. With Expect it is done only while
// the stage (the group's set) runs that value, else it fails with ErrMoved.
func (e *Engine) Promote(ctx context.Context, stage, tag string, opts ...ActionOption) (Outcome, error) {
	if err := e.refuseMember(stage, "promote"); err != nil {
		return Outcome{}, err
	}
	u, err := e.actionUnit(stage)
	if err != nil {
		return Outcome{}, err
	}
	return e.promote(ctx, u, tag, actionOf(opts))
}

// MemberAloneWarning is what acting on one member of a release group alone costs, in the
// words `promoter promote --member` and the pipeline page both use.
const MemberAloneWarning = "its group's set then differs from what was verified together"

// PromoteMember is Promote for a member of a release group, alone: its group's set
// then no longer holds what was verified together.
func (e *Engine) PromoteMember(ctx context.Context, stage, tag string, opts ...ActionOption) (Outcome, error) {
	u, err := e.stageAlone(stage)
	if err != nil {
		return Outcome{}, err
	}
	return e.promote(ctx, u, tag, actionOf(opts))
}

// Rollback writes the value the stage held before its current one (from the
// Kropipe-* trailers in Git history), or toTag when given, with a Kropipe-Rejected
// trailer naming the current value, which is then never auto-promoted there again.
// For a release group it writes the previous set (or "member=tag,…") in one commit; a
// member of a group is refused (ErrGroupMember): RollbackMember forces it alone. With
// Expect it is done only while the stage (the group's set) runs that value, else it fails
// with ErrMoved: a retried rollback never rolls back twice.
func (e *Engine) Rollback(ctx context.Context, stage, toTag string, opts ...ActionOption) (Outcome, error) {
	if err := e.refuseMember(stage, "rollback"); err != nil {
		return Outcome{}, err
	}
	u, err := e.actionUnit(stage)
	if err != nil {
		return Outcome{}, err
	}
	return e.rollback(ctx, u, toTag, actionOf(opts))
}

// RollbackMember is Rollback for a member of a release group, alone.
func (e *Engine) RollbackMember(ctx context.Context, stage, toTag string, opts ...ActionOption) (Outcome, error) {
	u, err := e.stageAlone(stage)
	if err != nil {
		return Outcome{}, err
	}
	return e.rollback(ctx, u, toTag, actionOf(opts))
}

// parseSetValues reads "stage=value, stage=value" (or "label=value") into a value per
// member; members not named keep def's value. A stage alone takes arg as its value.
func parseSetValues(g *group, arg string, def []string) ([]string, error) {
	if g.lone {
		return []string{arg}, nil
	}
	out := append([]string(nil), def...)
	for _, part := range strings.Split(arg, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("group %q: %q is not member=tag; name members and tags like %s=1.2.3,%s=2.1.0", g.Name, part, g.label(g.members[0]), g.label(g.members[len(g.members)-1]))
		}
		found := false
		for i, m := range g.members {
			if k == m.Name || k == g.label(m) {
				out[i], found = v, true
			}
		}
		if !found {
			var known []string
			for _, m := range g.members {
				known = append(known, g.label(m))
			}
			return nil, fmt.Errorf("group %q: %q is not a member; its members are %s", g.Name, k, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// readSet reads every member's value from Git (fetching the branch).
func (e *Engine) readSet(ctx context.Context, g *group) (*gitwrite.Repo, []string, error) {
	first := g.members[0]
	repo, err := e.Repo(ctx, first.RepoURL)
	if err != nil {
		return nil, nil, &StageError{Stage: g.Name, Err: err}
	}
	cur := make([]string, len(g.members))
	for i, m := range g.members {
		read := repo.ReadFetched
		if i == 0 {
			read = repo.Read // fetch once, read every member from there
		}
		v, _, err := read(ctx, m.Branch, m.File, m.Key)
		if err != nil {
			err = fmt.Errorf("reading %s (key %s): %w", m.File, m.Key, err)
			if !g.lone {
				err = fmt.Errorf("member %s: %w", m.Name, err)
			}
			return nil, nil, &StageError{Stage: g.Name, Err: err}
		}
		cur[i] = v
	}
	return repo, cur, nil
}

// setOf is the set of values, each member's freight read from the registry when it
// changes from cur (for a stage alone, always: the tag must exist).
func (e *Engine) setOf(ctx context.Context, g *group, values, cur []string) (freight.Set, error) {
	var set freight.Set
	for i, m := range g.members {
		f, v := freight.Freight{Image: m.Image, Tag: values[i]}, values[i]
		if values[i] != cur[i] || g.lone {
			var err error
			if f, err = e.freightOf(ctx, m, values[i]); err != nil {
				if !g.lone {
					err = fmt.Errorf("member %s: %w", m.Name, err)
				}
				return nil, &StageError{Stage: g.Name, Err: err}
			}
			v = f.Value(m.Strategy)
		}
		set = append(set, freight.Member{Stage: m.Name, Freight: f, Value: v})
	}
	return set, nil
}

// freightOf is what value names for member m now: a tag as the registry has it, or for
// the digest strategy a digest itself (the registry keeps it while anything refers to it).
func (e *Engine) freightOf(ctx context.Context, m Spec, value string) (freight.Freight, error) {
	if m.Strategy == warehouse.StrategyDigest && strings.HasPrefix(value, "sha256:") {
		return freight.Freight{Image: m.Image, Tag: m.Constraint, Digest: value, DiscoveredAt: e.clock.Now()}, nil
	}
	return e.wh.Resolve(ctx, m.Image, value)
}

// promote writes a set now, bypassing soak, approval and pause: tags "" is the unit's
// candidate, else the tag (for a group, "member=tag" pairs changing those members from
// their current value). Every tag must exist in the registry. expect, when set, is what
// the unit must run (its value, for a group its set) for the write to happen.
func (e *Engine) promote(ctx context.Context, u *group, tags string, a action) (Outcome, error) {
	expect := a.expect
	e.work.Lock()
	defer e.work.Unlock()
	if err := notStarted(ctx, u.Name); err != nil {
		return Outcome{}, err
	}
	if u.problem != nil {
		return Outcome{}, u.problem
	}
	_, cur, err := e.readSet(ctx, u)
	if err != nil {
		return Outcome{}, err
	}
	if err := stillRuns(u, cur, expect); err != nil {
		return Outcome{}, err
	}
	values, err := e.candidateValues(ctx, u, tags, cur)
	if err != nil {
		return Outcome{}, err
	}
	set, err := e.setOf(ctx, u, values, cur)
	if err != nil {
		return Outcome{}, err
	}
	return e.applySet(ctx, &pendingSet{g: u, set: set, current: cur, kind: gitwrite.Promote, requestedBy: a.requestedBy}, expect)
}

// candidateValues are the values a promotion writes: tags as given, or the unit's
// candidate from the last pass (a pass that writes nothing first, when none ran).
func (e *Engine) candidateValues(ctx context.Context, u *group, tags string, cur []string) ([]string, error) {
	if tags != "" {
		return parseSetValues(u, tags, cur)
	}
	if u.lone {
		st, _ := e.StatusOf(u.Name)
		if st.CheckedAt.IsZero() {
			_ = e.pass(ctx, false)
			st, _ = e.StatusOf(u.Name)
		}
		if st.Candidate == nil {
			return nil, fmt.Errorf("stage %q: %w: no candidate (%s); name the tag: promoter promote %s TAG", u.Name, ErrNothingToDo, st.Reason, u.Name)
		}
		return []string{st.Candidate.Tag}, nil
	}
	cand, ok := e.candidateSet(u)
	if !ok {
		_ = e.pass(ctx, false)
		cand, ok = e.candidateSet(u)
	}
	if !ok || sameValues(cand, cur) {
		st, _ := e.StatusOf(u.Name)
		return nil, fmt.Errorf("group %q: %w: no new set (%s); name the tags: promoter promote %s %s=TAG", u.Name, ErrNothingToDo, st.Reason, u.Name, u.label(u.members[0]))
	}
	values := make([]string, len(cand))
	for i := range cand {
		values[i] = cand[i].Value
	}
	return values, nil
}

func (e *Engine) candidateSet(u *group) (freight.Set, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cand, ok := e.groupCand[u.Name]
	return cand, ok
}

// rollback writes the set the unit ran before its current one (from its newest commit
// that wrote the current one), or the values named (for a group "member=tag"), in one
// commit that rejects each changed member's current value there.
func (e *Engine) rollback(ctx context.Context, u *group, to string, a action) (Outcome, error) {
	expect := a.expect
	e.work.Lock()
	defer e.work.Unlock()
	if err := notStarted(ctx, u.Name); err != nil {
		return Outcome{}, err
	}
	if u.problem != nil {
		return Outcome{}, u.problem
	}
	repo, cur, err := e.readSet(ctx, u)
	if err != nil {
		return Outcome{}, err
	}
	if err := stillRuns(u, cur, expect); err != nil {
		return Outcome{}, err
	}
	values := cur
	if to != "" {
		if values, err = parseSetValues(u, to, cur); err != nil {
			return Outcome{}, err
		}
	} else {
		recs, err := repo.FetchedHistory(ctx, u.members[0].Branch, u.Name)
		if err != nil {
			return Outcome{}, &StageError{Stage: u.Name, Err: err}
		}
		if values, err = previous(u, recs, cur); err != nil {
			return Outcome{}, err
		}
	}
	if sameValues(valueSet(u, values), cur) {
		return Outcome{}, fmt.Errorf("%s %q: %w: it already runs %s; name another with --to", u.noun(), u.Name, ErrNothingToDo, u.displaySet(valueSet(u, cur)))
	}
	set, err := e.setOf(ctx, u, values, cur)
	if err != nil {
		return Outcome{}, err
	}
	return e.applySet(ctx, &pendingSet{g: u, set: set, current: cur, kind: gitwrite.Rollback, requestedBy: a.requestedBy}, expect)
}

// previous is what the unit ran before cur, from its newest promotion of cur in recs.
func previous(u *group, recs []gitwrite.Record, cur []string) ([]string, error) {
	curSet := valueSet(u, cur)
	for _, r := range recs {
		if r.Kind != gitwrite.Promote || r.Value != u.value(curSet) || r.Kept {
			continue
		}
		if u.lone && r.Previous != "" {
			return []string{r.Previous}, nil
		}
		if !u.lone && len(r.Members) == len(u.members) {
			values := make([]string, len(r.Members))
			for i, m := range r.Members {
				values[i] = m.Previous
			}
			return values, nil
		}
		break
	}
	if u.lone {
		return nil, fmt.Errorf("stage %q: %w: Git history has no promotion to %s by this stage, so there is no previous value; name one: promoter rollback %s --to TAG", u.Name, ErrNothingToDo, cur[0], u.Name)
	}
	return nil, fmt.Errorf("group %q: %w: Git history has no promotion of the set it runs (%s) by this group, so there is no previous set; name one: promoter rollback %s --to %s=TAG", u.Name, ErrNothingToDo, u.displaySet(curSet), u.Name, u.label(u.members[0]))
}

func valueSet(g *group, values []string) freight.Set {
	out := make(freight.Set, len(values))
	for i, m := range g.members {
		out[i] = freight.Member{Stage: m.Name, Value: values[i]}
	}
	return out
}

// applySet writes one set, verifies it and updates the statuses of the unit and its members.
// The write expects the files to hold p.current (gitwrite.Change.Expect): when a caller
// named what it expects (expect), a file changed since the read is ErrMoved.
func (e *Engine) applySet(ctx context.Context, p *pendingSet, expect string) (Outcome, error) {
	u := p.g
	loaded, err := e.loadState(ctx)
	if err != nil {
		return Outcome{}, err
	}
	state := &working{State: loaded}
	statuses := map[string]*Status{}
	// A human asked for it: what the last pass decided no longer holds.
	names := []string{u.Name}
	if !u.lone {
		names = append(names, u.Members...)
	}
	for _, name := range names {
		st, _ := e.StatusOf(name)
		st.Decision, st.Error = DecisionPromote, ""
		_, st.Paused = state.Paused[name]
		st.PausedBy = state.PausedBy[name]
		statuses[name] = &st
	}
	st := statuses[u.Name]
	if !u.lone {
		st.Members = nil
		for i, m := range u.members {
			st.Members = append(st.Members, MemberStatus{Stage: m.Name, Current: p.current[i]})
		}
	}
	st.setCandidate(u, p.set)
	look := e.wh.NewPass()
	defer look.Done()
	e.write(ctx, look, []*pendingSet{p}, statuses, state)
	now := e.clock.Now()
	e.mu.Lock()
	for name, st := range statuses {
		st.CheckedAt = now
		e.status[name] = *st
	}
	e.mu.Unlock()
	e.Announce()
	if err := e.saveWorking(ctx, state); err != nil {
		return Outcome{}, err
	}
	out := Outcome{Stage: u.Name, Kind: p.kind.String(), Old: u.value(valueSet(u, p.current)), New: u.value(p.set), Commit: p.commit, Skipped: p.written && p.commit == "", PullRequest: p.proposed, RequestedBy: p.requestedBy}
	if p.err != nil && expect != "" && errors.Is(p.err, gitwrite.ErrConflict) {
		// The compare-and-swap refused it: say what the unit runs now.
		now := "a value changed since it was read"
		if _, cur, err := e.readSet(ctx, u); err == nil {
			now = u.value(valueSet(u, cur))
		}
		return Outcome{}, moved(u.Name, now, expect)
	}
	if p.err != nil {
		if !p.written {
			return Outcome{}, &StageError{Stage: u.Name, Err: p.err}
		}
		return out, &StageError{Stage: u.Name, Err: p.err}
	}
	// The stages downstream may take it now: a pass over them soon, not at the next poll.
	e.targetStage(u.Name)
	return out, nil
}

// Approve lets a stage without autoPromote take tag; "" means its current candidate.
// For a release group, "" is its candidate set and "member=tag,…" changes those members
// from the candidate set. It returns the approved value. With Expect, the stage (the
// group's set) must still run that value in Git: an approval writes no commit to compare
// and swap, so the branch is read as it is now.
func (e *Engine) Approve(ctx context.Context, stage, tag string, opts ...ActionOption) (string, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return "", err
	}
	if u.problem != nil {
		return "", u.problem
	}
	if expect := actionOf(opts).expect; expect != "" {
		_, cur, err := e.readSet(ctx, u)
		if err != nil {
			return "", err
		}
		if err := stillRuns(u, cur, expect); err != nil {
			return "", err
		}
	}
	value := tag
	switch {
	case u.lone && tag == "":
		st, _ := e.StatusOf(stage)
		if st.Candidate == nil {
			return "", fmt.Errorf("stage %q: %w: no candidate to approve yet (%s); name the tag: promoter approve %s TAG", stage, ErrNothingToDo, st.Reason, stage)
		}
		value = st.Candidate.Value(u.members[0].Strategy)
	case !u.lone:
		cand, ok := e.candidateSet(u)
		if tag == "" && !ok {
			st, _ := e.StatusOf(u.Name)
			return "", fmt.Errorf("group %q: %w: no candidate set to approve yet (%s); name the tags: promoter approve %s %s=TAG", u.Name, ErrNothingToDo, st.Reason, u.Name, u.label(u.members[0]))
		}
		def := make([]string, len(u.members))
		for i := range def {
			if i < len(cand) {
				def[i] = cand[i].Value
			}
		}
		values, err := parseSetValues(u, tag, def)
		if err != nil {
			return "", err
		}
		value = u.value(valueSet(u, values))
	}
	err = e.update(ctx, func(st *State) {
		as := append(st.Approvals[u.Name], Approval{Value: value, ApprovedAt: e.clock.Now(), RequestedBy: actionOf(opts).requestedBy})
		if len(as) > maxVerifications {
			as = as[len(as)-maxVerifications:]
		}
		st.Approvals[u.Name] = as
	})
	if err != nil {
		return "", err
	}
	e.log.Info("approved", "stage", u.Name, "value", value, "requestedBy", actionOf(opts).requestedBy)
	e.targetStage(u.Name)
	return value, nil
}

// Pause stops automatic promotions to a stage until Resume; manual ones still work.
func (e *Engine) Pause(ctx context.Context, stage string, opts ...ActionOption) error {
	return e.setPaused(ctx, stage, true, actionOf(opts).requestedBy)
}

// Resume undoes Pause.
func (e *Engine) Resume(ctx context.Context, stage string, opts ...ActionOption) error {
	return e.setPaused(ctx, stage, false, actionOf(opts).requestedBy)
}

func (e *Engine) setPaused(ctx context.Context, stage string, paused bool, by string) error {
	if _, err := e.actionUnit(stage); err != nil {
		return err
	}
	now := e.clock.Now()
	err := e.update(ctx, func(st *State) {
		if paused {
			if _, ok := st.Paused[stage]; !ok {
				st.Paused[stage] = now
				if by != "" {
					if st.PausedBy == nil {
						st.PausedBy = map[string]string{}
					}
					st.PausedBy[stage] = by
				}
			}
		} else {
			delete(st.Paused, stage)
			delete(st.PausedBy, stage)
		}
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	st := e.status[stage]
	switch {
	case !paused:
		st.PausedBy = ""
	case !st.Paused:
		st.PausedBy = by // a second pause keeps the first one's name, as the State does
	}
	st.Paused = paused
	if paused && st.Decision != DecisionFailed {
		st.Decision, st.Reason = DecisionHold, "paused"
	}
	e.status[stage] = st
	e.mu.Unlock()
	e.Announce()
	e.log.Info("pause changed", "stage", stage, "paused", paused, "requestedBy", by)
	if !paused {
		e.targetStage(stage)
	}
	return nil
}

// updater is a Store that changes the state by a function, with nothing read or written
// between its read and its write (kubestate.Stages: a state read again between a Load and a
// Save could hold stages the Load did not, which the Save would take as removed).
type updater interface {
	Update(ctx context.Context, fn func(*State)) error
}

// update changes the stored state. It does not wait for a running pass (which may
// be running a long verify command): passes write back only the verifications they
// add, so neither overwrites the other.
func (e *Engine) update(ctx context.Context, fn func(*State)) error {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if u, ok := e.store.(updater); ok {
		// A store shared with other readers (kubestate.Stages) changes the state in one step.
		if err := u.Update(ctx, fn); err != nil {
			return err
		}
		e.Announce()
		return nil
	}
	st, err := e.store.Load(ctx)
	if err != nil {
		return err
	}
	st = st.clone()
	fn(&st)
	if err := e.store.Save(ctx, st); err != nil {
		return err
	}
	// An approval or a pause shows on the pipeline page before the pass it asks for.
	e.Announce()
	return nil
}

// History returns the stage's (or release group's) promotions and rollbacks from Git,
// newest first.
func (e *Engine) History(ctx context.Context, stage string) ([]gitwrite.Record, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return nil, err
	}
	if len(u.members) == 0 {
		return nil, u.problem
	}
	repo, err := e.Repo(ctx, u.members[0].RepoURL)
	if err != nil {
		return nil, &StageError{Stage: stage, Err: err}
	}
	recs, err := repo.History(ctx, u.members[0].Branch, u.Name)
	if err != nil {
		return nil, &StageError{Stage: stage, Err: err}
	}
	return recs, nil
}

// stillRuns refuses an action that expected the unit to run expect when Git holds cur.
func stillRuns(u *group, cur []string, expect string) error {
	if now := u.value(valueSet(u, cur)); expect != "" && now != expect {
		return moved(u.Name, now, expect)
	}
	return nil
}

// notStarted refuses an action whose caller gave up while it waited for the engine (a pass
// holds it): nothing was done, and the caller is told so instead of the action running
// unseen.
func notStarted(ctx context.Context, stage string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stage %q: not done: the request ended (%w) before the running pass let it start; nothing was written", stage, err)
	}
	return nil
}
