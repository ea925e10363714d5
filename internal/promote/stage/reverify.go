package stage

import (
	"context"
	"fmt"
)

// Reverify forgets the verification of the value the stage runs, and its runs, so the next
// pass verifies it again (promoter verify): a stage downstream that has not taken it yet waits
// for the new verdict. It returns the value.
func (e *Engine) Reverify(ctx context.Context, stage string) (string, error) {
	return e.ReverifyWith(ctx, stage, nil)
}

// ReverifyWith is Reverify removing first, through forget, whatever the verifier keeps of the
// old run (its Jobs in the cluster, its memory of their verdict): for the stage, and for a
// release group for each member with the value it runs. No pass runs between the two, so none
// can see the old verdict and record it again.
func (e *Engine) ReverifyWith(ctx context.Context, stage string, forget func(ctx context.Context, stage, value string) error) (string, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return "", err
	}
	e.work.Lock()
	defer e.work.Unlock()
	st, _ := e.StatusOf(stage)
	if st.CurrentTag == "" {
		return "", fmt.Errorf("%s %q: %w: it runs nothing known yet (%s); wait for its first pass", u.noun(), stage, ErrNothingToDo, st.Reason)
	}
	values := map[string]string{stage: st.CurrentTag}
	// A release group is verified through its members: their verdicts go too.
	for _, m := range st.Members {
		values[m.Stage] = m.Current
	}
	if forget != nil {
		for s, v := range values {
			if err := forget(ctx, s, v); err != nil {
				return "", err
			}
		}
	}
	err = e.update(ctx, func(s *State) {
		for stage, value := range values {
			var kept []Verification
			for _, v := range s.Verifications[stage] {
				if v.Value != value {
					kept = append(kept, v)
				}
			}
			s.Verifications[stage] = kept
			var runs []VerificationRun
			for _, r := range s.Runs[stage] {
				if r.Value != value {
					runs = append(runs, r)
				}
			}
			s.Runs[stage] = runs
		}
	})
	if err != nil {
		return "", err
	}
	e.log.Info("verification to run again", u.noun(), stage, "value", st.CurrentTag)
	e.targetStage(stage)
	return st.CurrentTag, nil
}
