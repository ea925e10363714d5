package shard_test

import (
	"context"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/shard"
)

// holding marks shards held in f until the returned functions (one per shard) are called.
func holding(t *testing.T, f *shard.Fence, shards ...int) map[int]context.CancelFunc {
	t.Helper()
	lose := map[int]context.CancelFunc{}
	for _, n := range shards {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.Hold(ctx, n)
		}()
		lose[n] = func() {
			cancel()
			<-done
		}
		t.Cleanup(lose[n])
	}
	for len(f.Held()) < len(shards) {
		<-f.Changed()
	}
	return lose
}

func TestFence_ALostShardEndsItsWorkAndWaitsForIt(t *testing.T) {
	f := shard.NewFence()
	lose := holding(t, f, 3)
	held, ctx, leave := f.Enter(context.Background(), []int{3, 4})
	if len(held) != 1 || held[0] != 3 {
		t.Fatalf("entered %v, want [3] (4 is not held)", held)
	}
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		lose[3]()
	}()
	<-ctx.Done() // the work is told at once
	select {
	case <-lost:
		t.Fatal("Hold returned while work on its shard was still running")
	case <-time.After(50 * time.Millisecond): // a negative check: Hold must still be waiting
	}
	leave()
	<-lost
	if f.Holds(3) {
		t.Error("shard 3 still held after it was lost")
	}
}
