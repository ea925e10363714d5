package stage

import (
	"errors"
	"sync"
)

// MaxSubscribers bounds how many watchers (open pipeline pages) Subscribe serves at once:
// each costs a goroutine and a connection, and a page left open in many tabs must not
// grow them without limit.
const MaxSubscribers = 64

// ErrTooManySubscribers is returned by Subscribe when MaxSubscribers are watching.
var ErrTooManySubscribers = errors.New("too many watchers of the pipeline; close some pipeline pages")

// changes tells subscribers that the stages' status changed. A subscriber's channel holds
// one value: a burst of changes while it renders is one wake-up, and a slow reader never
// blocks a pass.
type changes struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a value after a pass finished or an action
// changed a stage's status or state, and a function that ends the subscription. Read
// Status after a wake-up: the value carries nothing.
func (e *Engine) Subscribe() (<-chan struct{}, func(), error) {
	c := &e.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.subs) >= MaxSubscribers {
		return nil, nil, ErrTooManySubscribers
	}
	if c.subs == nil {
		c.subs = map[chan struct{}]struct{}{}
	}
	ch := make(chan struct{}, 1)
	c.subs[ch] = struct{}{}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.subs, ch)
			c.mu.Unlock()
		})
	}, nil
}

// Announce wakes every subscriber that is not already due to wake. The engine calls it
// after passes and actions; the cluster's controller also calls it when an Argo CD
// Application changed, which Status shows (sync, health) without a pass.
func (e *Engine) Announce() {
	c := &e.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
