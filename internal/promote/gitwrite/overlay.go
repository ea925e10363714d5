package gitwrite

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// overlay keeps the objects a batch creates in memory, in front of the clone's store.
// go-git's filesystem store writes every new object as a loose file (a temp file,
// zlib, rename): 4,000 of them for 1,000 stages took most of a batch's time. Here
// they stay in memory until the push lands and then go to disk as one pack, the same
// objects that were pushed. A refused push leaves nothing behind.
//
// An overlay that packs (newPackingOverlay) writes each object into the pack as it is
// made, as a delta against the version it replaces, and holds whole only the newest
// version of each path: in a folder of 1,000 apps side by side every commit rewrites
// the folder's 1,000-entry tree, and holding every version whole is what made memory
// and pushes grow with the width of folders instead of with the changes.
type overlay struct {
	storer.EncodedObjectStorer // the clone's store
	mem                        map[plumbing.Hash]plumbing.EncodedObject
	raw                        map[plumbing.Hash][]byte // mem's contents, when packing: the next version's delta base
	// trees are the trees read or made, decoded: a folder of 10,000 apps takes
	// milliseconds to decode, and every commit in it reads and rewrites it.
	trees map[plumbing.Hash]*object.Tree
	pack  *packBuilder // nil: keep every object whole, nothing to push
}

// newOverlay keeps every object whole: for building commits that are read back
// (Plan), never pushed.
func newOverlay(base storer.EncodedObjectStorer) *overlay {
	return &overlay{
		EncodedObjectStorer: base,
		mem:                 map[plumbing.Hash]plumbing.EncodedObject{},
		raw:                 map[plumbing.Hash][]byte{},
		trees:               map[plumbing.Hash]*object.Tree{},
	}
}

// newPackingOverlay streams the objects into a pack for the push.
func newPackingOverlay(base storer.EncodedObjectStorer) *overlay {
	o := newOverlay(base)
	o.pack = newPackBuilder()
	return o
}

func (o *overlay) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }

// SetEncodedObject stores an object that replaces no earlier version (a commit).
func (o *overlay) SetEncodedObject(obj plumbing.EncodedObject) (plumbing.Hash, error) {
	return o.setVersion(obj, plumbing.ZeroHash)
}

// setVersion stores obj, the new version of prev (the object the same path held
// before; zero when none). When packing, obj goes into the pack at once, as a delta
// against prev when that pays, and prev, if made in this batch, leaves memory: it is
// in the pack and is rebuilt from there in the rare case it is read again.
func (o *overlay) setVersion(obj plumbing.EncodedObject, prev plumbing.Hash) (plumbing.Hash, error) {
	h := obj.Hash()
	if o.pack == nil {
		o.mem[h] = obj
		return h, nil
	}
	data, ok := o.raw[h]
	if !ok {
		var err error
		if data, err = contents(obj); err != nil {
			return h, err
		}
	}
	if !o.pack.has(h) {
		base, baseData, depth, err := o.deltaBase(prev)
		if err != nil {
			return h, err
		}
		if err := o.pack.add(h, obj.Type(), data, base, baseData, depth); err != nil {
			return h, err
		}
	}
	o.mem[h], o.raw[h] = obj, data
	if prev != h {
		delete(o.mem, prev)
		delete(o.raw, prev)
		delete(o.trees, prev)
	}
	return h, nil
}

// tree reads tree h, decoding it once per batch.
func (o *overlay) tree(h plumbing.Hash) (*object.Tree, error) {
	if t, ok := o.trees[h]; ok {
		return t, nil
	}
	t, err := object.GetTree(o, h)
	if err != nil {
		return nil, err
	}
	o.trees[h] = t
	return t, nil
}

// deltaBase is what a new version of prev may be a delta against: prev itself when it
// is whole in memory (made in this batch) and its chain is not too deep yet, or, as a
// thin delta, when it is in the clone, which got it from the server (the base commit's
// objects): the push decides whether the server takes thin deltas.
func (o *overlay) deltaBase(prev plumbing.Hash) (plumbing.Hash, []byte, int, error) {
	if prev.IsZero() {
		return plumbing.ZeroHash, nil, 0, nil
	}
	if depth, ok := o.pack.depth(prev); ok {
		data, whole := o.raw[prev]
		if !whole || depth >= maxDeltaDepth {
			return plumbing.ZeroHash, nil, 0, nil
		}
		return prev, data, depth, nil
	}
	obj, err := o.EncodedObjectStorer.EncodedObject(plumbing.AnyObject, prev)
	if err != nil {
		return plumbing.ZeroHash, nil, 0, err
	}
	data, err := contents(obj)
	return prev, data, -1, err
}

func (o *overlay) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if obj, ok := o.mem[h]; ok {
		if t != plumbing.AnyObject && obj.Type() != t {
			return nil, plumbing.ErrObjectNotFound
		}
		return obj, nil
	}
	if o.pack != nil && o.pack.has(h) {
		return o.pack.object(t, h, o)
	}
	return o.EncodedObjectStorer.EncodedObject(t, h)
}

func (o *overlay) HasEncodedObject(h plumbing.Hash) error {
	if _, ok := o.mem[h]; ok || (o.pack != nil && o.pack.has(h)) {
		return nil
	}
	return o.EncodedObjectStorer.HasEncodedObject(h)
}

func (o *overlay) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if obj, ok := o.mem[h]; ok {
		return obj.Size(), nil
	}
	if o.pack != nil {
		if n, ok := o.pack.size(h); ok {
			return n, nil
		}
	}
	return o.EncodedObjectStorer.EncodedObjectSize(h)
}

// packed is how many bytes the pack being built holds (0 for an overlay that does not
// pack): what Apply compares with maxPack.
func (o *overlay) packed() int64 {
	if o.pack == nil {
		return 0
	}
	return int64(o.pack.body.Len())
}

// contents reads a whole object.
func contents(obj plumbing.EncodedObject) ([]byte, error) {
	r, err := obj.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, obj.Size()))
	if _, err := io.Copy(buf, r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// smallPack is the most objects persist hands to go-git's PackfileWriter: ~50 promotions.
const smallPack = 200

// persist writes the pushed objects into the clone (its git directory dir, store s) so
// the next fetch does not download our own commits back: the pushed pack, made
// self-contained (a pack of the clone is read alone, so a delta against an object
// outside it would be unreadable), with the index built from what the pack builder
// knows. go-git's PackfileWriter would parse the pack again to index it, resolving
// every delta and holding every delta base: the whole of every version of a folder's
// tree, which is what the deltas saved. A small pack still goes through it.
func (o *overlay) persist(dir string, s storer.EncodedObjectStorer) error {
	if o.pack == nil {
		return fmt.Errorf("nothing was packed")
	}
	st, ok := s.(interface{ Reindex() })
	if !ok || len(o.pack.entries) <= smallPack {
		// A few promotions: go-git's parse costs nothing and adds the index in place,
		// where Reindex would make the next read load every pack's index again.
		return writePack(s, func(w io.Writer) error { return o.pack.writeTo(w, false, o, nil) })
	}
	packDir := filepath.Join(dir, "objects", "pack")
	if err := os.MkdirAll(packDir, 0o755); err != nil {
		return err
	}
	pack, err := os.CreateTemp(packDir, "tmp_pack_")
	if err != nil {
		return err
	}
	defer os.Remove(pack.Name())
	var iw idxfile.Writer
	err = o.pack.writeTo(pack, false, o, &iw)
	if cerr := pack.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	index, err := iw.Index()
	if err != nil {
		return err
	}
	idx, err := os.CreateTemp(packDir, "tmp_idx_")
	if err != nil {
		return err
	}
	defer os.Remove(idx.Name())
	_, err = idxfile.NewEncoder(idx).Encode(index)
	if cerr := idx.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The index first, as go-git's own PackfileWriter does: go-git finds packs by their
	// .pack file and then needs its index, so a crash in between leaves nothing half.
	base := filepath.Join(packDir, "pack-"+hex.EncodeToString(index.PackfileChecksum[:]))
	if err := os.Rename(idx.Name(), base+".idx"); err != nil {
		return err
	}
	if err := os.Rename(pack.Name(), base+".pack"); err != nil {
		return err
	}
	st.Reindex()
	return nil
}

// writePack writes a pack into a store through go-git's PackfileWriter.
func writePack(s storer.EncodedObjectStorer, write func(io.Writer) error) error {
	pw, ok := s.(storer.PackfileWriter)
	if !ok {
		return fmt.Errorf("the clone's store cannot take packs")
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return err
	}
	if err := write(w); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
