package stage

import (
	"context"
	"fmt"
	"time"
)

// OwedAction is an automatic action the promoter decided and has not done yet: a rollback of
// a failed promotion whose attempt failed (Git refused the push) or was cut short (the pass
// was cancelled, the process stopped, the stage's shard moved). It lives in the State, so
// whoever runs the stage next retries it, and it carries the value it replaces: done with
// Expect(From), it lands once in Git however often it is tried.
type OwedAction struct {
	Kind string `json:"kind"` // "rollback"
	// From is the value the stage ran when the action was decided (a release group: its set):
	// the action's expected value. Once the stage runs something else the action is done.
	From string `json:"from"`
	// To is the value to go to; "" is the previous one from Git history.
	To string `json:"to,omitempty"`
	// Reason is why the action is owed: the failure that asked for it.
	Reason      string    `json:"reason"`
	Since       time.Time `json:"since"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
}

// Owed returns the stored owed actions by stage (or release group).
func (e *Engine) Owed(ctx context.Context) (map[string][]OwedAction, error) {
	st, err := e.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	return st.clone().Owed, nil
}

// UpdateOwed changes the stored owed actions (fn edits the map: stage → actions) under the
// lock every other change of the State takes, so none is lost.
func (e *Engine) UpdateOwed(ctx context.Context, fn func(owed map[string][]OwedAction)) error {
	return e.update(ctx, func(st *State) { fn(st.Owed) })
}

// String says what is owed and where it stands, for the status table and the page: "rollback
// from 1.2.2 owed since 15:04:05Z (verification failed …); 3 attempts failed, the last: …;
// next attempt 15:06:05Z".
func (a OwedAction) String() string {
	out := fmt.Sprintf("%s from %s owed since %s", a.Kind, a.From, a.Since.UTC().Format("15:04:05Z"))
	if a.Reason != "" {
		out += " (" + a.Reason + ")"
	}
	if a.Attempts > 0 {
		out += fmt.Sprintf("; %d attempt(s) failed, the last: %s", a.Attempts, a.LastError)
	}
	if !a.NextAttempt.IsZero() {
		out += "; next attempt " + a.NextAttempt.UTC().Format("15:04:05Z")
	}
	return out
}
