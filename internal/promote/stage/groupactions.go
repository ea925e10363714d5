package stage

import (
	"context"
	"fmt"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

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

// PromoteMember is Promote for a member of a release group, alone: its group's set
// then no longer holds what was verified together.
func (e *Engine) PromoteMember(ctx context.Context, stage, tag string, opts ...ActionOption) (Outcome, error) {
	return e.promote(ctx, stage, tag, actionOf(opts).expect)
}

// RollbackMember is Rollback for a member of a release group, alone.
func (e *Engine) RollbackMember(ctx context.Context, stage, toTag string, opts ...ActionOption) (Outcome, error) {
	return e.rollback(ctx, stage, toTag, actionOf(opts).expect)
}

// parseSetValues reads "stage=value, stage=value" (or "label=value") into a value per
// member; members not named keep def's value.
func parseSetValues(g *group, arg string, def []string) ([]string, error) {
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
			return nil, nil, &StageError{Stage: g.Name, Err: fmt.Errorf("member %s: reading %s (key %s): %w", m.Name, m.File, m.Key, err)}
		}
		cur[i] = v
	}
	return repo, cur, nil
}

// promoteGroup writes a set now, bypassing soak, approval and pause: tags "" is the
// group's candidate set, else "member=tag" pairs changing those members from their
// current value. Every tag must exist in the registry.
func (e *Engine) promoteGroup(ctx context.Context, g *group, tags, expect string) (Outcome, error) {
	if g.problem != nil {
		return Outcome{}, g.problem
	}
	_, cur, err := e.readSet(ctx, g)
	if err != nil {
		return Outcome{}, err
	}
	if now := setOf(g, cur).Value(); expect != "" && now != expect {
		return Outcome{}, moved(g.Name, now, expect)
	}
	var set freight.Set
	if tags == "" {
		e.mu.Lock()
		cand, ok := e.groupCand[g.Name]
		e.mu.Unlock()
		if !ok {
			_ = e.pass(ctx, false)
			e.mu.Lock()
			cand, ok = e.groupCand[g.Name]
			e.mu.Unlock()
		}
		if !ok || sameValues(cand, cur) {
			st, _ := e.StatusOf(g.Name)
			return Outcome{}, fmt.Errorf("group %q: %w: no new set (%s); name the tags: promoter promote %s %s=TAG", g.Name, ErrNothingToDo, st.Reason, g.Name, g.label(g.members[0]))
		}
		set = cand
	} else {
		values, err := parseSetValues(g, tags, cur)
		if err != nil {
			return Outcome{}, err
		}
		for i, m := range g.members {
			f := freight.Freight{Image: m.Image, Tag: values[i]}
			if values[i] != cur[i] {
				if f, err = e.wh.Resolve(ctx, m.Image, values[i]); err != nil {
					return Outcome{}, &StageError{Stage: g.Name, Err: fmt.Errorf("member %s: %w", m.Name, err)}
				}
			}
			set = append(set, freight.Member{Stage: m.Name, Freight: f, Value: f.Value(m.Strategy)})
		}
	}
	return e.applySet(ctx, &pendingSet{g: g, set: set, current: cur, kind: gitwrite.Promote})
}

// rollbackGroup writes the set the group ran before its current one (from its newest
// commit that wrote the current set), or the members named "member=tag", in one commit
// that rejects each changed member's current value there.
func (e *Engine) rollbackGroup(ctx context.Context, g *group, to, expect string) (Outcome, error) {
	if g.problem != nil {
		return Outcome{}, g.problem
	}
	repo, cur, err := e.readSet(ctx, g)
	if err != nil {
		return Outcome{}, err
	}
	if now := setOf(g, cur).Value(); expect != "" && now != expect {
		return Outcome{}, moved(g.Name, now, expect)
	}
	values := make([]string, len(cur))
	if to != "" {
		if values, err = parseSetValues(g, to, cur); err != nil {
			return Outcome{}, err
		}
	} else {
		recs, err := repo.FetchedHistory(ctx, g.members[0].Branch, g.Name)
		if err != nil {
			return Outcome{}, &StageError{Stage: g.Name, Err: err}
		}
		curSet := make(freight.Set, len(cur))
		for i, m := range g.members {
			curSet[i] = freight.Member{Stage: m.Name, Value: cur[i]}
		}
		found := false
		for _, r := range recs {
			if r.Kind != gitwrite.Promote || r.Value != curSet.Value() || len(r.Members) != len(g.members) {
				continue
			}
			for i, m := range r.Members {
				values[i] = m.Previous
			}
			found = true
			break
		}
		if !found {
			return Outcome{}, fmt.Errorf("group %q: %w: Git history has no promotion of the set it runs (%s) by this group, so there is no previous set; name one: promoter rollback %s --to %s=TAG", g.Name, ErrNothingToDo, e.displaySet(g, curSet), g.Name, g.label(g.members[0]))
		}
	}
	if sameValues(setOf(g, values), cur) {
		return Outcome{}, fmt.Errorf("group %q: %w: it already runs %s; name another set with --to", g.Name, ErrNothingToDo, e.displaySet(g, setOf(g, cur)))
	}
	var set freight.Set
	for i, m := range g.members {
		f := freight.Freight{Image: m.Image, Tag: values[i]}
		if values[i] != cur[i] {
			if f, err = e.wh.Resolve(ctx, m.Image, values[i]); err != nil {
				return Outcome{}, &StageError{Stage: g.Name, Err: fmt.Errorf("member %s: %w", m.Name, err)}
			}
		}
		set = append(set, freight.Member{Stage: m.Name, Freight: f, Value: values[i]})
	}
	return e.applySet(ctx, &pendingSet{g: g, set: set, current: cur, kind: gitwrite.Rollback})
}

func setOf(g *group, values []string) freight.Set {
	out := make(freight.Set, len(values))
	for i, m := range g.members {
		out[i] = freight.Member{Stage: m.Name, Value: values[i]}
	}
	return out
}

// applySet writes one set, verifies it and updates the statuses of the group and members.
func (e *Engine) applySet(ctx context.Context, p *pendingSet) (Outcome, error) {
	loaded, err := e.loadState(ctx)
	if err != nil {
		return Outcome{}, err
	}
	state := &working{State: loaded}
	statuses := map[string]*Status{}
	members := map[string]*Status{}
	// A human asked for it: what the last pass decided no longer holds.
	gs, _ := e.StatusOf(p.g.Name)
	gs.Decision, gs.Error = DecisionPromote, ""
	_, gs.Paused = state.Paused[p.g.Name]
	statuses[p.g.Name] = &gs
	for _, m := range p.g.members {
		ms, _ := e.StatusOf(m.Name)
		ms.Decision, ms.Error = DecisionPromote, ""
		members[m.Name], statuses[m.Name] = &ms, &ms
	}
	gs.Members = nil
	for i, m := range p.g.members {
		gs.Members = append(gs.Members, MemberStatus{Stage: m.Name, Current: p.current[i]})
	}
	gs.setCandidate(p.set)
	e.writeGroups(ctx, []*pendingSet{p}, statuses, state)
	now := e.clock.Now()
	e.mu.Lock()
	for name, st := range statuses {
		st.CheckedAt = now
		e.status[name] = *st
	}
	e.mu.Unlock()
	if err := e.saveVerifications(ctx, state.added, state.runs); err != nil {
		return Outcome{}, err
	}
	out := Outcome{Stage: p.g.Name, Kind: p.kind.String(), Old: setOf(p.g, p.current).Value(), New: p.set.Value(), Commit: gs.LastCommit, Skipped: gs.Decision == DecisionUpToDate}
	if gs.Decision == DecisionFailed {
		out.Commit = ""
		return out, fmt.Errorf("%s", gs.Error)
	}
	return out, nil
}

// groupHistory is the group's commits, newest first.
func (e *Engine) groupHistory(ctx context.Context, g *group) ([]gitwrite.Record, error) {
	if len(g.members) == 0 {
		return nil, g.problem
	}
	first := g.members[0]
	repo, err := e.Repo(ctx, first.RepoURL)
	if err != nil {
		return nil, &StageError{Stage: g.Name, Err: err}
	}
	recs, err := repo.History(ctx, first.Branch, g.Name)
	if err != nil {
		return nil, &StageError{Stage: g.Name, Err: err}
	}
	return recs, nil
}

// Promote writes tag to the stage now, bypassing soak, approval, pause and the
// rejected list: a human asked for it. tag "" means the stage's current candidate.
// The tag must exist in the registry. For a release group, tag "" is its candidate
// set and "member=tag,…" names members' tags; a member of a group is refused
// (ErrGroupMember): PromoteMember forces it alone. With Expect it is done only while
// the stage (the group's set) runs that value, else it fails with ErrMoved.
func (e *Engine) Promote(ctx context.Context, stage, tag string, opts ...ActionOption) (Outcome, error) {
	expect := actionOf(opts).expect
	if g, ok := e.groupNamed(stage); ok {
		e.work.Lock()
		defer e.work.Unlock()
		if err := notStarted(ctx, stage); err != nil {
			return Outcome{}, err
		}
		return e.promoteGroup(ctx, g, tag, expect)
	}
	if err := e.refuseMember(stage, "promote"); err != nil {
		return Outcome{}, err
	}
	return e.promote(ctx, stage, tag, expect)
}

// Rollback writes the value the stage held before its current one (from the
// Kropipe-* trailers in Git history), or toTag when given, with a Kropipe-Rejected
// trailer naming the current value, which is then never auto-promoted there again.
// For a release group it writes the previous set (or "member=tag,…") in one commit; a
// member of a group is refused (ErrGroupMember): RollbackMember forces it alone. With
// Expect it is done only while the stage (the group's set) runs that value, else it fails
// with ErrMoved: a retried rollback never rolls back twice.
func (e *Engine) Rollback(ctx context.Context, stage, toTag string, opts ...ActionOption) (Outcome, error) {
	expect := actionOf(opts).expect
	if g, ok := e.groupNamed(stage); ok {
		e.work.Lock()
		defer e.work.Unlock()
		if err := notStarted(ctx, stage); err != nil {
			return Outcome{}, err
		}
		return e.rollbackGroup(ctx, g, toTag, expect)
	}
	if err := e.refuseMember(stage, "rollback"); err != nil {
		return Outcome{}, err
	}
	return e.rollback(ctx, stage, toTag, expect)
}

func (e *Engine) isGroup(name string) bool {
	_, ok := e.groupNamed(name)
	return ok
}

// approveGroup lets a group without autoPromote take a set: "" is its candidate set,
// else "member=tag,…" changing those members from the candidate set.
func (e *Engine) approveGroup(ctx context.Context, g *group, tags, expect string) (string, error) {
	if g.problem != nil {
		return "", g.problem
	}
	if expect != "" {
		_, cur, err := e.readSet(ctx, g)
		if err != nil {
			return "", err
		}
		if now := setOf(g, cur).Value(); now != expect {
			return "", moved(g.Name, now, expect)
		}
	}
	e.mu.Lock()
	cand, ok := e.groupCand[g.Name]
	e.mu.Unlock()
	value := ""
	switch {
	case tags == "" && !ok:
		st, _ := e.StatusOf(g.Name)
		return "", fmt.Errorf("group %q: %w: no candidate set to approve yet (%s); name the tags: promoter approve %s %s=TAG", g.Name, ErrNothingToDo, st.Reason, g.Name, g.label(g.members[0]))
	case tags == "":
		value = cand.Value()
	default:
		def := make([]string, len(g.members))
		for i := range def {
			if i < len(cand) {
				def[i] = cand[i].Value
			}
		}
		values, err := parseSetValues(g, tags, def)
		if err != nil {
			return "", err
		}
		value = setOf(g, values).Value()
	}
	err := e.update(ctx, func(st *State) {
		as := append(st.Approvals[g.Name], Approval{Value: value, ApprovedAt: e.clock.Now()})
		if len(as) > maxVerifications {
			as = as[len(as)-maxVerifications:]
		}
		st.Approvals[g.Name] = as
	})
	if err != nil {
		return "", err
	}
	e.log.Info("approved", "group", g.Name, "set", value)
	e.targetStage(g.Name)
	return value, nil
}
