package gitwrite

import (
	"context"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/kropipe/kropipe/internal/promote/trailer"
)

// Record is one promotion or rollback read back from a commit's trailers.
type Record struct {
	Commit   string
	Time     time.Time // committer time
	Subject  string
	Kind     Kind
	Stage    string
	Image    string // repo:tag@digest as written
	Value    string // the value written
	Previous string // the value before
	Freight  string
	Rejected string // rollbacks only
	// Group is the release group of a commit that changed a set (Kropipe-Group). Such a
	// commit gives a Record per member whose value it changed, and one for the group itself
	// (Stage is the group), whose Value and Previous are SetValue strings and whose Members
	// list every member in order.
	Group   string
	Members []MemberRecord
	// Kept marks a member's record of a group commit that left its value as it was.
	Kept bool
	// SignedBy and Provenance are the signature policies' findings the commit recorded
	// (Kropipe-Signed-By, Kropipe-Provenance); for a member of a group commit, its own.
	SignedBy   []string
	Provenance []Provenance
	// RequestedBy is who asked for a manual promotion or rollback (Kropipe-Requested-By);
	// "" for an automatic one. A group commit's member records carry the group's.
	RequestedBy string
}

// MemberRecord is one member's part of a group commit.
type MemberRecord struct {
	Stage, Image, Value, Previous, Rejected string
	SignedBy                                []string
	Provenance                              []Provenance
}

// addSignature keeps a Kropipe-Signed-By or Kropipe-Provenance trailer; false for other keys.
func addSignature(t trailer.Trailer, signedBy *[]string, prov *[]Provenance) bool {
	switch t.Key {
	case trailer.SignedBy:
		*signedBy = append(*signedBy, t.Value)
	case trailer.Provenance:
		if p, ok := ParseProvenance(t.Value); ok {
			*prov = append(*prov, p)
		}
	default:
		return false
	}
	return true
}

// recordFrom reads a commit's kropipe trailers; ok is false for a commit that has none. A
// commit that gives a kropipe trailer twice is refused (err): which value holds cannot be
// known, and Kropipe-Rejected decides what is never auto-promoted again.
func recordFrom(hash string, when time.Time, msg string) (rec Record, ok bool, err error) {
	tr, err := trailer.Map(msg)
	if err != nil {
		return Record{}, false, err
	}
	stage := tr[trailer.Stage]
	if stage == "" {
		return Record{}, false, nil
	}
	subject, _, _ := strings.Cut(msg, "\n")
	r := Record{
		Commit: hash, Time: when, Subject: subject, Stage: stage,
		Image: tr[trailer.Image], Value: tr[trailer.Value], Previous: tr[trailer.Previous],
		Freight: tr[trailer.Freight], Rejected: tr[trailer.Rejected], RequestedBy: tr[trailer.RequestedBy],
	}
	if _, ok := tr[trailer.Rejected]; ok {
		r.Kind = Rollback
	}
	if _, ok := tr[trailer.SignedBy]; ok || tr[trailer.Provenance] != "" {
		for _, t := range trailer.Parse(msg) {
			addSignature(t, &r.SignedBy, &r.Provenance)
		}
	}
	return r, true, nil
}

// History fetches branch and returns the promotions and rollbacks recorded in commit
// trailers, newest first (by committer time; ties in history order); stage "" returns
// every stage's. Only the commits new since the last call are read: the Repo keeps the
// records of the branches it was asked about (maxHistories at most).
func (r *Repo) History(ctx context.Context, branch, stage string) ([]Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.fetch(ctx, branch)
	if err != nil {
		return nil, err
	}
	return r.records(ctx, branch, head, stage)
}

// FetchedHistory is History as of the branch's last fetch, without asking the remote: for a
// reader inside a pass that has just fetched (the health gate). A branch never fetched is
// fetched first.
func (r *Repo) FetchedHistory(ctx context.Context, branch, stage string) ([]Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.fetchedHead(ctx, branch)
	if err != nil {
		return nil, err
	}
	return r.records(ctx, branch, head, stage)
}

// records filters the branch's history up to head by stage ("" for all). The caller holds r.mu.
func (r *Repo) records(ctx context.Context, branch string, head plumbing.Hash, stage string) ([]Record, error) {
	h, err := r.history(ctx, branch, head)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, rec := range h.records {
		if stage == "" || rec.Stage == stage {
			out = append(out, rec)
		}
	}
	return out, nil
}

// branchHistory is what History learnt about a branch up to head.
type branchHistory struct {
	head    plumbing.Hash
	seen    map[plumbing.Hash]bool // every commit read
	records []Record
}

// maxHistories bounds the branches whose history a Repo keeps; past it, another branch's
// is dropped (and read again in full when asked for).
const maxHistories = 16

// history brings the branch's records up to head, reading only the commits not seen
// yet; after a force push (the old head is no longer in the history) it reads all again.
// The caller holds r.mu.
func (r *Repo) history(ctx context.Context, branch string, head plumbing.Hash) (*branchHistory, error) {
	h := r.histories[branch]
	if h != nil && h.head == head {
		return h, nil
	}
	c, err := object.GetCommit(r.repo.Storer, head)
	if err != nil {
		return nil, err
	}
	next := &branchHistory{head: head, seen: map[plumbing.Hash]bool{}}
	if h != nil {
		if old, err := object.GetCommit(r.repo.Storer, h.head); err == nil {
			if ok, err := old.IsAncestor(c); err == nil && ok {
				next.seen = h.seen
			}
		}
	}
	var added []Record
	var visited []plumbing.Hash
	// Pre-order from the head: newest first along each line of history.
	err = object.NewCommitPreorderIter(c, next.seen, nil).ForEach(func(c *object.Commit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		visited = append(visited, c.Hash)
		if !strings.Contains(c.Message, trailer.Stage) {
			return nil
		}
		recs, err := recordsFrom(c.Hash.String(), c.Committer.When, c.Message)
		if err != nil {
			r.log.Warn("commit not read as a promotion or rollback", "commit", c.Hash.String(), "error", err.Error())
		}
		added = append(added, recs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(next.seen) > 0 {
		// Extends the previous history: a copy, so a reader of the old one is not disturbed.
		next.seen = maps.Clone(next.seen)
		added = append(added, h.records...)
	}
	for _, v := range visited {
		next.seen[v] = true
	}
	sort.SliceStable(added, func(i, j int) bool { return added[i].Time.After(added[j].Time) })
	next.records = added
	if r.histories == nil {
		r.histories = map[string]*branchHistory{}
	}
	if _, ok := r.histories[branch]; !ok && len(r.histories) >= maxHistories {
		for b := range r.histories {
			delete(r.histories, b)
			break
		}
	}
	r.histories[branch] = next
	return next, nil
}

// Rejected returns the values rolled back from in stage (Kropipe-Rejected trailers):
// values the stage must not auto-promote again. It is read from history, so it
// survives restarts.
func (r *Repo) Rejected(ctx context.Context, branch, stage string) (map[string]bool, error) {
	recs, err := r.History(ctx, branch, stage)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, rec := range recs {
		if rec.Rejected != "" {
			out[rec.Rejected] = true
		}
	}
	return out, nil
}

// PreviousPromotion returns the value stage held before its current one, as recorded
// by the newest record that wrote current — what a rollback without --to goes back to.
// ok is false when history has no such record.
func PreviousPromotion(records []Record, current string) (previous string, ok bool) {
	for _, rec := range records {
		if rec.Value == current && rec.Kind == Promote && !rec.Kept {
			return rec.Previous, rec.Previous != ""
		}
	}
	return "", false
}
