package argocd

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Event reasons of pull-request mode.
const (
	// ReasonPullRequestOpened: kropipe opened a pull request for the stage's promotion.
	ReasonPullRequestOpened = "PullRequestOpened"
	// ReasonPullRequestUpdated: the open request now proposes other freight (a newer tag, a
	// rollback or a release group's set superseding the pending promotion).
	ReasonPullRequestUpdated = "PullRequestUpdated"
	// ReasonPullRequestMerged: the request was merged; the stage syncs its merge commit.
	ReasonPullRequestMerged = "PullRequestMerged"
	// ReasonPullRequestClosed (Warning): someone closed the request unmerged; its freight is
	// rejected for the stage.
	ReasonPullRequestClosed = "PullRequestClosed"
	// ReasonPullRequestWithdrawn: kropipe closed the request itself, its change no longer
	// wanted (superseded, aborted).
	ReasonPullRequestWithdrawn = "PullRequestWithdrawn"
)

// PullRequestTransition is a stage's (or release group's) pull request before and after a
// pass, with what the State says about the requests that ended: the Events of pull-request
// mode are derived from it, as recordPass derives Promoted from two statuses.
type PullRequestTransition struct {
	Stage         string
	Before, After *stage.PullRequest
	// Log is the stage's State.PullRequestLog: how an ended request ended. Refused is its
	// State.Refused: a request closed unmerged by someone is there, one kropipe closed is not.
	Log     []stage.PullRequest
	Refused []stage.Refusal
}

// PullRequestEvent is one Event a transition asks for.
type PullRequestEvent struct {
	Type, Reason, Message string
}

// Events says what happened to the stage's pull request, oldest first: the request waited
// on before ended (merged, closed by someone, withdrawn by kropipe), a new one was opened, or
// the open one now proposes other freight. Nothing happened, nothing is returned.
func (t PullRequestTransition) Events() []PullRequestEvent {
	var out []PullRequestEvent
	b, a := t.Before, t.After
	open := func(p *stage.PullRequest) bool {
		return p != nil && p.Number > 0 && (p.State == "" || p.State == forge.Open)
	}
	if open(b) {
		var ended *stage.PullRequest
		switch {
		case a != nil && a.Number == b.Number && !open(a):
			ended = a // still shown, now merged or closed
		case a == nil || a.Number != b.Number:
			ended = t.logged(b.Number)
			if ended == nil {
				ended = t.refusedAsRequest(b)
			}
		}
		if ended != nil {
			out = append(out, t.ended(b, ended))
		}
	}
	if open(a) {
		switch {
		case b == nil || b.Number != a.Number:
			out = append(out, PullRequestEvent{corev1.EventTypeNormal, ReasonPullRequestOpened,
				fmt.Sprintf("stage %s: opened pull request #%d %s: %s", t.Stage, a.Number, a.URL, proposal(a))})
		case a.FreightID != b.FreightID || a.Value != b.Value || a.Kind != b.Kind:
			out = append(out, PullRequestEvent{corev1.EventTypeNormal, ReasonPullRequestUpdated,
				fmt.Sprintf("stage %s: pull request #%d %s now proposes %s (was %s)", t.Stage, a.Number, a.URL, proposal(a), proposal(b))})
		}
	}
	return out
}

// ended is the Event of request b ending as e says.
func (t PullRequestTransition) ended(b, e *stage.PullRequest) PullRequestEvent {
	switch e.State {
	case forge.Merged:
		msg := fmt.Sprintf("stage %s: pull request #%d %s merged", t.Stage, b.Number, b.URL)
		if e.MergedBy != "" {
			msg += " by " + e.MergedBy
		}
		msg += ": " + proposal(b)
		if e.MergeCommit != "" {
			msg += fmt.Sprintf(", merge commit %.12s", e.MergeCommit)
		}
		return PullRequestEvent{corev1.EventTypeNormal, ReasonPullRequestMerged, msg}
	}
	if r, ok := t.refusal(b.Number); ok {
		by := r.ClosedBy
		if by == "" {
			by = e.ClosedBy
		}
		msg := fmt.Sprintf("stage %s: pull request #%d %s closed unmerged", t.Stage, b.Number, b.URL)
		if by != "" {
			msg += " by " + by
		}
		msg += fmt.Sprintf(": %s is rejected for the stage and not proposed again (promoter promote can still take it)", cmp.Or(r.Value, b.Value))
		return PullRequestEvent{corev1.EventTypeWarning, ReasonPullRequestClosed, msg}
	}
	why := e.Action
	if why == "" {
		why = "its change is no longer wanted"
	}
	return PullRequestEvent{corev1.EventTypeNormal, ReasonPullRequestWithdrawn,
		fmt.Sprintf("stage %s: kropipe closed pull request #%d %s (%s): %s", t.Stage, b.Number, b.URL, proposal(b), why)}
}

// logged is the newest log entry of request number.
func (t PullRequestTransition) logged(number int) *stage.PullRequest {
	for i := len(t.Log) - 1; i >= 0; i-- {
		if t.Log[i].Number == number {
			return &t.Log[i]
		}
	}
	return nil
}

func (t PullRequestTransition) refusal(number int) (stage.Refusal, bool) {
	for i := len(t.Refused) - 1; i >= 0; i-- {
		if t.Refused[i].Number == number {
			return t.Refused[i], true
		}
	}
	return stage.Refusal{}, false
}

// refusedAsRequest is b closed, when only Refused remembers it.
func (t PullRequestTransition) refusedAsRequest(b *stage.PullRequest) *stage.PullRequest {
	r, ok := t.refusal(b.Number)
	if !ok {
		return nil
	}
	e := *b
	e.State, e.ClosedBy = forge.Closed, r.ClosedBy
	return &e
}

// proposal says what a request proposes: "1.2.2 (from 1.2.1)", "rollback to 1.2.1".
func proposal(p *stage.PullRequest) string {
	s := p.Value
	if p.Kind == "rollback" {
		s = "rollback to " + p.Value
	}
	if p.From != "" {
		s += " (from " + p.From + ")"
	}
	return s
}

// PullRequest records the Events of a stage's pull-request transition on app.
func (r *Recorder) PullRequest(ctx context.Context, app AppRef, t PullRequestTransition) error {
	var errs []error
	for _, ev := range t.Events() {
		errs = append(errs, r.Event(ctx, app, ev.Type, ev.Reason, ev.Message))
	}
	return errors.Join(errs...)
}
