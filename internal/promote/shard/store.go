package shard

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// ShardStore is the durable state of one shard (kubestate.Store: one ConfigMap).
type ShardStore interface {
	stage.Store
}

// Store is the engine's stage.Store over the shards: the state of a shard's stages lives in
// that shard's own store (one ConfigMap each, so 10,000 stages' state stays under the 1 MiB a
// ConfigMap holds, and no two replicas write the same object). Load reads the shards this
// replica holds; Save writes each held shard's part, and only when it changed. A stage of a
// shard this replica no longer holds is neither read nor written: its new owner has it.
type Store struct {
	stores []ShardStore
	fence  *Fence
	of     func(name string) int
	legacy stage.Store

	mu   sync.Mutex
	last map[int]string // each shard's part as last loaded or saved, as JSON
}

// NewStore routes state by of (a stage's or group's name → its shard) to stores[shard];
// fence says which shards are held.
func NewStore(stores []ShardStore, fence *Fence, of func(name string) int) *Store {
	return &Store{stores: stores, fence: fence, of: of, last: map[int]string{}}
}

// WithLegacy makes the state one store kept for every stage (a promoter before --shards) the
// starting point of each shard whose own store was never written: an upgrade keeps its
// approvals, verifications and pauses. The first save of a shard writes its part to the
// shard's store, which is read from then on.
func (s *Store) WithLegacy(legacy stage.Store) *Store {
	s.legacy = legacy
	return s
}

// Load reads and joins the held shards' states.
func (s *Store) Load(ctx context.Context) (stage.State, error) {
	var (
		out    stage.State
		legacy map[int]stage.State
	)
	for _, n := range s.fence.Held() {
		st, err := s.stores[n].Load(ctx)
		if err != nil {
			return stage.State{}, fmt.Errorf("shard %d: %w", n, err)
		}
		part := s.split(st)[n] // a stage that moved shards stays where it was written
		if f, ok := s.stores[n].(interface{ Found() bool }); ok && !f.Found() && s.legacy != nil {
			if legacy == nil {
				old, err := s.legacy.Load(ctx)
				if err != nil {
					return stage.State{}, fmt.Errorf("the state before sharding: %w", err)
				}
				legacy = s.split(old)
			}
			// Not remembered: the next Save writes it to the shard's own store.
			out = join(out, legacy[n])
			continue
		}
		raw, _ := json.Marshal(part)
		s.remember(n, raw)
		out = join(out, part)
	}
	return out, nil
}

// Save writes the held shards' parts of st that changed.
func (s *Store) Save(ctx context.Context, st stage.State) error {
	parts := s.split(st)
	for _, n := range s.fence.Held() {
		part := parts[n]
		raw, _ := json.Marshal(part)
		s.mu.Lock()
		same := s.last[n] == string(raw)
		s.mu.Unlock()
		if same {
			continue
		}
		if err := s.stores[n].Save(ctx, part); err != nil {
			return fmt.Errorf("shard %d: %w", n, err)
		}
		s.remember(n, raw)
	}
	return nil
}

// remember records raw, a shard's part as JSON, as last loaded or saved.
func (s *Store) remember(n int, raw []byte) {
	s.mu.Lock()
	s.last[n] = string(raw)
	s.mu.Unlock()
}

// split cuts st by the shard of each entry's stage.
func (s *Store) split(st stage.State) map[int]stage.State {
	parts := map[int]stage.State{}
	splitMap(parts, s.of, st.Approvals, func(p *stage.State) *map[string][]stage.Approval { return &p.Approvals })
	splitMap(parts, s.of, st.Verifications, func(p *stage.State) *map[string][]stage.Verification { return &p.Verifications })
	splitMap(parts, s.of, st.Paused, func(p *stage.State) *map[string]time.Time { return &p.Paused })
	splitMap(parts, s.of, st.Runs, func(p *stage.State) *map[string][]stage.VerificationRun { return &p.Runs })
	splitMap(parts, s.of, st.Owed, func(p *stage.State) *map[string][]stage.OwedAction { return &p.Owed })
	return parts
}

// splitMap puts each entry of m into the field of its stage's shard's part (joinMap's inverse).
func splitMap[V any](parts map[int]stage.State, of func(name string) int, m map[string]V, field func(*stage.State) *map[string]V) {
	for name, v := range m {
		n := of(name)
		p := parts[n]
		f := field(&p)
		if *f == nil {
			*f = map[string]V{}
		}
		(*f)[name] = v
		parts[n] = p
	}
}

// join adds b's entries to a (their stages are disjoint: each lives in one shard).
func join(a, b stage.State) stage.State {
	a.Approvals = joinMap(a.Approvals, b.Approvals)
	a.Verifications = joinMap(a.Verifications, b.Verifications)
	a.Paused = joinMap(a.Paused, b.Paused)
	a.Runs = joinMap(a.Runs, b.Runs)
	a.Owed = joinMap(a.Owed, b.Owed)
	return a
}

func joinMap[V any](a, b map[string]V) map[string]V {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = make(map[string]V, len(b))
	}
	for k, v := range b {
		a[k] = v
	}
	return a
}
