package shard

import (
	"context"
	"sort"
	"sync"
)

// Fence is what the engine's work checks before it acts: the shards this replica holds
// right now, each with a context that ends when it is lost. Work on a shard's stages runs
// inside Enter, under a context that ends with any of its shards; Hold, which runs as the
// Manager's Work, returns only once every such user has left, so the Lease is released (or
// left to expire) only after the last push or sync for its stages returned.
type Fence struct {
	mu      sync.Mutex
	cond    *sync.Cond
	held    map[int]context.Context
	users   map[int]int
	changed chan struct{}
	// onChange are told, before Changed, that a shard was gained or lost.
	onChange []func()
}

// NewFence returns a Fence holding nothing.
func NewFence() *Fence {
	f := &Fence{held: map[int]context.Context{}, users: map[int]int{}, changed: make(chan struct{}, 1)}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Hold marks shard n held until ctx ends, then waits for its users to leave. It is the
// Manager's Work (with the engine's own wake-up through Changed).
func (f *Fence) Hold(ctx context.Context, n int) {
	f.mu.Lock()
	f.held[n] = ctx
	f.mu.Unlock()
	f.signal()
	<-ctx.Done()
	f.mu.Lock()
	delete(f.held, n)
	for f.users[n] > 0 {
		f.cond.Wait()
	}
	f.mu.Unlock()
	f.signal()
}

// OnChange calls fn each time a shard is gained or lost, as it happens (before Changed
// receives): fn must return at once.
func (f *Fence) OnChange(fn func()) {
	f.mu.Lock()
	f.onChange = append(f.onChange, fn)
	f.mu.Unlock()
}

func (f *Fence) signal() {
	f.mu.Lock()
	fns := f.onChange
	f.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Changed receives after a shard was gained or lost.
func (f *Fence) Changed() <-chan struct{} { return f.changed }

// Held returns the shards held now, in order.
func (f *Fence) Held() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int, 0, len(f.held))
	for n, ctx := range f.held {
		if ctx.Err() == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// Holds says whether shard n is held now.
func (f *Fence) Holds(n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx, ok := f.held[n]
	return ok && ctx.Err() == nil
}

// Enter starts work on shards: it returns the subset held now and a context that ends with
// ctx or when any of them is lost. leave must be called when the work has returned.
func (f *Fence) Enter(ctx context.Context, shards []int) (held []int, wctx context.Context, leave func()) {
	wctx, cancel := context.WithCancel(ctx)
	var stops []func() bool
	f.mu.Lock()
	for _, n := range shards {
		hctx, ok := f.held[n]
		if !ok || hctx.Err() != nil {
			continue
		}
		held = append(held, n)
		f.users[n]++
		stops = append(stops, context.AfterFunc(hctx, cancel))
	}
	f.mu.Unlock()
	return held, wctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
		f.mu.Lock()
		for _, n := range held {
			f.users[n]--
		}
		f.mu.Unlock()
		f.cond.Broadcast()
	}
}
