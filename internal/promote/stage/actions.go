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
}

// ErrNothingToDo is wrapped when an action has no candidate or no earlier value.
var ErrNothingToDo = errors.New("nothing to do")

// Promote writes tag to the stage now, bypassing soak, approval, pause and the
// rejected list: a human asked for it. tag "" means the stage's current candidate.
// The tag must exist in the registry.
func (e *Engine) promote(ctx context.Context, stage, tag, expect string) (Outcome, error) {
	e.work.Lock()
	defer e.work.Unlock()
	if err := notStarted(ctx, stage); err != nil {
		return Outcome{}, err
	}
	s, err := e.spec(stage)
	if err != nil {
		return Outcome{}, err
	}
	var f freight.Freight
	if tag == "" {
		st, _ := e.StatusOf(stage)
		if st.CheckedAt.IsZero() {
			_ = e.pass(ctx, false)
			st, _ = e.StatusOf(stage)
		}
		if st.Candidate == nil {
			return Outcome{}, fmt.Errorf("stage %q: %w: no candidate (%s); name the tag: promoter promote %s TAG", stage, ErrNothingToDo, st.Reason, stage)
		}
		tag = st.Candidate.Tag
	}
	f, err = e.wh.Resolve(ctx, s.Image, tag)
	if err != nil {
		return Outcome{}, &StageError{Stage: stage, Err: err}
	}
	c := promoteChange(s, f, expect)
	return e.applyOne(ctx, s, f, c)
}

// Rollback writes the value the stage held before its current one (from the
// Kropipe-* trailers in Git history), or toTag when given, with a Kropipe-Rejected
// trailer naming the current value, which is then never auto-promoted there again.
func (e *Engine) rollback(ctx context.Context, stage, toTag, expect string) (Outcome, error) {
	e.work.Lock()
	defer e.work.Unlock()
	if err := notStarted(ctx, stage); err != nil {
		return Outcome{}, err
	}
	s, err := e.spec(stage)
	if err != nil {
		return Outcome{}, err
	}
	repo, err := e.Repo(ctx, s.RepoURL)
	if err != nil {
		return Outcome{}, &StageError{Stage: stage, Err: err}
	}
	current, _, err := repo.Read(ctx, s.Branch, s.File, s.Key)
	if err != nil {
		return Outcome{}, &StageError{Stage: stage, Err: fmt.Errorf("reading %s (key %s): %w", s.File, s.Key, err)}
	}
	if expect != "" && current != expect {
		return Outcome{}, moved(stage, current, expect)
	}
	records, err := repo.History(ctx, s.Branch, s.Name)
	if err != nil {
		return Outcome{}, &StageError{Stage: stage, Err: err}
	}
	if toTag == "" {
		prev, ok := gitwrite.PreviousPromotion(records, current)
		if !ok {
			return Outcome{}, fmt.Errorf("stage %q: %w: Git history has no promotion to %s by this stage, so there is no previous value; name one: promoter rollback %s --to TAG", stage, ErrNothingToDo, current, stage)
		}
		toTag = prev
	}
	if toTag == current {
		return Outcome{}, fmt.Errorf("stage %q: %w: it already runs %s; name another with --to", stage, ErrNothingToDo, current)
	}
	var f freight.Freight
	if s.Strategy == warehouse.StrategyDigest && strings.HasPrefix(toTag, "sha256:") {
		// The digest strategy writes digests; the image is addressed by digest, which
		// the registry keeps while anything refers to it.
		f = freight.Freight{Image: s.Image, Tag: s.Constraint, Digest: toTag, DiscoveredAt: e.clock.Now()}
	} else {
		f, err = e.wh.Resolve(ctx, s.Image, toTag)
		if err != nil {
			return Outcome{}, &StageError{Stage: stage, Err: err}
		}
	}
	c := gitwrite.Change{
		Stage: s.Name, File: s.File, Key: s.Key,
		Image: s.Image, Tag: f.Tag, Digest: f.Digest, Value: toTag,
		FreightID: f.ID(), Kind: gitwrite.Rollback, Rejected: current, Expect: current,
	}
	if s.Strategy != warehouse.StrategyDigest {
		c.Value = f.Value(s.Strategy)
	}
	return e.applyOne(ctx, s, f, c)
}

// applyOne writes one change, verifies it and updates the stage's status.
func (e *Engine) applyOne(ctx context.Context, s Spec, f freight.Freight, c gitwrite.Change) (Outcome, error) {
	repo, err := e.Repo(ctx, s.RepoURL)
	if err != nil {
		return Outcome{}, &StageError{Stage: s.Name, Err: err}
	}
	results, err := repo.Apply(ctx, s.Branch, c)
	if err != nil && (len(results) == 0 || results[0].Err == nil) {
		return Outcome{}, &StageError{Stage: s.Name, Err: err}
	}
	r := results[0]
	if r.Err != nil && c.Expect != "" && errors.Is(r.Err, gitwrite.ErrConflict) {
		return Outcome{}, moved(s.Name, r.Old, c.Expect) // the compare-and-swap refused it
	}
	if r.Err != nil {
		return Outcome{}, &StageError{Stage: s.Name, Err: r.Err}
	}
	loaded, err := e.loadState(ctx)
	if err != nil {
		return Outcome{}, err
	}
	state := &working{State: loaded}
	st, _ := e.StatusOf(s.Name)
	st.Error = ""
	st.Candidate = &f
	_, st.Paused = state.Paused[s.Name]
	e.landed(ctx, s, f, r, &st, state)
	st.CheckedAt = e.clock.Now()
	e.setStatus(st)
	if err := e.saveVerifications(ctx, state.added, state.runs); err != nil {
		return Outcome{}, err
	}
	out := Outcome{Stage: s.Name, Kind: r.Kind.String(), Old: r.Old, New: r.New, Commit: r.Commit, Skipped: r.Skipped}
	if st.Decision == DecisionFailed {
		return out, errors.New(st.Error)
	}
	// The stages downstream may take it now: a pass over them soon, not at the next poll.
	e.targetStage(s.Name)
	return out, nil
}

// Approve lets a stage without autoPromote take tag; "" means its current candidate.
// It returns the approved value. With Expect, the stage must still run that value in Git.
func (e *Engine) Approve(ctx context.Context, stage, tag string, opts ...ActionOption) (string, error) {
	expect := actionOf(opts).expect
	if g, ok := e.groupNamed(stage); ok {
		return e.approveGroup(ctx, g, tag, expect)
	}
	s, err := e.spec(stage)
	if err != nil {
		return "", err
	}
	if expect != "" {
		if err := e.stillRuns(ctx, s, expect); err != nil {
			return "", err
		}
	}
	if tag == "" {
		st, _ := e.StatusOf(stage)
		if st.Candidate == nil {
			return "", fmt.Errorf("stage %q: %w: no candidate to approve yet (%s); name the tag: promoter approve %s TAG", stage, ErrNothingToDo, st.Reason, stage)
		}
		tag = st.Candidate.Value(s.Strategy)
	}
	err = e.update(ctx, func(st *State) {
		as := append(st.Approvals[stage], Approval{Value: tag, ApprovedAt: e.clock.Now()})
		if len(as) > maxVerifications {
			as = as[len(as)-maxVerifications:]
		}
		st.Approvals[stage] = as
	})
	if err != nil {
		return "", err
	}
	e.log.Info("approved", "stage", stage, "value", tag)
	e.targetStage(stage)
	return tag, nil
}

// Pause stops automatic promotions to a stage until Resume; manual ones still work.
func (e *Engine) Pause(ctx context.Context, stage string) error {
	return e.setPaused(ctx, stage, true)
}

// Resume undoes Pause.
func (e *Engine) Resume(ctx context.Context, stage string) error {
	return e.setPaused(ctx, stage, false)
}

func (e *Engine) setPaused(ctx context.Context, stage string, paused bool) error {
	if _, err := e.spec(stage); err != nil && !e.isGroup(stage) {
		return err
	}
	now := e.clock.Now()
	err := e.update(ctx, func(st *State) {
		if paused {
			if _, ok := st.Paused[stage]; !ok {
				st.Paused[stage] = now
			}
		} else {
			delete(st.Paused, stage)
		}
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	st := e.status[stage]
	st.Paused = paused
	if paused && st.Decision != DecisionFailed {
		st.Decision, st.Reason = DecisionHold, "paused"
	}
	e.status[stage] = st
	e.mu.Unlock()
	e.Announce()
	e.log.Info("pause changed", "stage", stage, "paused", paused)
	if !paused {
		e.targetStage(stage)
	}
	return nil
}

// update changes the stored state. It does not wait for a running pass (which may
// be running a long verify command): passes write back only the verifications they
// add, so neither overwrites the other.
func (e *Engine) update(ctx context.Context, fn func(*State)) error {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
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

// History returns the stage's promotions and rollbacks from Git, newest first.
func (e *Engine) History(ctx context.Context, stage string) ([]gitwrite.Record, error) {
	if g, ok := e.groupNamed(stage); ok {
		return e.groupHistory(ctx, g)
	}
	s, err := e.spec(stage)
	if err != nil {
		return nil, err
	}
	repo, err := e.Repo(ctx, s.RepoURL)
	if err != nil {
		return nil, &StageError{Stage: stage, Err: err}
	}
	recs, err := repo.History(ctx, s.Branch, s.Name)
	if err != nil {
		return nil, &StageError{Stage: stage, Err: err}
	}
	return recs, nil
}

// stillRuns checks that the stage's file in Git holds expect: an approval writes no commit
// to compare and swap, so it reads the branch as it is now.
func (e *Engine) stillRuns(ctx context.Context, s Spec, expect string) error {
	repo, err := e.Repo(ctx, s.RepoURL)
	if err != nil {
		return &StageError{Stage: s.Name, Err: err}
	}
	current, _, err := repo.Read(ctx, s.Branch, s.File, s.Key)
	if err != nil {
		return &StageError{Stage: s.Name, Err: fmt.Errorf("reading %s (key %s): %w", s.File, s.Key, err)}
	}
	if current != expect {
		return moved(s.Name, current, expect)
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
