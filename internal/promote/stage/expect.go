package stage

import (
	"errors"
	"fmt"
)

// ErrMoved is wrapped when an action expected the stage to run one value and Git holds
// another: someone moved it since the caller looked. Nothing was done.
var ErrMoved = errors.New("the stage moved")

// ActionOption qualifies a human's action: Promote, Rollback, Approve, PromoteMember,
// RollbackMember.
type ActionOption func(*action)

type action struct {
	expect      string
	requestedBy string
}

// Expect makes the action a compare-and-swap on what the stage runs: it is done only while
// the stage's file holds value (a release group: its set, as its status's CurrentTag
// shows it), checked in the same Git write (gitwrite.Change.Expect); else it fails with
// ErrMoved and nothing is done. A retried action that carries it can never act twice.
// "" expects nothing: the action replaces whatever the stage runs.
func Expect(value string) ActionOption { return func(a *action) { a.expect = value } }

// RequestedBy names who asked for the action: the API token's name, the pipeline page's
// login, the command's $USER@host. A promotion or rollback writes it into its commit
// (Kropipe-Requested-By), an approval or a pause into the State; "" records nobody.
func RequestedBy(name string) ActionOption { return func(a *action) { a.requestedBy = name } }

// Requester is who opts say asked, "" for nobody: what a replica passes on with the action.
func Requester(opts ...ActionOption) string { return actionOf(opts).requestedBy }

// Expected is the value opts expect, "" for none: what a replica passes on with the action.
func Expected(opts ...ActionOption) string { return actionOf(opts).expect }

func actionOf(opts []ActionOption) action {
	var a action
	for _, o := range opts {
		o(&a)
	}
	return a
}

// moved says the stage runs now, not expected.
func moved(stage, now, expected string) error {
	return fmt.Errorf("stage %q now runs %s, you expected %s: %w; nothing was done: look at its status and act again", stage, orNone(now), orNone(expected), ErrMoved)
}

func orNone(v string) string {
	if v == "" {
		return "nothing"
	}
	return v
}
