package controller

import "context"

// Reverify runs the verification of the freight the stage runs again (promoter verify):
// the health gate deletes its Jobs and AnalysisRun, then the engine forgets its verdict, so
// the next pass starts new ones.
func (g gate) Reverify(ctx context.Context, name string) (string, error) {
	e, err := g.engine()
	if err != nil {
		return "", err
	}
	if st, ok := e.StatusOf(name); ok && st.CurrentTag != "" {
		if hg := g.c.health.Load(); hg != nil {
			if err := hg.Reverify(ctx, name, st.CurrentTag); err != nil {
				return "", err
			}
			// A release group is verified through its members: their Jobs and analyses go too.
			for _, m := range st.Members {
				if err := hg.Reverify(ctx, m.Stage, m.Current); err != nil {
					return "", err
				}
			}
		}
	}
	return e.Reverify(ctx, name)
}
