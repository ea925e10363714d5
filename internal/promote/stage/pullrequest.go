package stage

import (
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// PullRequest is the pull request a stage (or release group) in pull-request mode waits in,
// as the State keeps it: enough to find it again after a restart or on another shard, and to
// know whether the freight it proposes is still the one the stage wants.
type PullRequest struct {
	forge.PullRequest
	// Kind is "promote" or "rollback": what the proposed commit does.
	Kind string `json:"kind"`
	// FreightID and Value are the freight (a group: the set) the request proposes.
	FreightID string `json:"freightID"`
	Value     string `json:"value"`
	// From is the value (a group: the set) the target branch held when it was proposed.
	From string `json:"from"`
	// Commit is the commit kropipe pushed to the head branch: kropipe force-pushes that
	// branch only while it still holds this commit (a lease), never over someone else's.
	Commit string `json:"commit"`
	// OpenedAt is when kropipe opened it; CheckedAt when it last asked the forge.
	OpenedAt  time.Time `json:"openedAt"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	// Action says who must act now, e.g. "waiting for a review and merge by a human",
	// "waiting for required checks", "merging".
	Action string `json:"action,omitempty"`
	// LastError is the forge's last failure, retried with back-off (NextAttempt).
	LastError   string    `json:"lastError,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
}

// Refusal is freight a human refused by closing its pull request unmerged: the stage does
// not propose it again by itself (a manual promotion still can).
type Refusal struct {
	FreightID string    `json:"freightID"`
	Value     string    `json:"value"`
	Number    int       `json:"number"`
	URL       string    `json:"url"`
	ClosedBy  string    `json:"closedBy,omitempty"`
	ClosedAt  time.Time `json:"closedAt"`
}

// maxPullRequestLog bounds State.PullRequestLog per stage.
const maxPullRequestLog = 20
