package gitwrite

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/kropipe/kropipe/internal/promote/signing"
)

// The clone is bare: commits are built from objects directly (blob → trees on the
// path → commit). A worktree checkout of a 10,000-file repository costs seconds in
// go-git, and an edit only ever touches one path.

// readFile returns the blob at p in the tree, refusing symlinks anywhere on the path
// (a symlink could point outside the repository) and anything that is not a file.
func readFile(s storer.EncodedObjectStorer, root plumbing.Hash, p string) ([]byte, error) {
	parts := strings.Split(p, "/")
	tree, err := getTree(s, root)
	if err != nil {
		return nil, err
	}
	for i, part := range parts {
		e := findEntry(tree, part)
		where := strings.Join(parts[:i+1], "/")
		if e == nil {
			if where == p {
				return nil, fmt.Errorf("%w: %s does not exist on the branch", ErrFileNotFound, p)
			}
			return nil, fmt.Errorf("%w: %s does not exist on the branch (there is no %s)", ErrFileNotFound, p, where)
		}
		switch {
		case e.Mode == filemode.Symlink:
			return nil, fmt.Errorf("%w: %s is a symbolic link; kropipe does not follow links", ErrPathEscapes, where)
		case e.Mode == filemode.Submodule:
			return nil, fmt.Errorf("%w: %s is a submodule", ErrFileNotFound, where)
		case i < len(parts)-1:
			if e.Mode != filemode.Dir {
				return nil, fmt.Errorf("%w: %s is a file, not a directory", ErrFileNotFound, where)
			}
			if tree, err = getTree(s, e.Hash); err != nil {
				return nil, err
			}
		default:
			if e.Mode == filemode.Dir {
				return nil, fmt.Errorf("%w: %s is a directory", ErrFileNotFound, where)
			}
			blob, err := object.GetBlob(s, e.Hash)
			if err != nil {
				return nil, err
			}
			r, err := blob.Reader()
			if err != nil {
				return nil, err
			}
			defer r.Close()
			return io.ReadAll(r)
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrFileNotFound, p)
}

func findEntry(t *object.Tree, name string) *object.TreeEntry {
	for i := range t.Entries {
		if t.Entries[i].Name == name {
			return &t.Entries[i]
		}
	}
	return nil
}

// replaceFile returns a new root tree in which the file at parts holds data. The new
// blob and trees are stored as new versions of the ones they replace (see
// overlay.setVersion). The file must exist (readFile checked it), so entry order never
// changes.
func replaceFile(s storer.EncodedObjectStorer, treeHash plumbing.Hash, parts []string, data []byte) (plumbing.Hash, error) {
	tree, err := getTree(s, treeHash)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	entries := append([]object.TreeEntry(nil), tree.Entries...)
	found := false
	for i := range entries {
		if entries[i].Name != parts[0] {
			continue
		}
		found = true
		var h plumbing.Hash
		if len(parts) == 1 {
			h, err = writeBlob(s, data, entries[i].Hash)
		} else {
			h, err = replaceFile(s, entries[i].Hash, parts[1:], data)
		}
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries[i].Hash = h
	}
	if !found {
		return plumbing.ZeroHash, fmt.Errorf("%w: %s", ErrFileNotFound, parts[0])
	}
	obj := s.NewEncodedObject()
	if err := encodeTree(obj, entries); err != nil {
		return plumbing.ZeroHash, err
	}
	h, err := storeVersion(s, obj, treeHash)
	if o, ok := s.(*overlay); ok && err == nil {
		o.trees[h] = &object.Tree{Hash: h, Entries: entries}
	}
	return h, err
}

// getTree reads a tree, through the overlay's decoded trees when s is one.
func getTree(s storer.EncodedObjectStorer, h plumbing.Hash) (*object.Tree, error) {
	if o, ok := s.(*overlay); ok {
		return o.tree(h)
	}
	return object.GetTree(s, h)
}

// encodeTree writes entries, in their order, as a tree object: what object.Tree.Encode
// writes, without a formatted print per entry (a folder of 10,000 apps has 10,000).
func encodeTree(obj plumbing.EncodedObject, entries []object.TreeEntry) error {
	n := 0
	for _, e := range entries {
		n += len("100644 ") + len(e.Name) + 1 + len(e.Hash)
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = strconv.AppendUint(b, uint64(e.Mode), 8)
		b = append(b, ' ')
		b = append(b, e.Name...)
		b = append(b, 0)
		b = append(b, e.Hash[:]...)
	}
	obj.SetType(plumbing.TreeObject)
	obj.SetSize(int64(len(b)))
	w, err := obj.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Close()
}

// writeBlob stores data, the new version of the blob prev, and returns its hash.
func writeBlob(s storer.EncodedObjectStorer, data []byte, prev plumbing.Hash) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return storeVersion(s, obj, prev)
}

// storeVersion stores obj as the new version of prev where the store packs versions
// as deltas (an overlay), and plainly elsewhere.
func storeVersion(s storer.EncodedObjectStorer, obj plumbing.EncodedObject, prev plumbing.Hash) (plumbing.Hash, error) {
	if o, ok := s.(*overlay); ok {
		return o.setVersion(obj, prev)
	}
	return s.SetEncodedObject(obj)
}

// writeCommit stores a commit with one parent, signed by sign unless it is nil. Every
// commit gitwrite makes goes through here, so none escapes signing.
func writeCommit(s storer.EncodedObjectStorer, parent, tree plumbing.Hash, msg string, who object.Signature, sign signing.Signer) (plumbing.Hash, error) {
	c := &object.Commit{
		Author:       who,
		Committer:    who,
		Message:      msg,
		TreeHash:     tree,
		ParentHashes: []plumbing.Hash{parent},
	}
	if sign != nil {
		// What git signs: the commit as encoded without its gpgsig header, which then
		// carries the signature, OpenPGP or SSH alike (gitformat-signature). go-git's
		// CommitOptions.Signer does the same, but only for Worktree.Commit, which a bare
		// clone built from plumbing does not use.
		payload := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(payload); err != nil {
			return plumbing.ZeroHash, err
		}
		rd, err := payload.Reader()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		raw, err := io.ReadAll(rd)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		sig, err := sign.Sign(raw)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("signing the commit %q: %w", strings.SplitN(msg, "\n", 2)[0], err)
		}
		c.PGPSignature = string(sig)
	}
	obj := s.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

func signature(name, email string, now time.Time) object.Signature {
	return object.Signature{Name: name, Email: email, When: now}
}
