package gitwrite

import (
	"bytes"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/memory"
)

// overlay keeps the objects a batch creates in memory, in front of the clone's store.
// go-git's filesystem store writes every new object as a loose file (a temp file,
// zlib, rename): 4,000 of them for 1,000 stages took most of a batch's time. Here
// they stay in memory until the push lands and then go to disk as one pack, the same
// bytes that were pushed. A refused push leaves nothing behind.
type overlay struct {
	storer.EncodedObjectStorer // the clone's store
	mem                        *memory.ObjectStorage
	size                       int64 // bytes of the objects in mem, uncompressed
}

func newOverlay(base storer.EncodedObjectStorer) *overlay {
	return &overlay{EncodedObjectStorer: base, mem: &memory.NewStorage().ObjectStorage}
}

func (o *overlay) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }

func (o *overlay) SetEncodedObject(obj plumbing.EncodedObject) (plumbing.Hash, error) {
	o.size += obj.Size()
	return o.mem.SetEncodedObject(obj)
}

func (o *overlay) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if obj, err := o.mem.EncodedObject(t, h); err == nil {
		return obj, nil
	}
	return o.EncodedObjectStorer.EncodedObject(t, h)
}

func (o *overlay) HasEncodedObject(h plumbing.Hash) error {
	if o.mem.HasEncodedObject(h) == nil {
		return nil
	}
	return o.EncodedObjectStorer.HasEncodedObject(h)
}

func (o *overlay) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if n, err := o.mem.EncodedObjectSize(h); err == nil {
		return n, nil
	}
	return o.EncodedObjectStorer.EncodedObjectSize(h)
}

// pack encodes objs without delta search: a batch holds small, unrelated objects.
func (o *overlay) pack(objs []plumbing.Hash) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := packfile.NewEncoder(&buf, o, false).Encode(objs, 0); err != nil {
		return nil, fmt.Errorf("building the pack: %w", err)
	}
	return buf.Bytes(), nil
}

// persist writes a pushed pack into the clone so the next fetch does not download our
// own commits back.
func persist(s storer.EncodedObjectStorer, pack []byte) error {
	pw, ok := s.(storer.PackfileWriter)
	if !ok {
		return fmt.Errorf("the clone's store cannot take packs")
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return err
	}
	if _, err := w.Write(pack); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
