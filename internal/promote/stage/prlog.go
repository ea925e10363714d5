package stage

import "context"

// PullRequestLog returns the pull requests of a stage (or release group) that were merged
// or closed, oldest first, as the State keeps them (at most maxPullRequestLog): `promoter
// history` links each promotion to the request it went through by their commits (Commit,
// the commit kropipe proposed; MergeCommit, the commit that landed on the branch).
func (e *Engine) PullRequestLog(ctx context.Context, stage string) ([]PullRequest, error) {
	return unitLog(ctx, e, stage, func(st State) map[string][]PullRequest { return st.PullRequestLog })
}

// Approvals returns the approvals given for a stage (or release group), oldest first, each
// with who gave it: the history lists them beside the commits.
func (e *Engine) Approvals(ctx context.Context, stage string) ([]Approval, error) {
	return unitLog(ctx, e, stage, func(st State) map[string][]Approval { return st.Approvals })
}

// Refusals returns the freight refused for a stage (or release group) by closing its pull
// request unmerged, oldest first: the Events tell a refusal from a request kropipe withdrew.
func (e *Engine) Refusals(ctx context.Context, stage string) ([]Refusal, error) {
	return unitLog(ctx, e, stage, func(st State) map[string][]Refusal { return st.Refused })
}

// unitLog is a copy of one of the State's logs kept per unit (a release group, or a stage
// alone), for the unit stage names.
func unitLog[T any](ctx context.Context, e *Engine, stage string, log func(State) map[string][]T) ([]T, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return nil, err
	}
	st, err := e.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	return append([]T(nil), log(st)[u.Name]...), nil
}
