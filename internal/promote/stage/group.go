package stage

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// A release group is a set of stages of one environment that move together
// (develop-frontend and develop-backend form develop/shop). The group is a stage of its
// own in the engine: its freight is the set of member values (freight.Set), a promotion
// is one commit changing every member's file, it is verified only when every member is
// verified at that commit, and a group downstream takes only sets its upstream group
// verified together. Members keep their own observation (file, history, discovery);
// only the decision and the write are the group's.
//
// A stage outside every group is a unit of one (group.lone) decided and written by the
// same code (decide.go, act.go): every step exists once, and only the sentences of a
// stage alone differ (its status, state and commits are the stage's own).

// GroupSpec is one release group as configured: promoter.yaml's groups: entries, or
// the kropipe.io/group annotations of Applications.
type GroupSpec struct {
	// Name is the group stage's name, e.g. develop/shop; the part after the last slash
	// (shop) names it in commit subjects.
	Name string
	// Members are the stages moving together, in the order commits list them.
	Members []string
	// RequireAll makes a new set wait until every member has a new candidate; by
	// default a member without one keeps its current value in the set.
	RequireAll bool
	// Subject is the commit subject template (gitwrite.SetSubjectData); "" is
	// gitwrite.DefaultSetSubject.
	Subject string
	// Problem, when set, is what the group's source found wrong (members' annotations
	// that disagree): the group is held with it.
	Problem string
}

// ErrGroupMember is wrapped when an action names a member of a release group alone.
var ErrGroupMember = errors.New("member of a release group")

// group is a GroupSpec checked against the stages, or a stage alone (lone): a unit that
// passes decide and write as one.
type group struct {
	GroupSpec
	members []Spec // in member order
	// upstream is the unit whose verified sets this one takes ("" for none): a group, or
	// for a stage alone its upstream stage; upMember maps a member to the member of
	// upstream it follows.
	upstream string
	upMember map[string]string
	// up is the unit upstream: the group upstream, or for a stage alone a view of its
	// upstream stage alone (its verifications are the stage's, group member or not).
	up *group
	// problem keeps the group (and its members) from running; the other stages run.
	problem error
	// lone marks a stage outside every group, decided and written as a set of one: its
	// status, state and commits are the stage's own.
	lone bool
}

// loneUnit is stage s alone, as a set of one.
func loneUnit(s Spec) *group {
	g := &group{GroupSpec: GroupSpec{Name: s.Name, Members: []string{s.Name}}, members: []Spec{s}, upstream: s.Upstream, upMember: map[string]string{}, lone: true}
	if s.Upstream != "" {
		g.upMember[s.Name] = s.Upstream
	}
	return g
}

// value is what the unit runs or is offered as one string: a stage's tag (or digest), a
// group's "stage=value, …". Verifications and approvals are recorded with it.
func (g *group) value(set freight.Set) string {
	if g.lone {
		return set[0].Value
	}
	return set.Value()
}

// id identifies the freight set in verifications: a stage's freight, a group's set.
func (g *group) id(set freight.Set) string {
	if g.lone {
		return set[0].Freight.ID()
	}
	return set.ID()
}

// groupTable is the engine's groups and who belongs where.
type groupTable struct {
	list   []*group // in configuration order
	byName map[string]*group
	// of maps a member stage to its group (its first, when a stage is listed twice:
	// both groups then have a problem).
	of map[string]*group
	// lastAt maps a stage to the units decided once it is (see setGroupsLocked): its own
	// when it is alone, the groups whose last member it is.
	lastAt map[string][]*group
	// alone maps a stage outside every group to its unit.
	alone map[string]*group
}

func (t *groupTable) named(name string) (*group, bool) {
	if t == nil {
		return nil, false
	}
	g, ok := t.byName[name]
	return g, ok
}

// unit is the unit named name: a release group, or a stage alone.
func (t *groupTable) unit(name string) (*group, bool) {
	if g, ok := t.named(name); ok {
		return g, true
	}
	if t == nil {
		return nil, false
	}
	g, ok := t.alone[name]
	return g, ok
}

func (t *groupTable) groupOf(stage string) (*group, bool) {
	if t == nil {
		return nil, false
	}
	g, ok := t.of[stage]
	return g, ok
}

// GroupError is a problem with one release group's configuration; only that group
// (and its members) is held.
type GroupError struct {
	Group string
	Msg   string
}

func (e *GroupError) Error() string { return fmt.Sprintf("group %q: %s", e.Group, e.Msg) }

// resolveGroups checks groups against specs (already validated, upstreams first) and
// makes every stage outside them a unit alone. Problems do not fail the whole: each
// becomes its group's problem.
func resolveGroups(specs []Spec, groups []GroupSpec) *groupTable {
	t := &groupTable{byName: map[string]*group{}, of: map[string]*group{}}
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	listed := map[string][]string{} // member → groups listing it
	for _, gs := range groups {
		g := &group{GroupSpec: gs, upMember: map[string]string{}}
		bad := func(format string, args ...any) {
			if g.problem == nil {
				g.problem = &GroupError{Group: gs.Name, Msg: fmt.Sprintf(format, args...)}
			}
		}
		if gs.Problem != "" {
			bad("%s", gs.Problem)
		}
		switch {
		case gs.Name == "" || strings.ContainsAny(gs.Name, " \t\n,=") || path.Clean(gs.Name) != gs.Name || strings.HasPrefix(gs.Name, "/"):
			bad("name %q is not a group name; use letters, digits, dots and dashes, optionally after an environment and a slash, e.g. develop/shop", gs.Name)
		case byName[gs.Name].Name != "":
			bad("name is also a stage's name; give the group its own, e.g. develop/shop")
		case t.byName[gs.Name] != nil:
			bad("is defined twice; give each group its own name")
		}
		if len(gs.Members) == 0 {
			bad("has no members; list the stages that move together")
		}
		seen := map[string]bool{}
		for _, m := range gs.Members {
			s, ok := byName[m]
			switch {
			case !ok:
				bad("member %q is not a stage; use one of %s", m, names(byName))
				continue
			case seen[m]:
				bad("lists member %q twice", m)
				continue
			}
			seen[m] = true
			listed[m] = append(listed[m], gs.Name)
			g.members = append(g.members, s)
		}
		if _, dup := t.byName[gs.Name]; !dup {
			t.byName[gs.Name] = g
		}
		t.list = append(t.list, g)
		for _, m := range g.members {
			if _, ok := t.of[m.Name]; !ok {
				t.of[m.Name] = g
			}
		}
	}
	for _, g := range t.list {
		bad := func(format string, args ...any) {
			if g.problem == nil {
				g.problem = &GroupError{Group: g.Name, Msg: fmt.Sprintf(format, args...)}
			}
		}
		for _, m := range g.members {
			if gs := listed[m.Name]; len(gs) > 1 {
				bad("member %q is also in group(s) %s; a stage can move with one group only", m.Name, quoteOthers(gs, g.Name))
			}
		}
		if g.problem != nil || len(g.members) == 0 {
			continue
		}
		first := g.members[0]
		for _, m := range g.members[1:] {
			if m.RepoURL != first.RepoURL || m.Branch != first.Branch {
				bad("members %q and %q write to different repositories or branches (%s %s, %s %s); a set must land in one commit, so every member's file must be in one repository and branch", first.Name, m.Name, first.RepoURL, first.Branch, m.RepoURL, m.Branch)
			}
			if m.AutoPromote != first.AutoPromote {
				bad("members %q and %q disagree on autoPromote; the group promotes as one, give them the same", first.Name, m.Name)
			}
			if m.Soak != first.Soak {
				bad("members %q and %q disagree on soak (%s, %s); the group soaks as one, give them the same", first.Name, m.Name, first.Soak, m.Soak)
			}
		}
		if msg := writeDisagreement(g.Name, g.members); msg != "" {
			bad("%s", msg)
		}
		g.resolveUpstream(t, bad)
	}
	// Every other stage is a unit alone. A unit is decided at its last member in specs'
	// order (upstreams first): by then every member and every upstream member has been
	// observed and decided.
	t.alone, t.lastAt = map[string]*group{}, map[string][]*group{}
	pos := map[string]int{}
	for i, s := range specs {
		pos[s.Name] = i
		if _, ok := t.of[s.Name]; !ok {
			t.alone[s.Name] = loneUnit(s)
			t.lastAt[s.Name] = []*group{t.alone[s.Name]}
		}
	}
	for _, g := range t.list {
		last := ""
		for _, m := range g.members {
			if last == "" || pos[m.Name] > pos[last] {
				last = m.Name
			}
		}
		t.lastAt[last] = append(t.lastAt[last], g)
	}
	for _, g := range t.list {
		if g.upstream != "" {
			g.up = t.byName[g.upstream]
		}
	}
	for _, g := range t.alone {
		if up, ok := byName[g.upstream]; ok {
			// Its upstream's verifications are kept under the upstream's name, alone or in a group.
			g.up = loneUnit(up)
		}
	}
	t.checkPullRequestBranches(specs)
	return t
}

// checkPullRequestBranches holds a unit in pull-request mode whose head branch is another
// unit's head branch, or a branch a stage deploys from, in the same repository, or nests in
// or holds one (Git cannot have kropipe/prod and kropipe/prod/shop at once): kropipe
// force-pushes its head branches, so each must be one unit's own. Units are taken in specs'
// order; the later one is held.
func (t *groupTable) checkPullRequestBranches(specs []Spec) {
	type taken struct{ repo, branch, by string }
	var targets, heads []taken
	for _, s := range specs {
		targets = append(targets, taken{s.RepoURL, s.Branch, s.Name})
	}
	clash := func(list []taken, repo, branch string) (taken, bool) {
		for _, o := range list {
			if o.repo == repo && (o.branch == branch || strings.HasPrefix(branch, o.branch+"/") || strings.HasPrefix(o.branch, branch+"/")) {
				return o, true
			}
		}
		return taken{}, false
	}
	seen := map[*group]bool{}
	for _, s := range specs {
		u, ok := t.alone[s.Name]
		if !ok {
			u = t.of[s.Name]
		}
		if u == nil || seen[u] || u.problem != nil || len(u.members) == 0 || u.members[0].Write != WritePullRequest {
			continue
		}
		seen[u] = true
		group := ""
		if !u.lone {
			group = u.Name
		}
		first := u.members[0]
		branch, err := first.PullRequestBranch(group)
		if err != nil {
			continue // Validate or writeDisagreement named it
		}
		var msg string
		if o, ok := clash(targets, first.RepoURL, branch); ok {
			msg = fmt.Sprintf("%q renders to %q, which clashes with branch %q stage %q deploys from; kropipe force-pushes its pull-request branch, so give it its own, e.g. %s", first.PullRequest.Branch, branch, o.branch, o.by, DefaultPullRequestBranch)
		} else if o, ok := clash(heads, first.RepoURL, branch); ok {
			msg = fmt.Sprintf("%q renders to %q, which clashes with %q, the pull-request branch of %q; kropipe force-pushes it, so each stage or release group needs its own (Git cannot hold a branch and one nested in it): put {{.Stage}} in it and avoid nesting", first.PullRequest.Branch, branch, o.branch, o.by)
		} else {
			heads = append(heads, taken{first.RepoURL, branch, u.Name})
			continue
		}
		if u.lone {
			u.problem = &FieldError{Stage: u.Name, Field: "pullRequest.branch", Msg: msg}
		} else {
			u.problem = &GroupError{Group: u.Name, Msg: "pullRequest.branch of the members: " + msg}
		}
	}
}

// resolveUpstream finds the group whose members the members follow: every member's
// upstream must be a different member of one same group with as many members.
func (g *group) resolveUpstream(t *groupTable, bad func(string, ...any)) {
	var withUp, without []string
	for _, m := range g.members {
		if m.Upstream == "" {
			without = append(without, m.Name)
		} else {
			withUp = append(withUp, m.Name)
		}
	}
	if len(withUp) == 0 {
		return
	}
	if len(without) > 0 {
		bad("members %s have an upstream and %s have none; a group follows one upstream group with all its members, or none", strings.Join(withUp, ", "), strings.Join(without, ", "))
		return
	}
	up := ""
	taken := map[string]string{}
	for _, m := range g.members {
		ug, ok := t.of[m.Upstream]
		if !ok {
			bad("member %q follows %q, which is in no group; a group's upstream must be a group with the same members (give %q a group)", m.Name, m.Upstream, m.Upstream)
			return
		}
		if up == "" {
			up = ug.Name
		} else if ug.Name != up {
			bad("members follow stages of different groups (%s, %s); a group's upstream must be one group with the same members", up, ug.Name)
			return
		}
		if other, dup := taken[m.Upstream]; dup {
			bad("members %q and %q both follow %q; each member must follow its own member of the upstream group", other, m.Name, m.Upstream)
			return
		}
		taken[m.Upstream] = m.Name
		g.upMember[m.Name] = m.Upstream
	}
	ug := t.byName[up]
	if len(ug.members) != len(g.members) {
		var missing []string
		for _, um := range ug.members {
			if _, ok := taken[um.Name]; !ok {
				missing = append(missing, um.Name)
			}
		}
		bad("upstream group %q has different members: nothing here follows %s; give this group a member for each of %q's", up, strings.Join(missing, ", "), up)
		return
	}
	g.upstream = up
}

func quoteOthers(groups []string, self string) string {
	var out []string
	for _, g := range groups {
		if g != self {
			out = append(out, fmt.Sprintf("%q", g))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// label is a member's name in commit subjects: the image's last path part (frontend),
// or the stage's name when two members share it.
func (g *group) label(s Spec) string {
	base := path.Base(s.Image)
	for _, m := range g.members {
		if m.Name != s.Name && path.Base(m.Image) == base {
			return s.Name
		}
	}
	return base
}

// soak and autoPromote are the members' (resolveGroups checked they agree).
func (g *group) soak() time.Duration { return g.members[0].Soak }
func (g *group) autoPromote() bool   { return g.members[0].AutoPromote }

// setGroupsLocked checks groups against e.specs and gives each group a status (prev's,
// when it had one). The caller holds e.mu.
func (e *Engine) setGroupsLocked(groups []GroupSpec, prev map[string]Status) {
	e.groupSpecs = groups
	t := resolveGroups(e.specs, groups)
	e.groups = t
	for _, g := range t.list {
		st, ok := prev[g.Name]
		if !ok {
			st = Status{Name: g.Name, Decision: DecisionWait, Reason: "not checked yet"}
		}
		st.Upstream, st.Members = g.upstream, nil
		for _, m := range g.members {
			st.Members = append(st.Members, MemberStatus{Stage: m.Name, Current: e.status[m.Name].CurrentTag})
		}
		e.status[g.Name] = st
	}
	for _, s := range e.specs {
		st := e.status[s.Name]
		st.Group = ""
		if g, ok := t.of[s.Name]; ok {
			st.Group = g.Name
		}
		e.status[s.Name] = st
	}
	for name := range e.groupCand {
		if _, ok := t.unit(name); !ok {
			delete(e.groupCand, name)
		}
	}
}

// groupStatusesAfter are the statuses of the groups decided at stage (listed after it),
// or with "" of the groups without members. The caller holds e.mu.
func (e *Engine) groupStatusesAfter(stage string) []Status {
	var out []Status
	for _, g := range e.groups.lastAt[stage] {
		if st, ok := e.status[g.Name]; ok && !g.lone && e.groups.byName[g.Name] == g {
			out = append(out, st)
		}
	}
	return out
}

// display is a set as people read it: "frontend 1.2.1 → 1.2.2, backend 2.1.0"; for a stage
// alone "1.2.1 → 1.2.2".
func (g *group) display(set freight.Set, cur []string) string {
	parts := make([]string, len(set))
	for i, m := range g.members {
		label := g.label(m) + " "
		if g.lone {
			label = ""
		}
		if set[i].Value == cur[i] {
			parts[i] = label + orNothing(set[i].Value)
		} else {
			parts[i] = fmt.Sprintf("%s%s → %s", label, orNothing(cur[i]), set[i].Value)
		}
	}
	return strings.Join(parts, ", ")
}

// displaySet is the values of a set as people read them: "frontend 1.2.2, backend 2.1.0";
// for a stage alone its value.
func (g *group) displaySet(set freight.Set) string {
	if g.lone {
		return set[0].Value
	}
	parts := make([]string, len(set))
	for i, m := range g.members {
		parts[i] = fmt.Sprintf("%s %s", g.label(m), orNothing(set[i].Value))
	}
	return strings.Join(parts, ", ")
}

// noun is what errors call the unit.
func (g *group) noun() string {
	if g.lone {
		return "stage"
	}
	return "group"
}

func sameValues(set freight.Set, cur []string) bool {
	for i := range set {
		if set[i].Value != cur[i] {
			return false
		}
	}
	return true
}

// commitVia is CommitVia with its default.
func (s Spec) commitVia() string {
	if s.CommitVia == "" {
		return CommitViaGit
	}
	return s.CommitVia
}

// writeDisagreement says what a release group's members disagree on among the write
// settings, or why the group's pull-request branch cannot be made; "" when they fit. A set
// lands in one commit, so it is pushed, or proposed in one pull request from one branch on
// one forge, as one. Labels and reviewers may differ: the group's request takes them all.
func writeDisagreement(group string, members []Spec) string {
	first := members[0]
	for _, m := range members[1:] {
		a, b := first.PullRequest, m.PullRequest
		for _, f := range []struct{ field, x, y string }{
			{"write", first.Write, m.Write}, {"commitVia", first.commitVia(), m.commitVia()},
			{"pullRequest.merge", a.Merge, b.Merge},
			{"pullRequest.method", a.Method, b.Method}, {"pullRequest.branch", a.Branch, b.Branch},
			{"pullRequest.forge", strings.ToLower(a.Forge), strings.ToLower(b.Forge)},
			{"pullRequest.forgeAPIURL", a.ForgeAPIURL, b.ForgeAPIURL},
		} {
			if f.x != f.y {
				return fmt.Sprintf("members %q and %q disagree on %s (%q, %q); the group is written as one, give them the same", first.Name, m.Name, f.field, f.x, f.y)
			}
		}
	}
	if first.Write == WritePullRequest {
		if _, err := first.PullRequestBranch(group); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return fe.Field + " of the members: " + fe.Msg // the group is named already
			}
			return err.Error()
		}
	}
	return ""
}
