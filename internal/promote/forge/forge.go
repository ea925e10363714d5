// Package forge opens, updates, merges and closes the pull (merge) requests kropipe
// promotes through, on GitHub, GitLab, Gitea, Forgejo and Bitbucket Cloud, with each
// forge's well-kept client where one exists.
//
// The engine sees one Forge per repository. Every method is safe to call again after
// a crash or a timeout: Find looks up the open request by its head branch before
// anything is created, Merge and Close of a request already merged or closed say so
// instead of failing. Errors carry the HTTP status and whether a retry can succeed
// (Retryable): a 5xx, a 429 or a timeout never ends a promotion for good.
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Kind names a forge's API.
type Kind string

const (
	GitHub    Kind = "github"
	GitLab    Kind = "gitlab"
	Gitea     Kind = "gitea"
	Forgejo   Kind = "forgejo" // Gitea's API; its own name for messages and detection
	Bitbucket Kind = "bitbucket"
)

// Kinds lists the forges in the order messages name them.
var Kinds = []Kind{GitHub, GitLab, Gitea, Forgejo, Bitbucket}

// State is where a pull request stands.
type State string

const (
	Open   State = "open"
	Merged State = "merged"
	Closed State = "closed" // closed without merging
)

// Checks sums up the required checks (commit statuses, check runs, pipelines) of a
// request's head commit.
type Checks string

const (
	ChecksNone    Checks = "none" // the forge reports none: nothing to wait for
	ChecksPending Checks = "pending"
	ChecksPassed  Checks = "passed"
	ChecksFailed  Checks = "failed"
)

// MergeMethod is how Merge lands a request on its base branch.
type MergeMethod string

const (
	MethodMerge  MergeMethod = "merge"
	MethodSquash MergeMethod = "squash"
	MethodRebase MergeMethod = "rebase"
)

// PullRequest is a pull request (GitHub, Gitea, Forgejo, Bitbucket) or merge request
// (GitLab) as kropipe tracks it.
type PullRequest struct {
	Number  int    `json:"number"` // GitLab: the MR's iid
	URL     string `json:"url"`    // the page a human opens
	State   State  `json:"state"`
	Title   string `json:"title"`
	Body    string `json:"body,omitempty"`
	Head    string `json:"head"`    // the branch proposed (kropipe/<stage>)
	Base    string `json:"base"`    // the branch it merges into
	HeadSHA string `json:"headSHA"` // the commit the request proposes now
	// Mergeable is the forge's answer to "can this merge without conflicts and with the
	// branch protection satisfied"; nil while the forge is still computing it.
	Mergeable *bool  `json:"mergeable,omitempty"`
	Checks    Checks `json:"checks,omitempty"`
	// MergeCommit is, once merged, the commit on the base branch that holds the change
	// (a merge, squash or the last rebased commit).
	MergeCommit string `json:"mergeCommit,omitempty"`
	// MergedBy and ClosedBy are the forge user names that merged or closed it, when the
	// forge says.
	MergedBy string `json:"mergedBy,omitempty"`
	ClosedBy string `json:"closedBy,omitempty"`
	// Reviewers are the users and teams asked to review, as the forge lists them.
	Reviewers []string  `json:"reviewers,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// NewPullRequest is what Create opens.
type NewPullRequest struct {
	Head, Base  string
	Title, Body string
	Labels      []string // created on the forge when missing, where the API allows
	Reviewers   []string // user names; "org/team" for a GitHub team
}

// Forge is one repository's pull requests.
type Forge interface {
	// Kind is the forge's API.
	Kind() Kind
	// Find returns the open request from head into base, nil when there is none.
	Find(ctx context.Context, head, base string) (*PullRequest, error)
	// Get returns a request by number, whatever its state, with its checks and
	// mergeability.
	Get(ctx context.Context, number int) (*PullRequest, error)
	// Create opens a request. When the forge answers that one from head already exists
	// (a crash after the create reached it), Create returns that one.
	Create(ctx context.Context, pr NewPullRequest) (*PullRequest, error)
	// Update replaces an open request's title and body.
	Update(ctx context.Context, number int, title, body string) error
	// Merge merges an open request whose head is still sha (the forge refuses it
	// otherwise: ErrHeadMoved), with title and message as the merge or squash commit's
	// message where the method makes one. It returns the request as merged; a request
	// already merged is returned as it is, without error.
	Merge(ctx context.Context, number int, sha string, method MergeMethod, title, message string) (*PullRequest, error)
	// Close comments (when comment is not empty) and closes an open request; one
	// already closed or merged is left as it is.
	Close(ctx context.Context, number int, comment string) error
	// Comment adds a comment.
	Comment(ctx context.Context, number int, body string) error
}

// Errors for errors.Is; *Error matches the one its status says.
var (
	ErrUnauthorized = errors.New("the forge refused the credentials")  // 401
	ErrForbidden    = errors.New("the credentials lack a permission")  // 403 (not a rate limit)
	ErrNotFound     = errors.New("not found on the forge")             // 404
	ErrConflict     = errors.New("the forge reports a conflict")       // 409, 422 on create
	ErrHeadMoved    = errors.New("the pull request's head moved")      // merge refused: sha differs
	ErrNotMergeable = errors.New("the forge says it cannot be merged") // 405/406/409/422 on merge
	ErrUnknownForge = errors.New("cannot tell which forge hosts the repository")
	// ErrMethodUnsupported is a merge method the forge cannot be asked for per request
	// (GitLab merges by the project's merge method).
	ErrMethodUnsupported = errors.New("the forge cannot merge by that method")
)

// refusals are the sentinels an *Error without an HTTP status can carry when kropipe
// itself refuses (a reviewer the forge does not know, a method it cannot ask for):
// asking again gives the same answer.
var refusals = []error{ErrUnauthorized, ErrForbidden, ErrNotFound, ErrConflict, ErrHeadMoved, ErrNotMergeable, ErrUnknownForge, ErrMethodUnsupported}

// Error is a failed forge request.
type Error struct {
	Forge  Kind
	Op     string // what kropipe asked, e.g. "opening a pull request from kropipe/prod"
	Status int    // the HTTP status; 0 when no answer came (a timeout, a refused connection)
	// Msg is the forge's own message, scrubbed of credentials.
	Msg string
	// RetryAfter is when the forge asked to be asked again (429, secondary rate limits).
	RetryAfter time.Duration
	Err        error // the sentinel it matches (ErrNotFound, …) or the transport error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s", e.Forge, e.Op)
	if e.Status != 0 {
		s += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Status == 0 && e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether asking again later can succeed: no answer at all, a 5xx,
// a 429 or a rate-limit 403. A 401, a 403 for a missing permission, a 404 or a refused
// merge need a human.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var fe *Error
	if !errors.As(err, &fe) {
		return true // not an answer from the forge: the network
	}
	if fe.Status == 0 {
		for _, r := range refusals {
			if errors.Is(fe.Err, r) {
				return false
			}
		}
	}
	switch {
	case fe.Status == 0, fe.Status >= 500, fe.Status == http.StatusTooManyRequests, fe.RetryAfter > 0:
		return true
	}
	return false
}
