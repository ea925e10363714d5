package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// State is what the engine must remember across restarts beyond Git: approvals,
// verifications and pauses. Promotions and rejections live in Git itself.
type State struct {
	// Approvals maps a stage to the values approved for it.
	Approvals map[string][]Approval `json:"approvals,omitempty"`
	// Verifications maps a stage to the freight verified there, newest last.
	Verifications map[string][]Verification `json:"verifications,omitempty"`
	// Paused maps a stage to when it was paused.
	Paused map[string]time.Time `json:"paused,omitempty"`
	// PausedBy maps a paused stage to who paused it (stage.RequestedBy), when known.
	PausedBy map[string]string `json:"pausedBy,omitempty"`
	// Runs maps a stage to its last verification runs in the cluster, newest last: a
	// failure's reason and log, an inconclusive analysis waiting for a human. Failed and
	// Inconclusive runs are verdicts the Verifier reads back after a restart instead of
	// verifying again (see RunReporter).
	Runs map[string][]VerificationRun `json:"runs,omitempty"`
	// Owed maps a stage (or release group) to the automatic actions the promoter owes it and
	// has not done yet: a rollback whose attempt failed or was cut short (see OwedAction).
	Owed map[string][]OwedAction `json:"owed,omitempty"`
	// PullRequests maps a stage (or release group) in pull-request mode to the pull request
	// its pending change waits in, until the target branch as fetched holds its merge.
	PullRequests map[string]PullRequest `json:"pullRequests,omitempty"`
	// Refused maps a stage (or release group) to the freight whose pull request was closed
	// unmerged: like a rollback's Kropipe-Rejected value, never proposed again by itself.
	Refused map[string][]Refusal `json:"refused,omitempty"`
	// PullRequestLog maps a stage (or release group) to its pull requests that were merged
	// or closed, newest last (at most maxPullRequestLog): what `promoter history` links.
	PullRequestLog map[string][]PullRequest `json:"pullRequestLog,omitempty"`
}

// Approval lets a stage without autoPromote take one value.
type Approval struct {
	Value      string    `json:"value"`
	ApprovedAt time.Time `json:"approvedAt"`
	// RequestedBy is who approved (stage.RequestedBy), when known.
	RequestedBy string `json:"requestedBy,omitempty"`
}

// Verification records that freight was verified in a stage.
type Verification struct {
	Freight    freight.Freight `json:"freight"`
	FreightID  string          `json:"freightID"`
	Value      string          `json:"value"`
	Commit     string          `json:"commit,omitempty"`
	VerifiedAt time.Time       `json:"verifiedAt"`
}

// maxVerifications bounds the verifications kept per stage; only recent ones matter.
const maxVerifications = 50

// maxRuns bounds the verification runs kept per stage: each may carry a log tail, and the
// newest few are what status and a restarted Verifier read.
const maxRuns = 5

// Store keeps State durably. Load on a store that was never saved returns an
// empty State. Implementations must make Save atomic: a crash leaves either the
// old or the new state.
type Store interface {
	Load(ctx context.Context) (State, error)
	Save(ctx context.Context, s State) error
}

// FileStore keeps State as JSON in one file, replaced atomically on every save.
type FileStore struct {
	path string
	mu   sync.Mutex
	// cached is the state as last read or written while the file is still that one (same
	// inode, size and time; a save renames a new file in): a pass loads the state twice,
	// and with 1,000 stages the file is a megabyte a notification's pass should not parse.
	cached   State
	cachedAt os.FileInfo
}

// NewFileStore returns a store writing path (created with its directory on first save).
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Path is the file the store writes.
func (f *FileStore) Path() string { return f.path }

// Load reads the state file.
func (f *FileStore) Load(ctx context.Context) (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err == nil && f.unchanged(fi) {
		return f.cached.clone(), nil
	}
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading promoter state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("promoter state %s is damaged (%w): move it away to start over; approvals and pauses will be lost, Git history is not", f.path, err)
	}
	if fi != nil {
		f.cached, f.cachedAt = s.clone(), fi
	}
	return s, nil
}

// unchanged reports whether the file is still the one cached was read from or written to.
func (f *FileStore) unchanged(fi os.FileInfo) bool {
	c := f.cachedAt
	return c != nil && os.SameFile(c, fi) && c.Size() == fi.Size() && c.ModTime().Equal(fi.ModTime())
}

// Save writes the state to a temporary file in the same directory, syncs it and
// renames it over the old one (renameio), so a crash never leaves a torn file.
func (f *FileStore) Save(ctx context.Context, s State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("saving promoter state: %w", err)
	}
	if err := renameio.WriteFile(f.path, append(data, '\n'), 0o600); err != nil {
		f.cachedAt = nil
		return fmt.Errorf("saving promoter state: %w", err)
	}
	f.cachedAt = nil
	if fi, err := os.Stat(f.path); err == nil {
		f.cached, f.cachedAt = s.clone(), fi
	}
	return nil
}

// MemoryStore keeps State in memory; for tests and one-shot commands.
type MemoryStore struct {
	mu sync.Mutex
	s  State
}

// Load returns a copy of the state.
func (m *MemoryStore) Load(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.s.clone(), nil
}

// Save replaces the state.
func (m *MemoryStore) Save(_ context.Context, s State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = s.clone()
	return nil
}

// clone deep-copies s so callers never share maps or slices.
func (s State) clone() State {
	out := State{
		Approvals:      map[string][]Approval{},
		Verifications:  map[string][]Verification{},
		Paused:         map[string]time.Time{},
		PausedBy:       map[string]string{},
		Runs:           map[string][]VerificationRun{},
		Owed:           map[string][]OwedAction{},
		PullRequests:   map[string]PullRequest{},
		Refused:        map[string][]Refusal{},
		PullRequestLog: map[string][]PullRequest{},
	}
	for k, v := range s.Approvals {
		out.Approvals[k] = append([]Approval(nil), v...)
	}
	for k, v := range s.Verifications {
		out.Verifications[k] = append([]Verification(nil), v...)
	}
	for k, v := range s.Paused {
		out.Paused[k] = v
	}
	for k, v := range s.PausedBy {
		out.PausedBy[k] = v
	}
	for k, v := range s.Runs {
		out.Runs[k] = append([]VerificationRun(nil), v...)
	}
	for k, v := range s.Owed {
		out.Owed[k] = append([]OwedAction(nil), v...)
	}
	for k, v := range s.PullRequests {
		out.PullRequests[k] = v
	}
	for k, v := range s.Refused {
		out.Refused[k] = append([]Refusal(nil), v...)
	}
	for k, v := range s.PullRequestLog {
		out.PullRequestLog[k] = append([]PullRequest(nil), v...)
	}
	return out
}

// verified returns the verification of freight id in stage, if any.
func (s State) verified(stage, id string) (Verification, bool) {
	vs := s.Verifications[stage]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].FreightID == id {
			return vs[i], true
		}
	}
	return Verification{}, false
}

// latestVerified is the newest verification in stage.
func (s State) latestVerified(stage string) (Verification, bool) {
	vs := s.Verifications[stage]
	if len(vs) == 0 {
		return Verification{}, false
	}
	return vs[len(vs)-1], true
}

func (s State) approved(stage, value string) bool {
	for _, a := range s.Approvals[stage] {
		if a.Value == value {
			return true
		}
	}
	return false
}

func (s *State) addVerification(stage string, v Verification) {
	vs := append(s.Verifications[stage], v)
	if len(vs) > maxVerifications {
		vs = vs[len(vs)-maxVerifications:]
	}
	s.Verifications[stage] = vs
}

// latestRun is the stage's newest verification run in the cluster.
func (s State) latestRun(stage string) (VerificationRun, bool) {
	rs := s.Runs[stage]
	if len(rs) == 0 {
		return VerificationRun{}, false
	}
	return rs[len(rs)-1], true
}

// SettledRun returns the stage's newest Failed or Inconclusive run for freight id promoted
// at commit: a verdict a restarted or newly elected Verifier keeps instead of verifying
// again. A run of the same freight at another commit (before a rollback and a new
// promotion) is no verdict on this one.
func (s State) SettledRun(stage, id, commit string) (VerificationRun, bool) {
	rs := s.Runs[stage]
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Freight == id && rs[i].Commit == commit {
			return rs[i], rs[i].settled()
		}
	}
	return VerificationRun{}, false
}

// failedRejected is the newest failed run of a value rolled back in the stage: why it was.
func (s State) failedRejected(stage string, rejected map[string]bool) (VerificationRun, bool) {
	rs := s.Runs[stage]
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Phase == "Failed" && rejected[rs[i].Value] {
			return rs[i], true
		}
	}
	return VerificationRun{}, false
}

// addRun records a run: it replaces the newest when that is the same run (one freight at one
// commit: Running, then Failed), else it is appended.
func (s *State) addRun(stage string, r VerificationRun) {
	rs := s.Runs[stage]
	if n := len(rs); n > 0 && rs[n-1].Freight == r.Freight && rs[n-1].Commit == r.Commit {
		rs = append(rs[:n-1:n-1], r)
	} else {
		rs = append(rs, r)
	}
	if len(rs) > maxRuns {
		rs = rs[len(rs)-maxRuns:]
	}
	s.Runs[stage] = rs
}

// working is a pass's copy of the state: decisions read it, and verifications made
// during the pass are added to it (so stages downstream see them at once) and kept
// in added, which is all the pass writes back.
type working struct {
	State
	added []addedVerification
	runs  []addedRun
	// edits are other changes the pass made to the State (pull requests), applied to the
	// stored state when the pass saves.
	edits []func(*State)
}

// edit changes the pass's State now and the stored one when the pass saves.
func (w *working) edit(fn func(*State)) {
	if w.PullRequests == nil || w.Refused == nil || w.PullRequestLog == nil {
		w.State = w.State.clone()
	}
	fn(&w.State)
	w.edits = append(w.edits, fn)
}

// setPullRequest records the unit's pull request as it stands.
func (w *working) setPullRequest(unit string, pr PullRequest) {
	w.edit(func(s *State) { s.PullRequests[unit] = pr })
}

type addedRun struct {
	stage string
	run   VerificationRun
}

type addedVerification struct {
	stage string
	v     Verification
}

func (w *working) verifiedNow(stage string, v Verification) {
	w.addVerification(stage, v)
	w.added = append(w.added, addedVerification{stage, v})
}

// ranNow records a verification run unless the state holds it already: a run still going
// is written once (its message's elapsed time changes every pass), a verdict once.
func (w *working) ranNow(stage string, r VerificationRun) {
	if last, ok := w.latestRun(stage); ok && last.Freight == r.Freight && last.Commit == r.Commit && last.Phase == r.Phase &&
		(r.Phase == "Running" || last.Message == r.Message && last.Log == r.Log) {
		return
	}
	w.addRun(stage, r)
	w.runs = append(w.runs, addedRun{stage, r})
}
