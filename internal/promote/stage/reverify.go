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
// old run (its Jobs in the cluster, its memory of their verdict). No pass runs between the two,
// so none can see the old verdict and record it again.
func (e *Engine) ReverifyWith(ctx context.Context, stage string, forget func(ctx context.Context, value string) error) (string, error) {
	if _, err := e.spec(stage); err != nil {
		return "", err
	}
	e.work.Lock()
	defer e.work.Unlock()
	st, _ := e.StatusOf(stage)
	if st.CurrentTag == "" {
		return "", fmt.Errorf("stage %q: %w: it runs nothing known yet (%s); wait for its first pass", stage, ErrNothingToDo, st.Reason)
	}
	if forget != nil {
		if err := forget(ctx, st.CurrentTag); err != nil {
			return "", err
		}
	}
	err := e.update(ctx, func(s *State) {
		var kept []Verification
		for _, v := range s.Verifications[stage] {
			if v.Value != st.CurrentTag {
				kept = append(kept, v)
			}
		}
		s.Verifications[stage] = kept
		var runs []VerificationRun
		for _, r := range s.Runs[stage] {
			if r.Value != st.CurrentTag {
				runs = append(runs, r)
			}
		}
		s.Runs[stage] = runs
	})
	if err != nil {
		return "", err
	}
	e.log.Info("verification to run again", "stage", stage, "value", st.CurrentTag)
	e.poke()
	return st.CurrentTag, nil
}
