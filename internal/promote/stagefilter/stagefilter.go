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

// State is a condition of a stage that needs a human: the attention view lists these.
type State string

const (
	Failed          State = "failed"           // the last pass failed (discovery, Git, verification)
	WaitingApproval State = "waiting-approval" // a candidate waits for promoter approve
	Inconclusive    State = "inconclusive"     // the verification could not decide
	Paused          State = "paused"           // promoter pause
	Held            State = "held"             // held or blocked: nothing moves until something changes
)

// States are every State, in the order the attention view shows them.
var States = []State{Failed, WaitingApproval, Inconclusive, Paused, Held}

// StatesOf are the States st is in (none for a stage that needs nobody).
func StatesOf(st stage.Status) []State {
	var out []State
	if st.Decision == stage.DecisionFailed {
		out = append(out, Failed)
	}
	if st.Decision == stage.DecisionWait && strings.HasPrefix(st.Reason, "waiting for approval of ") {
		out = append(out, WaitingApproval)
	}
	if st.Verification != nil && st.Verification.Phase == "Inconclusive" {
		out = append(out, Inconclusive)
	}
	if st.Paused {
		out = append(out, Paused)
	}
	if !st.Paused && (st.Decision == stage.DecisionHold || st.Decision == stage.DecisionBlocked) {
		out = append(out, Held)
	}
	return out
}

// Origin says where a stage comes from, for what its Status does not hold: the Argo CD
// mode knows the Application's ApplicationSet, project and namespace, local mode the
// promoter.yaml file. Empty fields are unknown.
type Origin struct {
	AppSet    string `json:"appSet,omitempty"`
	Project   string `json:"project,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	File      string `json:"file,omitempty"`
}

// OriginOf fills what o leaves empty from st: the namespace of the Argo CD Application
// ("namespace/name") st syncs.
func OriginOf(st stage.Status, o Origin) Origin {
	if o.Namespace == "" && st.Sync != nil {
		if ns, _, ok := strings.Cut(st.Sync.Application, "/"); ok {
			o.Namespace = ns
		}
	}
	return o
}

// Filter is what a stage must match; its zero value matches every stage. Each field given
// must match (and), each State listed may (or).
type Filter struct {
	// Text is matched, case-insensitively and as a substring, against the stage's name,
	// image, value (current and candidate), group, decision, reason and States.
	Text string
	// States keeps the stages in at least one of them.
	States []State
	// Group, AppSet, Project, Namespace match exactly; Group matches a release group's
	// own entry and its members.
	Group, AppSet, Project, Namespace string
	// File matches the promoter.yaml the stage is configured in (Origin.File), or its
	// instance file, or a directory holding that file.
	File string
}

// Parameters are the query parameters Parse reads, as the API and the page take them.
const (
	ParamText      = "q"
	ParamState     = "state"
	ParamGroup     = "group"
	ParamAppSet    = "appset"
	ParamProject   = "project"
	ParamNamespace = "namespace"
	ParamFile      = "file"
)

// Parse reads a Filter from query parameters: q, state (repeated or comma-separated:
// failed, waiting-approval, inconclusive, paused, held), group, appset, project,
// namespace, file. An unknown state is an error naming the known ones.
func Parse(q url.Values) (Filter, error) {
	f := Filter{
		Text:  strings.TrimSpace(q.Get(ParamText)),
		Group: q.Get(ParamGroup), AppSet: q.Get(ParamAppSet), Project: q.Get(ParamProject),
		Namespace: q.Get(ParamNamespace), File: strings.Trim(q.Get(ParamFile), "/"),
	}
	for _, v := range q[ParamState] {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !slices.Contains(States, State(s)) {
				return Filter{}, fmt.Errorf("query parameter state=%s is not a state; use one of %s", s, joinStates())
			}
			if !slices.Contains(f.States, State(s)) {
				f.States = append(f.States, State(s))
			}
		}
	}
	return f, nil
}

func joinStates() string {
	var out []string
	for _, s := range States {
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
	for _, s := range f.States {
		q.Add(ParamState, string(s))
	}
	return q
}

// Empty reports whether f matches every stage.
func (f Filter) Empty() bool {
	return f.Text == "" && len(f.States) == 0 && f.Group == "" && f.AppSet == "" && f.Project == "" && f.Namespace == "" && f.File == ""
}

// Match reports whether st, coming from o, passes f.
func (f Filter) Match(st stage.Status, o Origin) bool {
	o = OriginOf(st, o)
	states := StatesOf(st)
	switch {
	case f.Group != "" && st.Group != f.Group && !(st.Name == f.Group && len(st.Members) > 0),
		f.AppSet != "" && o.AppSet != f.AppSet,
		f.Project != "" && o.Project != f.Project,
		f.Namespace != "" && o.Namespace != f.Namespace,
		f.File != "" && !matchFile(f.File, st.File, o.File),
		len(f.States) > 0 && !slices.ContainsFunc(states, func(s State) bool { return slices.Contains(f.States, s) }):
		return false
	}
	return f.Text == "" || matchText(strings.ToLower(f.Text), st, states)
}

func matchFile(want, instance, config string) bool {
	instance, config = strings.Trim(instance, "/"), strings.Trim(config, "/")
	return want == config || want == instance || strings.HasPrefix(instance, want+"/")
}

func matchText(text string, st stage.Status, states []State) bool {
	fields := []string{st.Name, st.Image, st.CurrentTag, st.Group, string(st.Decision), st.Reason}
	if st.Candidate != nil {
		fields = append(fields, st.Candidate.Tag, st.Candidate.Digest)
	}
	for _, m := range st.Members {
		fields = append(fields, m.Stage, m.Current, m.Candidate)
	}
	for _, s := range states {
		fields = append(fields, string(s))
	}
	for _, v := range fields {
		if strings.Contains(strings.ToLower(v), text) {
			return true
		}
	}
	return false
}
