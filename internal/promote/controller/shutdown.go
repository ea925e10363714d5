package controller

import (
	"context"

	"github.com/kropipe/kropipe/internal/promote/pass"
)

// outliving is pass.Outliving for a replica: the work (leadership, the loop, the running pass)
// ends ShutdownGrace after ctx, so a pass under way at SIGTERM finishes its push; no pass starts
// after ctx ends (c.stopping). A standby has nothing to finish and stops at once. Only once the
// work has returned does leader.Run release the Lease.
func (c *controller) outliving(ctx context.Context) (context.Context, context.CancelFunc) {
	c.stopping = ctx
	work, stop := pass.Outliving(ctx, c.f.ShutdownGrace, c.log)
	context.AfterFunc(ctx, func() {
		if !c.leading.Load() {
			stop()
		}
	})
	return work, stop
}

// leadUntilStopped is lead, ending the work when lead returned because of the stop signal
// (rather than a lost Lease): leader.Run then releases the Lease instead of campaigning again.
func (c *controller) leadUntilStopped(stop context.CancelFunc) func(context.Context) {
	return func(ctx context.Context) {
		c.leading.Store(true)
		c.lead(ctx)
		// Cleared before the signal is read: either this check or outliving's sees it.
		c.leading.Store(false)
		if c.stopping.Err() != nil {
			stop()
		}
	}
}
