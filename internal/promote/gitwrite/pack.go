package gitwrite

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1" //nolint:gosec // the pack format's checksum, not a security measure
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// maxDeltaDepth is how long a chain of deltas may grow before an object is stored
// whole again: git's own default (pack.depth), so the server reads the newest tree of a
// folder through at most as many deltas as after a git push.
const maxDeltaDepth = 50

// packBuilder builds a pack (gitformat-pack, version 2) an object at a time, each
// compressed as it comes, so a batch holds the pack's bytes and not its objects. A new
// version of an object is stored as a delta against the version it replaces
// (REF_DELTA). The delta is cut from what a promotion changes: both versions share
// everything but the bytes around the one changed entry or line, so the delta copies
// the common prefix and suffix and inserts the rest — a few dozen bytes for a changed
// tree entry, whatever the width of the tree, and nothing to search.
type packBuilder struct {
	body    bytes.Buffer // the entries, one after the other, without header and checksum
	entries []packEntry
	at      map[plumbing.Hash]int // entries by object
	zw      *zlib.Writer
	scratch []byte
}

type packEntry struct {
	hash     plumbing.Hash
	typ      plumbing.ObjectType
	size     int64 // the whole object's
	off, end int   // in body
	data     int   // where the compressed data starts, after the entry's header
	base     plumbing.Hash
	delta    bool
	thin     bool   // base is not in this pack but on the server (and in the clone)
	crc      uint32 // of body[off:end], for the pack's index
	depth    int    // deltas to apply to read it, counting a thin base as whole
}

func newPackBuilder() *packBuilder {
	return &packBuilder{at: map[plumbing.Hash]int{}}
}

func (p *packBuilder) has(h plumbing.Hash) bool { _, ok := p.at[h]; return ok }

func (p *packBuilder) depth(h plumbing.Hash) (int, bool) {
	i, ok := p.at[h]
	if !ok {
		return 0, false
	}
	return p.entries[i].depth, true
}

func (p *packBuilder) size(h plumbing.Hash) (int64, bool) {
	i, ok := p.at[h]
	if !ok {
		return 0, false
	}
	return p.entries[i].size, true
}

// add appends object h. base is the version it replaces, baseData its contents and
// baseDepth its chain's depth (-1: base is not in this pack, only on the server); a
// zero base stores the object whole, and so does a delta that would not save half or
// one to or from an empty object.
func (p *packBuilder) add(h plumbing.Hash, typ plumbing.ObjectType, data []byte, base plumbing.Hash, baseData []byte, baseDepth int) error {
	e := packEntry{hash: h, typ: typ, size: int64(len(data)), off: p.body.Len()}
	payload := data
	// go-git, which reads the clone's packs, takes no delta against an empty object.
	if !base.IsZero() && len(baseData) > 0 && len(data) > 0 {
		d := versionDelta(p.scratch[:0], baseData, data)
		p.scratch = d
		if len(d) < len(data)/2 {
			payload, e.base, e.delta = d, base, true
			e.thin = baseDepth < 0
			e.depth = max(baseDepth, 0) + 1
		}
	}
	if e.delta {
		p.header(plumbing.REFDeltaObject, int64(len(payload)))
		p.body.Write(e.base[:])
	} else {
		p.header(typ, int64(len(payload)))
	}
	e.data = p.body.Len()
	if err := p.compress(&p.body, payload); err != nil {
		return err
	}
	e.end = p.body.Len()
	e.crc = crc32.ChecksumIEEE(p.body.Bytes()[e.off:e.end])
	p.at[h] = len(p.entries)
	p.entries = append(p.entries, e)
	return nil
}

func (p *packBuilder) compress(w io.Writer, data []byte) error {
	if p.zw == nil {
		p.zw = zlib.NewWriter(w)
	} else {
		p.zw.Reset(w)
	}
	if _, err := p.zw.Write(data); err != nil {
		return err
	}
	return p.zw.Close()
}

// header writes an entry's type and size: 3 bits of type, then the size 4 bits and
// then 7 bits at a time, low bits first.
func (p *packBuilder) header(t plumbing.ObjectType, size int64) {
	p.body.Write(entryHeader(nil, t, size))
}

func entryHeader(b []byte, t plumbing.ObjectType, size int64) []byte {
	c := byte(t)<<4 | byte(size&0x0f)
	size >>= 4
	for size > 0 {
		b = append(b, c|0x80)
		c = byte(size & 0x7f)
		size >>= 7
	}
	return append(b, c)
}

// writeTo writes the whole pack. thin keeps the deltas against the server's objects
// (only for a server that takes thin packs); otherwise those objects are written whole,
// read from src, and the pack stands alone, as the clone needs it. idx, when not nil,
// is told where each object went, for the pack's index.
func (p *packBuilder) writeTo(w io.Writer, thin bool, src *overlay, idx *idxfile.Writer) error {
	sum := sha1.New() //nolint:gosec // the pack format's checksum
	out := io.MultiWriter(w, sum)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(p.entries)))
	if _, err := out.Write(hdr[:]); err != nil {
		return err
	}
	if idx != nil {
		if err := idx.OnHeader(uint32(len(p.entries))); err != nil {
			return err
		}
	}
	body := p.body.Bytes()
	pos := int64(len(hdr))
	var whole bytes.Buffer
	for _, e := range p.entries {
		raw, crc := body[e.off:e.end], e.crc
		if e.thin && !thin {
			obj, err := src.EncodedObject(e.typ, e.hash)
			if err != nil {
				return fmt.Errorf("reading object %s for the pack: %w", e.hash, err)
			}
			data, err := contents(obj)
			if err != nil {
				return err
			}
			whole.Reset()
			whole.Write(entryHeader(nil, e.typ, int64(len(data))))
			if err := p.compress(&whole, data); err != nil {
				return err
			}
			raw, crc = whole.Bytes(), crc32.ChecksumIEEE(whole.Bytes())
		}
		if _, err := out.Write(raw); err != nil {
			return err
		}
		if idx != nil {
			idx.Add(e.hash, uint64(pos), crc)
		}
		pos += int64(len(raw))
	}
	checksum := sum.Sum(nil)
	if idx != nil {
		if err := idx.OnFooter(plumbing.Hash(checksum)); err != nil {
			return err
		}
	}
	_, err := w.Write(checksum)
	return err
}

// object rebuilds object h from the pack: an object that left the overlay's memory
// and is read again (two paths held the same folder, say). Its chain is at most
// maxDeltaDepth long and ends in a whole object here, or in the clone.
func (p *packBuilder) object(t plumbing.ObjectType, h plumbing.Hash, src *overlay) (plumbing.EncodedObject, error) {
	e := p.entries[p.at[h]]
	if t != plumbing.AnyObject && t != e.typ {
		return nil, plumbing.ErrObjectNotFound
	}
	zr, err := zlib.NewReader(bytes.NewReader(p.body.Bytes()[e.data:e.end]))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	if e.delta {
		base, err := src.EncodedObject(plumbing.AnyObject, e.base)
		if err != nil {
			return nil, err
		}
		baseData, err := contents(base)
		if err != nil {
			return nil, err
		}
		if data, err = packfile.PatchDelta(baseData, data); err != nil {
			return nil, err
		}
	}
	obj := &plumbing.MemoryObject{}
	obj.SetType(e.typ)
	obj.SetSize(int64(len(data)))
	if _, err := obj.Write(data); err != nil {
		return nil, err
	}
	return obj, nil
}

// versionDelta appends to b a git delta turning src into dst: copy the bytes both
// start with, insert the bytes that differ, copy the bytes both end with. For two
// versions of a tree or a file that differ in one place this is the smallest delta
// there is; for unrelated contents it is an insert of everything, and add stores the
// object whole instead.
func versionDelta(b, src, dst []byte) []byte {
	n := min(len(src), len(dst))
	pre := 0
	for pre < n && src[pre] == dst[pre] {
		pre++
	}
	suf := 0
	for suf < n-pre && src[len(src)-1-suf] == dst[len(dst)-1-suf] {
		suf++
	}
	b = binary.AppendUvarint(b, uint64(len(src)))
	b = binary.AppendUvarint(b, uint64(len(dst)))
	b = appendCopy(b, 0, pre)
	for ins := dst[pre : len(dst)-suf]; len(ins) > 0; {
		k := min(len(ins), 0x7f)
		b = append(b, byte(k))
		b = append(b, ins[:k]...)
		ins = ins[k:]
	}
	return appendCopy(b, len(src)-suf, suf)
}

// appendCopy appends copy instructions for src[off:off+n], at most 64 KiB each (a copy
// names its size in up to 3 bytes, and git reads a size of 0 as 64 KiB).
func appendCopy(b []byte, off, n int) []byte {
	for n > 0 {
		k := min(n, 0x10000)
		op := len(b)
		b = append(b, 0x80)
		for i := range 4 {
			if v := byte(off >> (8 * i)); v != 0 {
				b[op] |= 1 << i
				b = append(b, v)
			}
		}
		for i := range 3 {
			if v := byte(k >> (8 * i)); v != 0 {
				b[op] |= 0x10 << i
				b = append(b, v)
			}
		}
		off += k
		n -= k
	}
	return b
}
