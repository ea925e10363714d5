package gitwrite

import (
	"context"
	"errors"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
	"github.com/kropipe/kropipe/internal/promote/trailer"
)

// Proposal is what Propose pushed to a pull request's branch.
type Proposal struct {
	// Results are per change, as Apply's; Commit is the commit on the head branch.
	Results []Result
	// Head is the commit the head branch holds now; "" when there was nothing to propose
	// (every change Skipped: the base branch already holds the values).
	Head string
	// Base is the base branch's head the commit was built on.
	Base string
}

// ErrBranchTaken is returned when a pull request's branch holds a commit kropipe did not
// make for these stages: someone pushed to it, and kropipe does not overwrite their work.
var ErrBranchTaken = errors.New("the pull request branch holds a commit kropipe did not make")

// Propose builds the changes exactly as Apply would (the same edits, messages and one commit
// per change or set) on top of base's head as fetched now, and points branch head at them:
// a force push with lease. It replaces what head holds only when that is lease (the commit
// kropipe last proposed), nothing, a commit base already contains (a merged branch left
// behind), or a commit carrying kropipe's trailers for the same stages (proposed by a run cut
// short before it could record it). Anything else is ErrBranchTaken. base itself is never
// written; head must not be base.
func (r *Repo) Propose(ctx context.Context, base, head, lease string, changes ...Change) (Proposal, error) {
	return r.propose(ctx, nil, base, head, lease, changes)
}

// propose is Propose, pushing when c is nil, else committing through c (ProposeThrough).
func (r *Repo) propose(ctx context.Context, c Committer, base, head, lease string, changes []Change) (Proposal, error) {
	if head == base || head == "" {
		return Proposal{}, fmt.Errorf("%w: the pull request branch %q must differ from the branch it merges into", ErrInvalidChange, head)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	results, static := prepare(changes)
	var lastErr error
	backoff := r.o.retry
	for attempt := 0; attempt < r.o.retry.Steps; attempt++ {
		if attempt > 0 {
			if err := r.sleep(ctx, backoff.Step()); err != nil {
				return Proposal{Results: results}, err
			}
		}
		p, err := r.proposeOnce(ctx, c, base, head, lease, results, static)
		if err == nil || !retryable(err) || errors.Is(err, ErrBranchTaken) {
			return p, err
		}
		lastErr = err
		r.log.Info("proposing failed, will retry", "branch", head, "attempt", attempt+1, "err", err)
	}
	failAll(results, lastErr)
	return Proposal{Results: results}, fmt.Errorf("giving up after %d tries: %w", r.o.retry.Steps, lastErr)
}

func (r *Repo) proposeOnce(ctx context.Context, c Committer, base, head, lease string, results []Result, static []bool) (Proposal, error) {
	baseHead, err := r.fetch(ctx, base)
	if err != nil {
		return Proposal{Results: results}, err
	}
	cur, err := r.remoteHead(ctx, head)
	if err != nil {
		return Proposal{Results: results}, err
	}
	ov := newPackingOverlay(r.repo.Storer)
	newHead, _, err := r.build(ov, baseHead, results, static, 0)
	if err != nil {
		return Proposal{Results: results}, err
	}
	p := Proposal{Results: results, Base: baseHead.String()}
	if newHead == baseHead {
		return p, joinErrs(results)
	}
	if cur == newHead {
		// The same commit, made again in the same second: a run killed after its push and
		// restarted at once. Nothing to push, but this clone may never have stored the
		// objects, and the commit's message becomes the pull request's title.
		r.keepProposed(head, newHead, ov)
		p.Head = newHead.String()
		return p, joinErrs(results)
	}
	if !cur.IsZero() && cur.String() != lease {
		if err := r.replaceable(baseHead, cur, head, results); err != nil {
			failAll(results, err)
			return p, err
		}
	}
	if c != nil {
		return r.proposeThrough(ctx, c, ov, baseHead, cur, head, p)
	}
	crashpoint.Hit(crashpoint.BeforePush)
	if err := r.push(ctx, head, cur, newHead, ov); err != nil {
		return p, r.wrap(fmt.Errorf("pushing %s to %s: %w", head, r.display, err))
	}
	crashpoint.Hit(crashpoint.AfterPush)
	r.keepProposed(head, newHead, ov)
	p.Head = newHead.String()
	for _, res := range results {
		if res.Commit != "" {
			r.log.Info("proposed", "stage", res.Stage, "file", res.File, "old", res.Old, "new", res.New, "commit", res.Commit[:12], "branch", head, "kind", res.Kind)
		}
	}
	return p, joinErrs(results)
}

// keepProposed stores the proposal's objects in the clone and points its remote ref of
// head at commit, as a fetch would have. A failure only costs a later fetch: it is logged.
func (r *Repo) keepProposed(head string, commit plumbing.Hash, ov *overlay) {
	if err := ov.persist(r.dir, r.repo.Storer); err != nil {
		r.log.Warn("keeping the proposed objects in the clone", "err", err)
	} else if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewRemoteReferenceName("origin", head), commit)); err != nil {
		r.log.Warn("updating the clone's ref after a push", "branch", head, "err", err)
	}
}

// remoteHead is what branch holds on the server now; zero when it does not exist.
func (r *Repo) remoteHead(ctx context.Context, branch string) (plumbing.Hash, error) {
	rem, err := r.repo.Remote("origin")
	if err != nil {
		return plumbing.ZeroHash, r.wrap(err)
	}
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: r.auth, CABundle: r.o.caBundle})
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return plumbing.ZeroHash, nil
		}
		return plumbing.ZeroHash, r.wrap(fmt.Errorf("listing the branches of %s: %w", r.display, err))
	}
	want := plumbing.NewBranchReferenceName(branch)
	for _, ref := range refs {
		if ref.Name() == want {
			return ref.Hash(), nil
		}
	}
	return plumbing.ZeroHash, nil
}

// replaceable says whether the head branch's commit cur may be replaced although kropipe
// did not record it: base holds it already, or it is kropipe's own for the same stages.
func (r *Repo) replaceable(baseHead, cur plumbing.Hash, head string, results []Result) error {
	taken := fmt.Errorf("%w: %s on %s holds commit %s; delete the branch or close its pull request, kropipe will not overwrite it", ErrBranchTaken, head, r.display, short(cur.String()))
	if err := r.fetchRef(head); err != nil {
		return r.wrap(err)
	}
	c, err := object.GetCommit(r.repo.Storer, cur)
	if err != nil {
		return taken
	}
	if b, err := object.GetCommit(r.repo.Storer, baseHead); err == nil {
		if ok, err := c.IsAncestor(b); err == nil && ok {
			return nil // merged: the branch was left behind
		}
	}
	// kropipe's own: every commit not in base carries a trailer naming one of these stages
	// (or their group).
	ours := map[string]bool{}
	for _, res := range results {
		ours[res.Stage] = true
		if res.Group != "" {
			ours[res.Group] = true
		}
	}
	b, err := object.GetCommit(r.repo.Storer, baseHead)
	if err != nil {
		return taken
	}
	for i := 0; i < 50; i++ { // a proposal is one commit, a few at most
		if ok, err := c.IsAncestor(b); err == nil && ok {
			return nil
		}
		tr, err := trailer.Map(c.Message)
		if err != nil || !(ours[tr[trailer.Stage]] || ours[tr[trailer.Group]]) {
			return taken
		}
		if c.NumParents() == 0 {
			return taken
		}
		if c, err = c.Parent(0); err != nil {
			return taken
		}
	}
	return taken
}

// fetchRef brings refs/remotes/origin/<branch> up to date (the objects of a pull request's
// branch). The caller holds r.mu.
func (r *Repo) fetchRef(branch string) error {
	remoteRef := plumbing.NewRemoteReferenceName("origin", branch)
	err := r.repo.Fetch(&git.FetchOptions{
		RemoteName: "origin",
		RemoteURL:  r.url,
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(branch).String() + ":" + remoteRef.String())},
		Auth:       r.auth,
		Tags:       git.NoTags,
		CABundle:   r.o.caBundle,
	})
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return fmt.Errorf("fetching %s from %s: %w", branch, r.display, err)
}

// DeleteBranch deletes branch on the server if it still holds expect (a pull request's
// branch once merged or closed); a branch already gone, or holding something else, is left.
func (r *Repo) DeleteBranch(ctx context.Context, branch, expect string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.remoteHead(ctx, branch)
	if err != nil || cur.IsZero() || cur.String() != expect {
		return err
	}
	if err := r.push(ctx, branch, cur, plumbing.ZeroHash, nil); err != nil {
		return r.wrap(fmt.Errorf("deleting %s on %s: %w", branch, r.display, err))
	}
	_ = r.repo.Storer.RemoveReference(plumbing.NewRemoteReferenceName("origin", branch))
	return nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// CommitMessage is the message of a commit the clone holds.
func (r *Repo) CommitMessage(commit string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := object.GetCommit(r.repo.Storer, plumbing.NewHash(commit))
	if err != nil {
		return "", r.wrap(err)
	}
	return c.Message, nil
}
