package controller

import (
	"context"
)

// Reverify runs the verification of the freight the stage (or every member of a release
// group) runs again (promoter verify): the health gate deletes its Jobs and AnalysisRun and
// forgets their verdict, then the engine forgets its own, with no pass in between, so the next
// pass starts new ones.
func (g gate) Reverify(ctx context.Context, name string) (string, error) {
	peer, ctx, leave, err := g.route(ctx, name)
	if err != nil {
		return "", err
	}
	if peer != nil {
		v, err := peer.Reverify(ctx, name)
		return v, peer.explain(err)
	}
	defer leave()
	e, err := g.engine()
	if err != nil {
		return "", err
	}
	hg := g.c.health.Load()
	return e.ReverifyWith(ctx, name, func(ctx context.Context, stage, value string) error {
		if hg == nil {
			return nil
		}
		return hg.Reverify(ctx, stage, value)
	})
}
