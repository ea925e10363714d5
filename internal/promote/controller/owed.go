package controller

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// OwedBackoff is how long an owed automatic rollback waits after a failed attempt: 10s,
// doubling up to 5 minutes, and then every 5 minutes for as long as it is owed — a bad version
// must not stay live because Git refused pushes for an hour.
var OwedBackoff = wait.Backoff{Duration: 10 * time.Second, Factor: 2, Steps: math.MaxInt32, Cap: 5 * time.Minute}

// owedSaveTimeout bounds recording an attempt after the pass was cancelled.
const owedSaveTimeout = 30 * time.Second

// owedDelay is the wait after the attempts-th failed attempt.
func owedDelay(b wait.Backoff, attempts int) time.Duration {
	var d time.Duration
	for range max(attempts, 1) {
		d = b.Step()
	}
	return d
}

// owedEngine is what owed rollbacks need of the engine.
type owedEngine interface {
	StatusOf(name string) (stage.Status, bool)
	Owed(ctx context.Context) (map[string][]stage.OwedAction, error)
	UpdateOwed(ctx context.Context, fn func(map[string][]stage.OwedAction)) error
	Rollback(ctx context.Context, name, to string, opts ...stage.ActionOption) (stage.Outcome, error)
}

// rollbacks are the automatic rollbacks the promoter owes: recorded in the State (stage.OwedAction)
// before the first attempt, so a failed or cut-short attempt is retried with OwedBackoff by
// whoever runs the stage next — this process, or after a restart, a leader change or a shard
// move, another one. Each carries the value it rolls back from as its expected value, so an
// attempt that landed but was not recorded as done is never repeated in Git.
type rollbacks struct {
	clock   clock.PassiveClock
	backoff wait.Backoff
	log     *slog.Logger
	// done reports a rollback attempt's outcome (metrics, Events); nil for none.
	done func(ctx context.Context, out stage.Outcome, err error, took time.Duration)
}

// owe records the failures with auto-rollback as owed rollbacks. It returns those it could not
// record (the pass was cancelled, the state not saved): the gate hands them over again.
func (r *rollbacks) owe(ctx context.Context, e owedEngine, fs []argocd.Failure) (left []argocd.Failure) {
	now := r.clock.Now()
	for _, f := range fs {
		// Roll back only what failed: a human may have promoted something else meanwhile.
		st, ok := e.StatusOf(f.Stage)
		if !ok || st.CurrentTag != f.Value {
			r.log.Warn("not rolling back: the stage moved on", "stage", f.Stage, "failed", f.Value)
			continue
		}
		target, from := f.Stage, f.Value
		if st.Group != "" {
			// A member moves with its release group: the set is rolled back.
			gs, ok := e.StatusOf(st.Group)
			if !ok {
				r.log.Warn("not rolling back: the release group is not run here", "stage", f.Stage, "group", st.Group)
				continue
			}
			target, from = st.Group, gs.CurrentTag
		}
		a := stage.OwedAction{Kind: gitwrite.Rollback.String(), From: from, Reason: gitwrite.Redact(f.Err.Error()), Since: now, NextAttempt: now}
		err := e.UpdateOwed(ctx, func(owed map[string][]stage.OwedAction) {
			for _, o := range owed[target] {
				if o.Kind == a.Kind && o.From == a.From {
					return // owed already (a restarted gate reports the same failure again)
				}
			}
			owed[target] = append(owed[target], a)
		})
		if err != nil {
			r.log.Error("automatic rollback not recorded yet; trying again after the next pass", "stage", target, "from", from, "error", err.Error())
			left = append(left, f)
			continue
		}
		r.log.Info("automatic rollback owed", "stage", target, "from", from, "reason", a.Reason)
	}
	return left
}

// settle attempts every owed rollback that is due. It returns the rollbacks still owed, by
// stage, and when the next attempt is due (zero when none is owed).
func (r *rollbacks) settle(ctx context.Context, e owedEngine) (map[string][]stage.OwedAction, time.Time) {
	owed, err := e.Owed(ctx)
	if err != nil {
		r.log.Error("reading the owed automatic rollbacks", "error", err.Error())
		return nil, time.Time{}
	}
	type key struct{ stage, kind, from string }
	changed := map[key]*stage.OwedAction{} // nil: done
	var next time.Time
	for target, list := range owed {
		for i := range list {
			a := &list[i]
			now := r.clock.Now()
			if a.NextAttempt.After(now) {
				if next.IsZero() || a.NextAttempt.Before(next) {
					next = a.NextAttempt
				}
				continue
			}
			if ctx.Err() != nil {
				break // cut short: still owed, tried by whoever runs the stage next
			}
			k := key{target, a.Kind, a.From}
			start := r.clock.Now()
			out, err := e.Rollback(ctx, target, a.To, stage.Expect(a.From))
			if r.done != nil {
				r.done(ctx, withStage(out, target), err, r.clock.Since(start))
			}
			switch {
			case err == nil:
				r.log.Info("rolled back automatically", "stage", target, "from", out.Old, "to", out.New, "commit", out.Commit, "attempts", a.Attempts+1)
				changed[k] = nil
			case errors.Is(err, stage.ErrMoved):
				// An earlier attempt landed (its answer was lost), or someone moved the stage.
				r.log.Info("automatic rollback done: the stage no longer runs the failed value", "stage", target, "from", a.From, "detail", err.Error())
				changed[k] = nil
			case errors.Is(err, stage.ErrNothingToDo), errors.Is(err, stage.ErrUnknownStage):
				r.log.Error("automatic rollback given up: it cannot be done", "stage", target, "from", a.From, "error", err.Error())
				changed[k] = nil
			default:
				a.Attempts++
				a.LastError = gitwrite.Redact(err.Error())
				a.NextAttempt = r.clock.Now().Add(owedDelay(r.backoff, a.Attempts))
				r.log.Error("automatic rollback failed; trying again", "stage", target, "from", a.From, "attempts", a.Attempts, "next", a.NextAttempt, "error", a.LastError)
				changed[k] = a
				if next.IsZero() || a.NextAttempt.Before(next) {
					next = a.NextAttempt
				}
			}
		}
	}
	if len(changed) == 0 {
		return owed, next
	}
	apply := func(owed map[string][]stage.OwedAction) {
		for target, list := range owed {
			kept := list[:0:0]
			for _, a := range list {
				c, ok := changed[key{target, a.Kind, a.From}]
				switch {
				case !ok:
					kept = append(kept, a)
				case c != nil:
					kept = append(kept, *c)
				}
			}
			if len(kept) == 0 {
				delete(owed, target)
			} else {
				owed[target] = kept
			}
		}
	}
	// Saved even when the pass was cancelled meanwhile: a rollback that landed must not stay
	// owed (it would be refused as moved, but shown until then). A save the fence refuses
	// leaves the stored entries as they were: tried again, refused as moved, then done.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), owedSaveTimeout)
	defer cancel()
	if err := e.UpdateOwed(sctx, apply); err != nil {
		r.log.Error("recording the automatic rollbacks' attempts", "error", err.Error())
	}
	apply(owed)
	return owed, next
}
