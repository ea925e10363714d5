package gitwrite

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Committing through a forge's API instead of pushing: GitHub signs a commit a GitHub App
// makes through its Git Data API and shows it "Verified", so a branch that requires signed
// commits takes kropipe's promotions without a key in kropipe. The commits are built here
// exactly as Apply and Propose build them (the same edits, messages, one commit per change
// or set); only their whole new files and messages go to the forge, which makes its own
// commits (its author, its signature, so other hashes) and moves the branch.

// Committer commits whole files onto a branch through a forge's API; forge.FileCommitter
// fits once its refusal of a branch that moved is reported as ErrBranchMoved.
type Committer interface {
	// CommitFiles makes one commit on parentSHA changing files (path → whole content) and
	// moves branch to it: only from parentSHA unless force, creating it when createBranch.
	CommitFiles(ctx context.Context, branch, parentSHA, message string, files map[string][]byte, createBranch, force bool) (sha string, err error)
}

// ErrBranchMoved is what a Committer's error wraps when the branch no longer is at the
// parent it was asked to move from: the commits are planned again on the new head.
var ErrBranchMoved = errors.New("the branch moved")

// Plan is what Apply would commit on a branch, built but not pushed.
type Plan struct {
	// Base is the branch's head the commits were built on.
	Base string
	// Commits are in order, each on the one before (the first on Base).
	Commits []PlannedCommit
	// Results are per change as Apply fills them (Old, Skipped, Err); Commit stays empty.
	Results []Result
}

// PlannedCommit is one commit of a Plan.
type PlannedCommit struct {
	// Message is the commit's message, byte for byte what Apply writes (trailers included).
	Message string
	// Files are the whole new content of each file the commit changes, by path.
	Files map[string][]byte
	// Changes are the indexes in Plan.Results of the changes the commit carries (one, or
	// a release group's set).
	Changes []int
}

// Plan fetches branch and builds the changes on its head as Apply would, without pushing:
// what a forge's API is to commit. A change that cannot be applied gets its Result.Err and
// is left out, as with Apply; the error is for a plan that could not be made at all.
func (r *Repo) Plan(ctx context.Context, branch string, changes ...Change) (Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	results, static := prepare(changes)
	base, err := r.fetch(ctx, branch)
	if err != nil {
		return Plan{Results: results}, err
	}
	ov := newOverlay(r.repo.Storer)
	if _, _, err := r.build(ov, base, results, static, 0); err != nil {
		return Plan{Results: results}, err
	}
	commits, err := planned(ov, results)
	return Plan{Base: base.String(), Commits: commits, Results: results}, err
}

// planned reads back the commits build made into ov for results (whose Commit names
// them): their messages and changed files. It clears Commit, which names a commit nobody
// will push.
func planned(ov *overlay, results []Result) ([]PlannedCommit, error) {
	var commits []PlannedCommit
	var trees []plumbing.Hash
	at := map[string]int{}
	for i := range results {
		h := results[i].Commit
		if h == "" {
			continue
		}
		results[i].Commit = ""
		k, ok := at[h]
		if !ok {
			c, err := object.GetCommit(ov, plumbing.NewHash(h))
			if err != nil {
				return nil, err
			}
			commits = append(commits, PlannedCommit{Message: c.Message, Files: map[string][]byte{}})
			trees = append(trees, c.TreeHash)
			k = len(commits) - 1
			at[h] = k
		}
		data, err := readFile(ov, trees[k], results[i].File)
		if err != nil {
			return nil, err
		}
		commits[k].Files[results[i].File] = data
		commits[k].Changes = append(commits[k].Changes, i)
	}
	return commits, nil
}

// ApplyThrough writes the changes to branch as Apply does, but through c instead of a push:
// one API commit per change or set, each on the one before, the first on the branch's head
// as fetched now. When the branch moved meanwhile (ErrBranchMoved), what has not landed is
// built again on the new head and committed again, with the same back-off and tries as
// Apply; nothing is forced. Results say which changes landed (Commit is the forge's commit).
// The clone then fetches the branch, so history and ancestry see the forge's commits.
func (r *Repo) ApplyThrough(ctx context.Context, c Committer, branch string, changes ...Change) ([]Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	results, static := prepare(changes)
	done := make([]bool, len(results)) // its commit is on the branch
	var lastErr error
	backoff := r.o.retry
	for attempt := 0; attempt < r.o.retry.Steps; attempt++ {
		if attempt > 0 {
			if err := r.sleep(ctx, backoff.Step()); err != nil {
				return results, err
			}
		}
		base, err := r.fetch(ctx, branch)
		if err != nil {
			lastErr = err
			if retryable(err) {
				continue
			}
			return results, err
		}
		// What is left: the changes no earlier attempt landed (a set lands whole, so it
		// stays together).
		var idx []int
		for i := range results {
			if !done[i] {
				idx = append(idx, i)
			}
		}
		left, leftStatic := make([]Result, len(idx)), make([]bool, len(idx))
		for k, i := range idx {
			left[k], leftStatic[k] = results[i], static[i]
		}
		ov := newOverlay(r.repo.Storer)
		_, _, err = r.build(ov, base, left, leftStatic, 0)
		var commits []PlannedCommit
		if err == nil {
			commits, err = planned(ov, left)
		}
		for k, i := range idx {
			results[i] = left[k]
		}
		if err != nil {
			return results, err
		}
		parent, moved := base.String(), false
		for n, pc := range commits {
			sha, err := c.CommitFiles(ctx, branch, parent, pc.Message, pc.Files, false, false)
			if errors.Is(err, ErrBranchMoved) {
				moved, lastErr = true, r.wrap(err)
				break
			}
			if err != nil {
				err = r.wrap(&apiError{err: err})
				for _, rest := range commits[n:] {
					for _, k := range rest.Changes {
						results[idx[k]].Err = err
					}
				}
				r.learn(ctx, branch)
				return results, err
			}
			for _, k := range pc.Changes {
				results[idx[k]].Commit, done[idx[k]] = sha, true
			}
			parent = sha
		}
		if len(commits) > 0 {
			r.learn(ctx, branch)
		}
		if !moved {
			for _, res := range results {
				if res.Commit != "" {
					r.log.Info("committed through the forge's API", "stage", res.Stage, "file", res.File, "old", res.Old, "new", res.New, "commit", short(res.Commit), "kind", res.Kind)
				}
			}
			return results, joinErrs(results)
		}
		r.log.Info("the branch moved; building again on the new head", "branch", branch, "attempt", attempt+1, "err", lastErr)
		if r.o.pushRetried != nil && attempt+1 < r.o.retry.Steps {
			r.o.pushRetried(r.display)
		}
	}
	err := fmt.Errorf("giving up after %d tries: %w", r.o.retry.Steps, lastErr)
	for i := range results {
		if !done[i] && results[i].Err == nil && !results[i].Skipped {
			results[i].Err = err
		}
	}
	return results, err
}

// ProposeThrough is Propose through c instead of a push: the same commits built on base's
// head, the same rule for what head may hold before it is replaced (lease, nothing, merged,
// kropipe's own for these stages; anything else is ErrBranchTaken), then head created or
// moved there by c (forced only once that rule said yes). The clone then fetches head.
func (r *Repo) ProposeThrough(ctx context.Context, c Committer, base, head, lease string, changes ...Change) (Proposal, error) {
	return r.propose(ctx, c, base, head, lease, changes)
}

// proposeThrough commits what proposeOnce built into ov through c onto head, which holds
// cur now (zero: it does not exist).
func (r *Repo) proposeThrough(ctx context.Context, c Committer, ov *overlay, baseHead, cur plumbing.Hash, head string, p Proposal) (Proposal, error) {
	commits, err := planned(ov, p.Results)
	if err != nil {
		return p, err
	}
	parent := baseHead.String()
	for n, pc := range commits {
		create, force := false, false
		if n == 0 {
			create, force = cur.IsZero(), !cur.IsZero()
		}
		sha, err := c.CommitFiles(ctx, head, parent, pc.Message, pc.Files, create, force)
		if err != nil {
			if n > 0 {
				r.learn(ctx, head)
			}
			return p, r.wrap(&apiError{err: err})
		}
		for _, k := range pc.Changes {
			p.Results[k].Commit = sha
		}
		parent = sha
	}
	r.learn(ctx, head)
	p.Head = parent
	for _, res := range p.Results {
		if res.Commit != "" {
			r.log.Info("proposed through the forge's API", "stage", res.Stage, "file", res.File, "old", res.Old, "new", res.New, "commit", short(res.Commit), "branch", head, "kind", res.Kind)
		}
	}
	return p, joinErrs(p.Results)
}

// learn fetches branch after the forge moved it, so the clone holds the forge's commits
// (history, ancestry, messages). A failed fetch only delays that to the next one.
func (r *Repo) learn(ctx context.Context, branch string) {
	if _, err := r.fetch(ctx, branch); err != nil {
		r.log.Warn("fetching what the forge committed", "branch", branch, "err", err)
	}
}

// apiError is a Committer's failure. Only a branch that moved is worth building again at
// once; the forge's own failures (rights, 5xx) are for the caller to retry later.
type apiError struct{ err error }

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }
