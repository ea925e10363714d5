package stage

import (
	"context"
	"errors"
	"fmt"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

// This file is commitVia: github-api: the unit's commits are made by GitHub through its API
// (forge.FileCommitter) instead of pushed, so GitHub signs them and shows them Verified when
// kropipe authenticates as a GitHub App. gitwrite builds them as for a push (ApplyThrough,
// ProposeThrough); only who makes the commit changes.

// committerOf returns the forge of s's repository as a gitwrite.Committer.
func (e *Engine) committerOf(ctx context.Context, s Spec) (gitwrite.Committer, error) {
	f, err := e.forgeOf(ctx, s)
	if err != nil {
		return nil, err
	}
	fc, ok := f.(forge.FileCommitter)
	if !ok {
		return nil, &FieldError{Stage: s.Name, Field: "commitVia", Msg: fmt.Sprintf("is github-api (kropipe.io/commit-via) but the stage's forge is %s, which cannot commit through GitHub's API; nothing was written: remove the setting, or set forge: github (kropipe.io/forge) if the repository is on GitHub", f.Kind())}
	}
	return apiCommitter{fc}, nil
}

// apiCommitter tells gitwrite when GitHub refused to move a branch because it moved (422
// "Update is not a fast forward", "Reference already exists"): it builds again on the new head.
type apiCommitter struct{ fc forge.FileCommitter }

func (a apiCommitter) CommitFiles(ctx context.Context, branch, parentSHA, message string, files map[string][]byte, createBranch, force bool) (string, error) {
	sha, err := a.fc.CommitFiles(ctx, branch, parentSHA, message, files, createBranch, force)
	if errors.Is(err, forge.ErrConflict) {
		return "", fmt.Errorf("%w: %w", gitwrite.ErrBranchMoved, err)
	}
	return sha, err
}
