package stage

import (
	"context"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// Tags lists the tags the warehouse sees for a stage that discovers its own freight, each
// with why it is or is not a candidate there (rolled-back values included). A stage with
// an upstream takes its upstream's verified freight instead: it has no tags of its own,
// and Tags returns nil.
func (e *Engine) Tags(ctx context.Context, stage string) ([]warehouse.TagVerdict, error) {
	s, err := e.spec(stage)
	if err != nil {
		return nil, err
	}
	if s.Upstream != "" {
		return nil, nil
	}
	recs, err := e.History(ctx, stage)
	if err != nil {
		return nil, err
	}
	var skip []string
	for _, r := range recs {
		if r.Rejected != "" {
			skip = append(skip, r.Rejected)
		}
	}
	vs, err := e.wh.Explain(ctx, s.Image, s.Selection(), skip...)
	if err != nil {
		return nil, &StageError{Stage: stage, Err: err}
	}
	// The last pass's signature checks: a tag the selection admits is no candidate while its
	// digest is not signed as the stage requires.
	st, _ := e.StatusOf(stage)
	unsigned := map[string]string{}
	for _, sk := range st.Skipped {
		if tag, why, ok := strings.Cut(sk, ": "); ok {
			unsigned[tag] = why
		}
	}
	for i, v := range vs {
		if why, ok := unsigned[v.Tag]; ok {
			vs[i].Candidate, vs[i].Reason = false, "not signed as required: "+why
		}
	}
	return vs, nil
}
