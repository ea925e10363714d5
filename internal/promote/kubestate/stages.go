package kubestate

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Buckets is how many ConfigMaps Stages spreads the stages' state over. A stage's bucket is a
// pure function of its name and this constant: never change it, or every stage's state moves.
// 64 keeps 10,000 stages (about 160 a bucket) under the 1 MiB a ConfigMap holds with every
// stage's newest verifications and runs (TestStages_TenThousandStagesFit).
const Buckets = 64

// LegacyShards is how many of an older promoter's per-shard ConfigMaps (<name>-<n>, written
// with --shards before the state was kept by stage) an upgrade reads: the manifests' 16.
const LegacyShards = 16

// DefaultRefresh is how often Stages reads its stages' state again although nothing told it
// to (Forget): what another writer did meanwhile (a hand edit; a replica that had not yet seen
// a pipeline change) is seen within it.
const DefaultRefresh = time.Minute

// Bucket is the bucket of a stage: FNV-1a of its name, modulo Buckets.
func Bucket(stage string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(stage))
	return int(h.Sum32() % Buckets)
}

// BucketName is the ConfigMap of bucket b of the state named name (--state-configmap).
func BucketName(name string, b int) string { return name + "-stages-" + strconv.Itoa(b) }

// Stages is a stage.Store keeping each stage's state in the ConfigMap of its bucket: where a
// stage's approvals, verifications, runs and pause live depends on its name alone, never on
// which replica or shard runs it, so they follow it through every change of pipelines,
// --shards and replicas with nothing to migrate.
//
// A replica reads and writes the entries of the stages it owns (owns: the stages of the shards
// it holds) and nothing else. Update (and Save) write per entry: only the entries that changed
// since this replica last read or wrote them are sent, into the bucket as read now (a compare-and-swap
// on its resourceVersion, read again on conflict), so replicas sharing a bucket never undo
// each other's entries, and a stage on its way from one replica to another keeps what either
// wrote.
//
// Load answers from what was last read or written: the owner is the only writer of its
// stages. Forget (called when the owned stages change: a shard gained or lost, a pipeline
// changed) makes the next Load read every bucket again, as does DefaultRefresh's passing.
//
// The first write of a bucket that does not exist yet starts it from the state older
// promoters left (the one ConfigMap of a promoter without shards, <name>; the per-shard
// ConfigMaps <name>-<n> of one with shards), read with the view; a bucket that exists never
// reads them again, so nothing changed since is brought back. (Older promoters have stopped
// by the time this replica owns a stage: see shard's topology.)
type Stages struct {
	buckets []*Store
	legacy  []*Store
	owns    func(stage string) bool
	log     func(msg string, args ...any)
	clock   clock.Clock
	refresh time.Duration

	mu sync.Mutex
	// view is each bucket's entries of the owned stages as last read or written; nil until
	// read (again).
	view   []entries
	readAt time.Time
	// stale: Forget was called; the next Load or Update reads again.
	stale atomic.Bool
	// old is the older promoters' state by bucket, once read (oldRead).
	old     []entries
	oldRead bool
}

// StagesOption configures Stages.
type StagesOption func(*Stages)

// WithRefresh replaces DefaultRefresh.
func WithRefresh(d time.Duration) StagesOption { return func(s *Stages) { s.refresh = d } }

// NewStages returns the state of the stages owns says this replica runs, kept in namespace
// under name (--state-configmap). opts configure every ConfigMap's store (WithName is name);
// sopts the whole.
func NewStages(client kubernetes.Interface, namespace, name string, owns func(stage string) bool, opts []Option, sopts ...StagesOption) *Stages {
	s := &Stages{owns: owns, refresh: DefaultRefresh, clock: clock.RealClock{}}
	store := func(cm string) *Store {
		st := New(client, namespace, append(append([]Option(nil), opts...), WithName(cm))...)
		st.set, st.conflicts = name, SharedConflictRetry
		return st
	}
	for b := range Buckets {
		s.buckets = append(s.buckets, store(BucketName(name, b)))
	}
	s.legacy = append(s.legacy, store(name))
	for n := range LegacyShards {
		s.legacy = append(s.legacy, store(name+"-"+strconv.Itoa(n)))
	}
	s.clock, s.log = s.buckets[0].clock, s.buckets[0].log.Warn
	for _, o := range sopts {
		o(s)
	}
	return s
}

// Forget makes the next Load or Update read the stages' state from the cluster again: call it
// when the stages this replica owns changed. It does not wait for a Load or Save under way (a
// Fence calls it as a shard changes hands).
func (s *Stages) Forget() { s.stale.Store(true) }

// Load returns the owned stages' state.
func (s *Stages) Load(ctx context.Context) (stage.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fresh(ctx); err != nil {
		return stage.State{}, err
	}
	return s.owned()
}

// owned is the owned stages' state as the view has it.
func (s *Stages) owned() (stage.State, error) {
	all := entries{}
	for _, e := range s.view {
		for field, m := range e {
			for name, v := range m {
				// A stage no longer owned (a shard just lost) is its new owner's.
				if s.owns(name) {
					all.set(field, name, v)
				}
			}
		}
	}
	return all.state()
}

// Save writes the owned stages' entries that differ from what this store last read or wrote:
// what its caller changed since its Load. It does not read again first, even after Forget: a
// stage that became owned since the caller's Load is missing from the caller's state and must
// not be taken as removed. A Load by someone else between the caller's Load and Save may read
// again, though: a caller that changes the state should use Update.
func (s *Stages) Save(ctx context.Context, st stage.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.view == nil {
		if err := s.fresh(ctx); err != nil {
			return err
		}
	}
	next, err := entriesOf(st)
	if err != nil {
		return err
	}
	return s.write(ctx, next)
}

// Update changes the owned stages' state by fn and writes what fn changed, as one step for
// this store's callers: fn is given the state as Load would return it (every map made), and
// nothing reads or writes between. The engine uses it instead of Load and Save when its store
// has it.
func (s *Stages) Update(ctx context.Context, fn func(*stage.State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fresh(ctx); err != nil {
		return err
	}
	st, err := s.owned()
	if err != nil {
		return err
	}
	fn(&st)
	next, err := entriesOf(st)
	if err != nil {
		return err
	}
	return s.write(ctx, next)
}

// write sends the owned stages' entries of next that differ from the view, per bucket, and
// keeps them in the view.
func (s *Stages) write(ctx context.Context, next entries) error {
	byBucket := make([]entries, Buckets)
	for field, m := range next {
		for name, v := range m {
			b := Bucket(name)
			if byBucket[b] == nil {
				byBucket[b] = entries{}
			}
			byBucket[b].set(field, name, v)
		}
	}
	var g errgroup.Group
	g.SetLimit(8)
	for b := range Buckets {
		changes := diff(s.view[b], byBucket[b], s.owns)
		if len(changes) == 0 {
			continue
		}
		g.Go(func() error {
			err := s.buckets[b].Update(ctx, func(cur *stage.State, found bool) {
				e, err := entriesOf(*cur)
				if err != nil {
					return // decode gave it: it encodes
				}
				if !found && s.oldRead {
					// The bucket's first write starts from what older promoters kept.
					e = s.old[b].only(func(string) bool { return true })
				}
				e.apply(changes)
				*cur, _ = e.state()
			})
			if err != nil {
				return err
			}
			s.view[b].apply(changes)
			return nil
		})
	}
	return g.Wait()
}

// fresh reads every bucket again when the view was forgotten or is older than the refresh.
func (s *Stages) fresh(ctx context.Context) error {
	if s.view != nil && s.clock.Since(s.readAt) < s.refresh && !s.stale.Load() {
		return nil
	}
	// Cleared before reading: a Forget during the reading is one more to come.
	s.stale.Store(false)
	// Older promoters' state is read again too: one may still have been writing it (a rolling
	// update) when this replica, owning nothing yet, last read.
	s.old, s.oldRead = nil, false
	at := s.clock.Now()
	view := make([]entries, Buckets)
	found := make([]bool, Buckets)
	var g errgroup.Group
	g.SetLimit(8)
	for b := range Buckets {
		g.Go(func() error {
			st, ok, err := s.buckets[b].Read(ctx)
			if err != nil {
				return err
			}
			e, err := entriesOf(st)
			if err != nil {
				return err
			}
			view[b], found[b] = e.only(s.owns), ok
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for b := range Buckets {
		if found[b] {
			continue
		}
		// Never written: the older promoters' state is its start.
		if err := s.readOld(ctx); err != nil {
			return err
		}
		view[b] = s.old[b].only(s.owns)
	}
	s.view, s.readAt = view, at
	return nil
}

// readOld reads, once per reading of the view, the state older promoters kept, by bucket: the one ConfigMap of a
// promoter without shards first, then the per-shard ones (a stage in two of them, possible
// only if it moved between shards, takes the later shard's entry).
func (s *Stages) readOld(ctx context.Context) error {
	if s.oldRead {
		return nil
	}
	old := make([]entries, Buckets)
	for b := range old {
		old[b] = entries{}
	}
	for _, l := range s.legacy {
		st, found, err := l.Read(ctx)
		switch {
		case apierrors.IsForbidden(err):
			// A Role made for fewer shards than LegacyShards: that ConfigMap was never ours.
			s.log("an older promoter's state is not readable; it is not carried over", "configmap", l.name, "error", err.Error())
			continue
		case err != nil:
			return fmt.Errorf("reading the state an older promoter kept: %w", err)
		case !found:
			continue
		}
		e, err := entriesOf(st)
		if err != nil {
			return err
		}
		for field, m := range e {
			for name, v := range m {
				old[Bucket(name)].set(field, name, v)
			}
		}
	}
	s.old, s.oldRead = old, true
	return nil
}
