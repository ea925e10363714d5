// Package pass bounds the promoter's passes, in `run` and in the controller alike: a deadline
// for each pass, and a grace after the stop signal for the running one to finish.
package pass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the time limits (--shutdown-grace, --pass-timeout).
const (
	// DefaultShutdownGrace fits inside Kubernetes' 30 s termination grace period, with
	// time left to stop the HTTP servers (and, in the controller, release the Lease).
	DefaultShutdownGrace = 25 * time.Second
	// DefaultTimeout bounds one pass: Git fetches and pushes, every registry query
	// (each request is bounded by --registry-timeout on its own) and verifications.
	DefaultTimeout = 10 * time.Minute
)

// ErrTimeout is the cause of a pass cancelled by --pass-timeout.
var ErrTimeout = errors.New("the pass did not finish within --pass-timeout")

// ErrGraceOver is the cause of a pass cancelled because --shutdown-grace ran out.
var ErrGraceOver = errors.New("the pass did not finish within --shutdown-grace after the stop signal")

// Outliving returns a context for work that must not stop the moment ctx (the signal)
// ends: it ends grace after ctx does, or when stop is called. A pass started before
// SIGTERM so finishes its push instead of failing half-way with "context canceled"; one
// that takes longer is cancelled, which Git survives (a push lands whole or not at all).
// The caller starts no new pass once ctx is done, and calls stop when it has nothing left
// to finish.
func Outliving(ctx context.Context, grace time.Duration, log *slog.Logger) (work context.Context, stop context.CancelFunc) {
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
			cancel(ErrGraceOver)
		case <-w.Done():
		}
	}()
	return w, func() { cancel(context.Canceled) }
}

// Run runs reconcile (one pass) under the pass deadline. A pass cut short by the
// deadline or by the end of the shutdown grace returns an error saying which.
func Run(ctx context.Context, timeout time.Duration, reconcile func(context.Context) error) error {
	pctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	err := reconcile(pctx)
	// The stages' own errors are in their statuses (the table, the API); this one says
	// why they were cut short.
	switch cause := context.Cause(pctx); {
	case errors.Is(cause, ErrTimeout):
		return fmt.Errorf("%w (%s): a registry or Git server is too slow or hung; the stages still waiting on it failed this pass", ErrTimeout, timeout)
	case errors.Is(cause, ErrGraceOver):
		return cause
	}
	return err
}
