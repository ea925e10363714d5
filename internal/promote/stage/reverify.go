package stage

import (
	"context"
	"fmt"
)

// Reverify forgets the verification of the value the stage runs, so the next pass
// verifies it again (promoter verify): a stage downstream that has not taken it yet waits
// for the new verdict. It returns the value. Whatever the verifier keeps of the old run
// (a Job in the cluster) is the caller's to remove first.
func (e *Engine) Reverify(ctx context.Context, stage string) (string, error) {
	if g, ok := e.groupNamed(stage); ok {
		return e.reverifyGroup(ctx, g)
	}
	if _, err := e.spec(stage); err != nil {
		return "", err
	}
	st, _ := e.StatusOf(stage)
	if st.CurrentTag == "" {
		return "", fmt.Errorf("stage %q: %w: it runs nothing known yet (%s); wait for its first pass", stage, ErrNothingToDo, st.Reason)
	}
	err := e.update(ctx, func(s *State) {
		var kept []Verification
		for _, v := range s.Verifications[stage] {
			if v.Value != st.CurrentTag {
				kept = append(kept, v)
			}
		}
		s.Verifications[stage] = kept
	})
	if err != nil {
		return "", err
	}
	e.log.Info("verification to run again", "stage", stage, "value", st.CurrentTag)
	e.poke()
	return st.CurrentTag, nil
}
