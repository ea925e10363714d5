package stage

import (
	"errors"
	"fmt"
	"io"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/yamledit"
)

// snapshot reads files at the branch head gitwrite fetched last (History fetches),
// from the persistent clone on disk. gitwrite's Read fetches on every call, which
// costs one round trip to the Git server per stage; a pass reads every stage's file
// after one fetch per repository instead. Anything unusual (a symlink, a clone
// that cannot be opened) falls back to Read.
type snapshot struct {
	tree   *object.Tree
	commit string
}

// errFallBack asks the caller to use gitwrite's Read.
var errFallBack = errors.New("read through gitwrite")

func openSnapshot(dir, branch string) (*snapshot, error) {
	r, err := git.PlainOpen(dir)
	if err != nil {
		return nil, err
	}
	ref, err := r.Reference(plumbing.NewRemoteReferenceName("origin", branch), true)
	if err != nil {
		return nil, err
	}
	c, err := r.CommitObject(ref.Hash())
	if err != nil {
		return nil, err
	}
	t, err := c.Tree()
	if err != nil {
		return nil, err
	}
	return &snapshot{tree: t, commit: c.Hash.String()}, nil
}

func (s *snapshot) read(file, key string) (string, error) {
	entry, err := s.tree.FindEntry(file)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return "", fmt.Errorf("%w: %s does not exist on the branch", gitwrite.ErrFileNotFound, file)
	}
	if err != nil || entry.Mode != filemode.Regular && entry.Mode != filemode.Executable {
		return "", errFallBack
	}
	f, err := s.tree.TreeEntryFile(entry)
	if err != nil {
		return "", errFallBack
	}
	rd, err := f.Reader()
	if err != nil {
		return "", errFallBack
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return "", errFallBack
	}
	v, err := yamledit.Get(data, key)
	if err != nil {
		var ke *yamledit.KeyError
		if errors.As(err, &ke) {
			ke.File = file
		}
		return "", err
	}
	return v, nil
}
