package stage

import (
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// Decision is what a pass decided for a stage.
type Decision string

const (
	// DecisionPromote: the candidate is being (or was just) written to Git.
	DecisionPromote Decision = "promote"
	// DecisionWait: a condition will pass by itself or by someone's action (soak, approval, upstream).
	DecisionWait Decision = "wait"
	// DecisionHold: the stage is paused, or the candidate would go backwards.
	DecisionHold Decision = "hold"
	// DecisionBlocked: nothing can be promoted until the situation changes (every candidate rejected).
	DecisionBlocked Decision = "blocked"
	// DecisionFailed: discovery, the Git write or verification failed; Error says why.
	DecisionFailed Decision = "failed"
	// DecisionUpToDate: the stage already runs its candidate.
	DecisionUpToDate Decision = "up-to-date"
)

// Status is what the engine knows about one stage after its last pass.
type Status struct {
	Name     string `json:"name"`
	Image    string `json:"image"`
	Upstream string `json:"upstream,omitempty"`
	File     string `json:"file"`
	Key      string `json:"key"`
	// Origin is where the stage was configured (Spec.Origin; a release group's is its first
	// member's): what the page groups lanes by and the stage list filters on.
	Origin Origin `json:"origin,omitzero"`
	// CurrentTag is the value the stage's file holds in Git.
	CurrentTag string `json:"currentTag,omitempty"`
	// Candidate is the freight the stage would run next.
	Candidate *freight.Freight `json:"candidate,omitempty"`
	Decision  Decision         `json:"decision"`
	// Reason says in one sentence why the decision was taken.
	Reason string `json:"reason"`
	// VerifiedFreight is the newest freight verified in this stage.
	VerifiedFreight *Verification `json:"verifiedFreight,omitempty"`
	// LastCommit is the newest promotion or rollback commit of this stage.
	LastCommit    string    `json:"lastCommit,omitempty"`
	LastPromotion time.Time `json:"lastPromotion,omitzero"`
	Paused        bool      `json:"paused"`
	Error         string    `json:"error,omitempty"`
	// PausedBy is who paused the stage (the API token's name, the page's login, $USER@host),
	// when known.
	PausedBy string `json:"pausedBy,omitempty"`
	// CheckedAt is when the pass that produced this status ran.
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	// Warnings do not block the stage but deserve a look.
	Warnings []string `json:"warnings,omitempty"`
	// Skipped are the tags ranked above the candidate that were not taken because their
	// digest is not signed as the stage's signature policies require, each with why
	// ("2.1.0: no signature by …"); for a release group, each led by its member.
	Skipped []string `json:"skipped,omitempty"`
	// Sync is what the deployment tool reports about the stage's target when the
	// promoter drives one (in the Argo CD mode, its Application).
	Sync *SyncStatus `json:"sync,omitempty"`
	// Verification is the last verification run in the cluster for the stage (in the Argo
	// CD mode, kropipe.io/verify-job or verify-analysis), nil when it has none. It is kept
	// in the State, so it survives restarts and leader changes.
	Verification *VerificationRun `json:"verification,omitempty"`
	// Group is, for a member of a release group, the group it moves with.
	Group string `json:"group,omitempty"`
	// Members are, for a release group, its stages in order with their values; the
	// group's CurrentTag is the set they run.
	Members []MemberStatus `json:"members,omitempty"`
	// Owed are the automatic actions the promoter owes the stage and has not done yet (an
	// automatic rollback whose attempt failed), kept in the State until done.
	Owed []OwedAction `json:"owed,omitempty"`
	// PullRequest is, for a stage in pull-request mode, the pull request its pending change
	// waits in (number, URL, state, checks, who must act); nil when none is open.
	PullRequest *PullRequest `json:"pullRequest,omitempty"`
	// candidateSet is a group's candidate set, for its members' Candidate.
	candidateSet freight.Set
}

// VerificationRun is where a stage's verification in the cluster stands.
type VerificationRun struct {
	Value   string `json:"value"`             // the freight's tag or digest
	Freight string `json:"freight,omitempty"` // the freight's ID: runs are named by it
	Commit  string `json:"commit"`            // the promotion commit verified
	// Phase is Running, Passed, Failed (the freight failed) or Error (the verification
	// could not run: a bad manifest, a cluster error).
	Phase string `json:"phase"`
	// Message says what runs or what failed, e.g. "job develop-smoke-1a2b (running 1m20s)".
	Message string `json:"message"`
	// Log is the tail of a failed pod's log.
	Log string `json:"log,omitempty"`
	// Started is when the run was started for the freight (a timeout and an approval of
	// an inconclusive run count from it); zero when unknown.
	Started time.Time `json:"started,omitzero"`
}

// settled reports whether the run is a verdict a restart must not run again: the freight
// failed, or a human must decide (Inconclusive). Passed freight is a Verification; Error
// (a bad manifest, a cluster problem) is tried again.
func (r VerificationRun) settled() bool { return r.Phase == "Failed" || r.Phase == "Inconclusive" }

// SyncStatus is the deployed side of a stage: where its target was last synced
// to, and how healthy it is.
type SyncStatus struct {
	Application   string    `json:"application"` // namespace/name
	Revision      string    `json:"revision,omitempty"`
	Status        string    `json:"status,omitempty"` // Synced, OutOfSync, Unknown
	Health        string    `json:"health,omitempty"` // Healthy, Progressing, Degraded, ...
	HealthMessage string    `json:"healthMessage,omitempty"`
	Operation     string    `json:"operation,omitempty"` // phase of the last or running operation
	Message       string    `json:"message,omitempty"`   // the operation's message
	InitiatedBy   string    `json:"initiatedBy,omitempty"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	FinishedAt    time.Time `json:"finishedAt,omitzero"`
	ReconciledAt  time.Time `json:"reconciledAt,omitzero"`
	// Hydration is, for an Application rendered by Argo CD's Source Hydrator, where the
	// rendering of its dry source stands; Revision is then a hydrated commit.
	Hydration *Hydration `json:"hydration,omitempty"`
}

// Hydration is what Argo CD's Source Hydrator reports about an Application: the dry commit
// (the stage's LastCommit is one) it rendered, or failed to, and the hydrated commit it pushed
// to the sync branch.
type Hydration struct {
	DryBranch  string `json:"dryBranch,omitempty"`  // drySource.targetRevision
	SyncBranch string `json:"syncBranch,omitempty"` // syncSource.targetBranch
	// Phase is the current hydration's: Hydrating, Hydrated or Failed.
	Phase   string `json:"phase,omitempty"`
	Message string `json:"message,omitempty"` // why it failed
	// DryCommit is the dry commit of the current hydration; HydratedCommit the commit it
	// pushed (empty until Hydrated).
	DryCommit      string `json:"dryCommit,omitempty"`
	HydratedCommit string `json:"hydratedCommit,omitempty"`
	// LastDryCommit and LastHydratedCommit are those of the last successful hydration.
	LastDryCommit      string    `json:"lastDryCommit,omitempty"`
	LastHydratedCommit string    `json:"lastHydratedCommit,omitempty"`
	StartedAt          time.Time `json:"startedAt,omitzero"`
	FinishedAt         time.Time `json:"finishedAt,omitzero"`
}

// Failed reports whether the stage's last pass failed.
func (s Status) Failed() bool { return s.Decision == DecisionFailed }
