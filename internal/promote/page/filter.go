package page

import (
	"net/url"
	"slices"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Filter is what a person looking for stages asks the page: ?q=…&state=…&view=attention.
// The server applies it (the page works without its script); assets/page.js applies the
// same rules to the cards' data-q and data-state attributes while the person types, so
// the two must change together.
type Filter struct {
	// Query is words each of which must be in a stage's name, image, value (current,
	// candidate, verified: tag or digest), release group or members, ignoring case.
	Query string
	// State is one of a stage's States: a decision (promote, wait, hold, blocked, failed,
	// up-to-date) or what needs a human (Attention).
	State string
	// Attention keeps only the stages that need a human (any of Attention).
	Attention bool
}

// Attention is what needs a human, in the order the page's header counts it: a failure, an
// approval, an inconclusive verification to judge, a pause to lift, a hold to look at.
var Attention = []string{"failed", "approval", "inconclusive", "paused", "held"}

// ParseFilter reads a Filter from a query string.
func ParseFilter(q url.Values) Filter {
	return Filter{Query: strings.TrimSpace(q.Get("q")), State: strings.TrimSpace(q.Get("state")), Attention: q.Get("view") == "attention"}
}

// Values is the query string that asks for f (empty parameters left out).
func (f Filter) Values() url.Values {
	v := url.Values{}
	if f.Query != "" {
		v.Set("q", f.Query)
	}
	if f.State != "" {
		v.Set("state", f.State)
	}
	if f.Attention {
		v.Set("view", "attention")
	}
	return v
}

// Empty says whether f keeps every stage.
func (f Filter) Empty() bool { return f.Query == "" && f.State == "" && !f.Attention }

// Match says whether a stage's status passes f.
func (f Filter) Match(st stage.Status) bool { return f.matches(SearchText(st), States(st)) }

// matches is Match on what a card shows: its search text (lower case) and its states.
func (f Filter) matches(text string, states []string) bool {
	for _, w := range strings.Fields(strings.ToLower(f.Query)) {
		if !strings.Contains(text, w) {
			return false
		}
	}
	if f.State != "" && !slices.Contains(states, f.State) {
		return false
	}
	if f.Attention && !slices.ContainsFunc(states, func(s string) bool { return slices.Contains(Attention, s) }) {
		return false
	}
	return true
}

// States are what a stage's status is, for Filter.State: its decision and each of
// Attention that applies.
func States(st stage.Status) []string {
	out := []string{string(st.Decision)}
	if st.Decision == stage.DecisionFailed || st.Error != "" || (st.Verification != nil && st.Verification.Phase == "Failed") {
		out = append(out, "failed")
	}
	if waitingApproval(st) {
		out = append(out, "approval")
	}
	if st.Verification != nil && st.Verification.Phase == "Inconclusive" {
		out = append(out, "inconclusive")
	}
	if st.Paused {
		out = append(out, "paused")
	}
	if !st.Paused && (st.Decision == stage.DecisionHold || st.Decision == stage.DecisionBlocked) {
		out = append(out, "held")
	}
	return dedupe(out)
}

func waitingApproval(st stage.Status) bool {
	return st.Decision == stage.DecisionWait && strings.HasPrefix(st.Reason, "waiting for approval of ")
}

// SearchText is what Filter.Query searches in a stage's status, in lower case.
func SearchText(st stage.Status) string {
	parts := []string{st.Name, st.Image, st.CurrentTag, st.Group}
	if st.Candidate != nil {
		parts = append(parts, st.Candidate.Tag, st.Candidate.Digest)
	}
	if st.VerifiedFreight != nil {
		parts = append(parts, st.VerifiedFreight.Value)
	}
	for _, m := range st.Members {
		parts = append(parts, m.Stage, m.Current, m.Candidate)
	}
	return strings.ToLower(strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), " "))
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
