package stage

import "time"

// soakEnd is when a stage's upstream soak ends; it leaves every poll interval out of a
// promotion's timing: a loop with a long --interval, or none at all (notifications only), still
// runs a pass the moment a soak is over.
func (e *Engine) soakEnd(stage string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.soakEnds == nil {
		e.soakEnds = map[string]time.Time{}
	}
	e.soakEnds[stage] = at
}

// NextWake is the earliest moment after now at which a stage's soak ends, so a pass then
// would promote it; zero when no stage waits for one. Passes have decided since, so a stage may
// no longer wait: waking for it costs one pass that finds nothing to do.
func (e *Engine) NextWake() time.Time {
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	var next time.Time
	for name, at := range e.soakEnds {
		switch {
		case !at.After(now):
			delete(e.soakEnds, name)
		case next.IsZero() || at.Before(next):
			next = at
		}
	}
	return next
}

// WakeAfter is how long a loop whose next pass is scheduled interval from now (0: none) waits
// instead: until just past NextWake when that comes first.
func (e *Engine) WakeAfter(interval time.Duration) time.Duration {
	next := e.NextWake()
	if next.IsZero() {
		return interval
	}
	// Just past the end: a pass at the very instant would still see a few ms of soak left.
	d := next.Sub(e.clock.Now()) + wakeSlack
	if interval > 0 && interval < d {
		return interval
	}
	return d
}

const wakeSlack = 50 * time.Millisecond
