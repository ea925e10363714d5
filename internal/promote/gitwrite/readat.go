package gitwrite

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ReadAt returns the file at p as of commit, or, when p is a directory, its *.yaml and
// *.yml files (not those of its subdirectories), by path and sorted. The commit must be in
// the clone: the verification of a promotion reads its own, already pushed, commit. Paths
// outside the repository and symbolic links are refused (ErrPathEscapes).
func (r *Repo) ReadAt(ctx context.Context, commit, p string) (map[string][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clean, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	c, err := object.GetCommit(r.repo.Storer, plumbing.NewHash(commit))
	if err != nil {
		return nil, r.wrap(fmt.Errorf("reading %s at %.12s: %w", clean, commit, err))
	}
	root, err := c.Tree()
	if err != nil {
		return nil, r.wrap(err)
	}
	e, err := root.FindEntry(clean)
	if err == nil && e.Mode == filemode.Dir {
		dir, err := root.Tree(clean)
		if err != nil {
			return nil, r.wrap(err)
		}
		out := map[string][]byte{}
		names := make([]string, 0, len(dir.Entries))
		for _, de := range dir.Entries {
			if de.Mode.IsFile() && (strings.HasSuffix(de.Name, ".yaml") || strings.HasSuffix(de.Name, ".yml")) {
				names = append(names, de.Name)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			data, err := readFile(r.reader(), c.TreeHash, path.Join(clean, n))
			if err != nil {
				return nil, err
			}
			out[path.Join(clean, n)] = data
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: the directory %s has no .yaml or .yml file", ErrFileNotFound, clean)
		}
		return out, nil
	}
	data, err := readFile(r.reader(), c.TreeHash, clean)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{clean: data}, nil
}
