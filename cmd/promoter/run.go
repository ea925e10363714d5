package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Defaults of run's time limits.
const (
	// defaultShutdownGrace fits inside Kubernetes' 30 s termination grace period, with
	// time left to stop the HTTP servers.
	defaultShutdownGrace = 25 * time.Second
	// defaultPassTimeout bounds one pass: Git fetches and pushes, every registry query
	// (each request is bounded by --registry-timeout on its own) and verifications.
	defaultPassTimeout = 10 * time.Minute
)

// errPassTimeout is the cause of a pass cancelled by --pass-timeout.
var errPassTimeout = errors.New("the pass did not finish within --pass-timeout")

// errGraceOver is the cause of a pass cancelled because --shutdown-grace ran out.
var errGraceOver = errors.New("the pass did not finish within --shutdown-grace after the stop signal")

// outliving returns a context for work that must not stop the moment ctx (the
// signal) ends: it ends grace after ctx does, or when stop is called. A pass started
// before SIGTERM so finishes its push instead of failing half-way with "context
// canceled"; one that takes longer is cancelled, which Git survives (a push lands
// whole or not at all).
func outliving(ctx context.Context, grace time.Duration, log *slog.Logger) (work context.Context, stop context.CancelFunc) {
	w, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-w.Done():
			return
		}
		log.Info("stop signal received; letting the running pass finish", "grace", grace.String())
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			log.Warn("shutdown grace over; cancelling the running pass", "grace", grace.String())
			cancel(errGraceOver)
		case <-w.Done():
		}
	}()
	return w, func() { cancel(context.Canceled) }
}

// runPass runs one pass under the pass deadline. A pass cut short by the deadline or
// by the end of the shutdown grace returns an error saying which.
func runPass(ctx context.Context, e *stage.Engine, timeout time.Duration) error {
	pctx, cancel := context.WithTimeoutCause(ctx, timeout, errPassTimeout)
	defer cancel()
	err := e.Reconcile(pctx)
	// The stages' own errors are in their statuses (the table, the API); this one says
	// why they were cut short.
	switch cause := context.Cause(pctx); {
	case errors.Is(cause, errPassTimeout):
		return fmt.Errorf("%w (%s): a registry or Git server is too slow or hung; the stages still waiting on it failed this pass", errPassTimeout, timeout)
	case errors.Is(cause, errGraceOver):
		return cause
	}
	return err
}
