// Package stagefilter chooses stages the way a person looking for some asks: text over
// stage, image, value and state, the states that need a human, and where a stage comes
// from (release group, ApplicationSet, Argo CD project, namespace, promoter.yaml file).
// The API's stage list and the pipeline page filter with the same Filter.
package stagefilter

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// State is what a stage is, as the filter's state= names it: one of the decisions
// (promote, wait, hold, blocked, failed, up-to-date) or one of the Attention states, the
// conditions that need a human.
type State string

const (
	Failed          State = "failed"           // the last pass failed (discovery, Git, verification)
	WaitingApproval State = "waiting-approval" // a candidate waits for promoter approve
	Inconclusive    State = "inconclusive"     // the verification could not decide
	Paused          State = "paused"           // promoter pause
	Held            State = "held"             // held or blocked: nothing moves until something changes
)

// States are the Attention states, in the order the attention view and the page's header
// count them.
var States = []State{Failed, WaitingApproval, Inconclusive, Paused, Held}

// decisions are the states a stage's decision gives it.
var decisions = []State{
	State(stage.DecisionPromote), State(stage.DecisionWait), State(stage.DecisionHold),
	State(stage.DecisionBlocked), State(stage.DecisionFailed), State(stage.DecisionUpToDate),
}

// Known are every state a filter may name: the Attention states, then the decisions not
// among them.
var Known = append(append([]State(nil), States...), slices.DeleteFunc(slices.Clone(decisions), func(s State) bool { return slices.Contains(States, s) })...)

// StatesOf are the states st is in: its decision, then the Attention states that apply.
func StatesOf(st stage.Status) []State {
	var out []State
	add := func(s State) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(State(st.Decision))
	if st.Decision == stage.DecisionFailed || st.Error != "" || (st.Verification != nil && st.Verification.Phase == "Failed") {
		add(Failed)
	}
	if st.Decision == stage.DecisionWait && strings.HasPrefix(st.Reason, "waiting for approval of ") {
		add(WaitingApproval)
	}
	if st.Verification != nil && st.Verification.Phase == "Inconclusive" {
		add(Inconclusive)
	}
	if st.Paused {
		add(Paused)
	}
	if !st.Paused && (st.Decision == stage.DecisionHold || st.Decision == stage.DecisionBlocked) {
		add(Held)
	}
	return out
}

// NeedsAttention reports whether any of states is an Attention state.
func NeedsAttention(states []State) bool {
	return slices.ContainsFunc(states, func(s State) bool { return slices.Contains(States, s) })
}

// Filter is what a stage must match; its zero value matches every stage. Each field given
// must match (and), each State listed may (or).
type Filter struct {
	// Text is words, each of which must be in the stage's SearchText, ignoring case.
	Text string
	// States keeps the stages in at least one of them.
	States []State
	// Attention keeps only the stages in an Attention state (view=attention).
	Attention bool
	// Group, AppSet, Project, Namespace match exactly (Status.Origin); Group matches a
	// release group's own entry and its members.
	Group, AppSet, Project, Namespace string
	// File matches the promoter.yaml the stage is configured in (Origin.File), or its
	// instance file, or a directory holding that file.
	File string
}

// Parameters are the query parameters Parse reads, as the API and the page take them.
const (
	ParamText      = "q"
	ParamState     = "state"
	ParamView      = "view"
	ParamGroup     = "group"
	ParamAppSet    = "appset"
	ParamProject   = "project"
	ParamNamespace = "namespace"
	ParamFile      = "file"
)

// ViewAttention is the view= value of the attention view.
const ViewAttention = "attention"

// Parse reads a Filter from query parameters: q, state (repeated or comma-separated, any
// of Known), view=attention, group, appset, project, namespace, file. An unknown state or
// view is an error naming the known ones.
func Parse(q url.Values) (Filter, error) {
	f := Filter{
		Text:  strings.TrimSpace(q.Get(ParamText)),
		Group: q.Get(ParamGroup), AppSet: q.Get(ParamAppSet), Project: q.Get(ParamProject),
		Namespace: q.Get(ParamNamespace), File: strings.Trim(q.Get(ParamFile), "/"),
	}
	switch v := q.Get(ParamView); v {
	case "":
	case ViewAttention:
		f.Attention = true
	default:
		return Filter{}, fmt.Errorf("query parameter view=%s is not a view; use view=%s or leave it out", v, ViewAttention)
	}
	for _, v := range q[ParamState] {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !slices.Contains(Known, State(s)) {
				return Filter{}, fmt.Errorf("query parameter state=%s is not a state; use one of %s", s, join(Known))
			}
			if !slices.Contains(f.States, State(s)) {
				f.States = append(f.States, State(s))
			}
		}
	}
	return f, nil
}

func join(states []State) string {
	var out []string
	for _, s := range states {
		out = append(out, string(s))
	}
	return strings.Join(out, ", ")
}

// Values are f as query parameters, so that Parse(f.Values()) is f: for links that keep
// the filter (the next page, the page's lanes).
func (f Filter) Values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set(ParamText, f.Text)
	set(ParamGroup, f.Group)
	set(ParamAppSet, f.AppSet)
	set(ParamProject, f.Project)
	set(ParamNamespace, f.Namespace)
	set(ParamFile, f.File)
	if f.Attention {
		q.Set(ParamView, ViewAttention)
	}
	for _, s := range f.States {
		q.Add(ParamState, string(s))
	}
	return q
}

// Empty reports whether f matches every stage.
func (f Filter) Empty() bool {
	return f.Text == "" && len(f.States) == 0 && !f.Attention && f.Group == "" && f.AppSet == "" && f.Project == "" && f.Namespace == "" && f.File == ""
}

// MatchOrigin reports whether a stage configured at o passes f's appset, project,
// namespace and (promoter.yaml) file.
func (f Filter) MatchOrigin(o stage.Origin) bool {
	return (f.AppSet == "" || o.ApplicationSet == f.AppSet) && (f.Project == "" || o.Project == f.Project) &&
		(f.Namespace == "" || o.Namespace == f.Namespace) && (f.File == "" || strings.Trim(o.File, "/") == f.File)
}

// Has reports whether f keeps stages in state s (the page's state menu marks it).
func (f Filter) Has(s State) bool { return slices.Contains(f.States, s) }

// Match reports whether st passes f.
func (f Filter) Match(st stage.Status) bool {
	o := st.Origin
	switch {
	case f.Group != "" && st.Group != f.Group && !(st.Name == f.Group && len(st.Members) > 0),
		f.AppSet != "" && o.ApplicationSet != f.AppSet,
		f.Project != "" && o.Project != f.Project,
		f.Namespace != "" && o.Namespace != f.Namespace,
		f.File != "" && !matchFile(f.File, st.File, o.File):
		return false
	}
	return f.MatchShown(SearchText(st), StatesOf(st))
}

// MatchShown is Match's text and state part on what a page card shows: its SearchText and
// its StatesOf (the page's script applies the same rules to the cards' data attributes).
func (f Filter) MatchShown(text string, states []State) bool {
	for _, w := range strings.Fields(strings.ToLower(f.Text)) {
		if !strings.Contains(text, w) {
			return false
		}
	}
	if len(f.States) > 0 && !slices.ContainsFunc(states, func(s State) bool { return slices.Contains(f.States, s) }) {
		return false
	}
	return !f.Attention || NeedsAttention(states)
}

func matchFile(want, instance, config string) bool {
	instance, config = strings.Trim(instance, "/"), strings.Trim(config, "/")
	return want == config || want == instance || strings.HasPrefix(instance, want+"/")
}

// SearchText is what Filter.Text searches in a stage, in lower case: its name, image,
// values (current, candidate tag and digest, verified), release group and members.
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
