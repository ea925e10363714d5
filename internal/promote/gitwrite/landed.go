package gitwrite

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxLandedWalk bounds how far down the branch's first-parent line LandedOn looks.
const maxLandedWalk = 10000

// landedSkew is how much older than commit a descendant may claim to be (committer clocks
// disagree): LandedOn does not look below commit's time minus this.
const landedSkew = 24 * time.Hour

// LandedOn returns the commit through which commit entered branch, as last fetched: commit
// itself when it is on the branch's first-parent line (pushed there, rebased, squashed), else
// the merge commit on that line that brought it in — a pull request merged with a merge
// commit, whose own commit sits on the pull request's branch and is not a state the branch
// was ever in. "" when the branch does not hold commit (within maxLandedWalk commits).
func (r *Repo) LandedOn(ctx context.Context, branch, commit string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.fetchedHead(ctx, branch)
	if err != nil {
		return "", err
	}
	want := plumbing.NewHash(commit)
	target, err := object.GetCommit(r.repo.Storer, want)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	notBefore := target.Committer.When.Add(-landedSkew)
	// The first-parent line from the head down to commit's time.
	var line []*object.Commit
	c, err := object.GetCommit(r.repo.Storer, head)
	if err != nil {
		return "", err
	}
	for len(line) < maxLandedWalk {
		if c.Hash == want {
			return commit, nil
		}
		line = append(line, c)
		if c.NumParents() == 0 || c.Committer.When.Before(notBefore) {
			break
		}
		if c, err = c.Parent(0); err != nil {
			return "", err
		}
	}
	// Oldest first: the first merge whose other parents reach commit is where it landed (a
	// later merge may reach it too, through a branch started after that merge). Every walk
	// before the one that finds it fails in full, so what it saw need not be seen again.
	seen := map[plumbing.Hash]bool{}
	for _, m := range slices.Backward(line) {
		for i := 1; i < m.NumParents(); i++ {
			p, err := m.Parent(i)
			if err != nil {
				return "", err
			}
			found, err := reaches(ctx, p, want, notBefore, seen)
			if err != nil {
				return "", err
			}
			if found {
				return m.Hash.String(), nil
			}
		}
	}
	return "", nil
}

// reaches reports whether want is from or one of its ancestors, not looking below notBefore.
func reaches(ctx context.Context, from *object.Commit, want plumbing.Hash, notBefore time.Time, seen map[plumbing.Hash]bool) (bool, error) {
	stack := []*object.Commit{from}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		if c.Hash == want {
			return true, nil
		}
		if c.Committer.When.Before(notBefore) {
			continue
		}
		err := c.Parents().ForEach(func(p *object.Commit) error {
			stack = append(stack, p)
			return nil
		})
		if err != nil {
			return false, err
		}
	}
	return false, nil
}
