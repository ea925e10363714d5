package stage

import "context"

// PullRequestLog returns the pull requests of a stage (or release group) that were merged
// or closed, oldest first, as the State keeps them (at most maxPullRequestLog): `promoter
// history` links each promotion to the request it went through by their commits (Commit,
// the commit kropipe proposed; MergeCommit, the commit that landed on the branch).
func (e *Engine) PullRequestLog(ctx context.Context, stage string) ([]PullRequest, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return nil, err
	}
	st, err := e.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	return append([]PullRequest(nil), st.PullRequestLog[u.Name]...), nil
}

// Approvals returns the approvals given for a stage (or release group), oldest first, each
// with who gave it: the history lists them beside the commits.
func (e *Engine) Approvals(ctx context.Context, stage string) ([]Approval, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return nil, err
	}
	st, err := e.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	return append([]Approval(nil), st.Approvals[u.Name]...), nil
}

// Refusals returns the freight refused for a stage (or release group) by closing its pull
// request unmerged, oldest first: the Events tell a refusal from a request kropipe withdrew.
func (e *Engine) Refusals(ctx context.Context, stage string) ([]Refusal, error) {
	u, err := e.actionUnit(stage)
	if err != nil {
		return nil, err
	}
	st, err := e.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	return append([]Refusal(nil), st.Refused[u.Name]...), nil
}
