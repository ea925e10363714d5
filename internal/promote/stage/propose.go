package stage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

// This file is pull-request mode: a unit whose stages say write: pull-request proposes its
// change in one pull request, from its own branch, updated in place, and moves once a human or
// kropipe merged it. The pull request kropipe waits on lives in the State (PullRequests), so a
// restart, another leader or another shard picks it up where it was; and the branch names it,
// so a run cut short between the push and the State finds it again before it creates anything.

// ForgeFunc returns the forge of a stage's repository (its credentials included).
type ForgeFunc func(ctx context.Context, s Spec) (forge.Forge, error)

// WithForges sets how the engine reaches the forge of a stage in pull-request mode; by default
// it detects the forge from the repository URL (or the stage's Forge and ForgeAPIURL) and asks
// it without credentials.
func WithForges(fn ForgeFunc) Option { return func(e *Engine) { e.forgeFor = fn } }

// DefaultPullRequestPoll is how often a pass is due while a pull request is open, when no
// forge webhook says it changed.
const DefaultPullRequestPoll = 30 * time.Second

// Back-off of the forge's failures (5xx, 429, timeouts): they are retried, never the end of a
// promotion.
const (
	forgeBackoffFirst = 10 * time.Second
	forgeBackoffMax   = 5 * time.Minute
)

// pullRequestMode reports whether the unit proposes its changes in pull requests.
func (g *group) pullRequestMode() bool { return g.members[0].Write == WritePullRequest }

// pullRequestBranch is the head branch of the unit's pull requests.
func (g *group) pullRequestBranch() (string, error) {
	if g.lone {
		return g.members[0].PullRequestBranch("")
	}
	return g.members[0].PullRequestBranch(g.Name)
}

// pullRequestAsk is who and what the unit's pull requests ask for: a group's members may each
// name labels and reviewers, the pull request gets them all.
func (g *group) pullRequestAsk() (labels, reviewers []string) {
	for _, m := range g.members {
		for _, l := range m.PullRequest.Labels {
			if !slices.Contains(labels, l) {
				labels = append(labels, l)
			}
		}
		for _, r := range m.PullRequest.Reviewers {
			if !slices.Contains(reviewers, r) {
				reviewers = append(reviewers, r)
			}
		}
	}
	return labels, reviewers
}

// forgeOf returns the unit's forge, made once per repository and forge settings.
func (e *Engine) forgeOf(ctx context.Context, s Spec) (forge.Forge, error) {
	key := s.RepoURL + "\x00" + s.PullRequest.Forge + "\x00" + s.PullRequest.ForgeAPIURL
	e.mu.Lock()
	f, ok := e.forges[key]
	e.mu.Unlock()
	if ok {
		return f, nil
	}
	var err error
	if e.forgeFor != nil {
		f, err = e.forgeFor(ctx, s)
	} else {
		f, err = DefaultForge(s, forge.Config{})
	}
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.forges == nil {
		e.forges = map[string]forge.Forge{}
	}
	e.forges[key] = f
	return f, nil
}

// DefaultForge is the forge of s's repository with c's credentials and s's forge settings.
func DefaultForge(s Spec, c forge.Config) (forge.Forge, error) {
	if s.PullRequest.Forge != "" {
		k, err := forge.ParseKind(s.PullRequest.Forge)
		if err != nil {
			return nil, &FieldError{Stage: s.Name, Field: "pullRequest.forge", Msg: err.Error()}
		}
		c.Kind = k
	}
	if s.PullRequest.ForgeAPIURL != "" {
		c.APIURL = s.PullRequest.ForgeAPIURL
	}
	f, err := forge.New(s.RepoURL, c)
	if err != nil {
		return nil, fmt.Errorf("stage %q: %w", s.Name, err)
	}
	return f, nil
}

// trackPullRequest brings the unit's open pull request up to date with the forge before the
// pass acts on decision d, and says whether the pass may go on to write what d decided
// (true), or the pull request answers for the unit this pass (false: its statuses are set).
// Only a pass that writes calls it.
func (e *Engine) trackPullRequest(ctx context.Context, u *group, d decision, obs map[string]*observation, state *working, now time.Time, statuses map[string]*Status) bool {
	pr, ok := state.PullRequests[u.Name]
	if !ok {
		if d.Decision == DecisionPromote && e.refused(u, d.Cand, state, statuses) {
			return false
		}
		return true
	}
	st := statuses[u.Name]
	if pr.State == forge.Merged {
		if e.mergeLanded(ctx, u, pr, obs) {
			e.closeOut(ctx, u, pr, state)
			e.log.Info("pull request merge is on the branch", "stage", u.Name, "number", pr.Number, "merge", short(pr.MergeCommit))
			return true
		}
		st.Decision, st.Reason = DecisionWait, fmt.Sprintf("pull request #%d merged in %s; waiting for %s to show it", pr.Number, short(pr.MergeCommit), u.members[0].Branch)
		st.PullRequest = &pr
		e.awaitMerge(u, pr, now)
		return false
	}
	if !pr.NextAttempt.IsZero() && now.Before(pr.NextAttempt) && !e.takeWoken(u.Name) {
		e.showPullRequest(u, pr, statuses, "")
		e.pollPullRequestAt(u, pr.NextAttempt)
		return false
	}
	f, err := e.forgeOf(ctx, u.members[0])
	if err != nil {
		fail(u, statuses, "", err, "")
		return false
	}
	if pr.Number == 0 {
		// Pushed, but the run that pushed did not get to open it: the write opens or finds it.
		return true
	}
	cur, err := f.Get(ctx, pr.Number)
	if err != nil {
		e.forgeFailed(u, &pr, err, state, now, statuses)
		return false
	}
	pr.PullRequest, pr.CheckedAt, pr.LastError, pr.Attempts, pr.NextAttempt = *cur, now, "", 0, time.Time{}
	switch cur.State {
	case forge.Merged:
		return e.sawMerged(ctx, u, pr, obs, state, statuses)
	case forge.Closed:
		e.refuse(u, pr, state, now)
		st.Decision, st.Reason = DecisionHold, fmt.Sprintf("pull request #%d was closed unmerged%s: %s is refused here and not proposed again by itself; promote it by hand to propose it again", pr.Number, by(pr.ClosedBy), pr.Value)
		return false
	}
	// Open.
	if d.Decision == DecisionPromote && d.Cand != nil && u.id(d.Cand) != pr.FreightID {
		if e.refused(u, d.Cand, state, statuses) {
			state.setPullRequest(u.Name, pr)
			return false
		}
		return true // newer freight: the write replaces the proposal in place
	}
	if reason, abort := abandoned(u, d, pr, obs); abort {
		if merged := e.closePullRequest(ctx, f, u, pr, reason, state, now, statuses); merged != nil {
			return e.sawMerged(ctx, u, *merged, obs, state, statuses)
		}
		return d.Decision == DecisionPromote
	}
	switch {
	case st.Paused:
		// A pause freezes the stage: kropipe merges nothing meanwhile (a human still may).
		pr.Action = "paused: kropipe does not merge it until the stage is resumed"
	case u.members[0].PullRequest.Merge == MergeAuto:
		if merged := e.autoMerge(ctx, f, u, &pr, state, now, statuses); merged {
			if e.mergeLanded(ctx, u, pr, obs) {
				e.closeOut(ctx, u, pr, state)
				return true
			}
			st.Decision, st.Reason = DecisionWait, fmt.Sprintf("merged pull request #%d in %s; waiting for %s to show it", pr.Number, short(pr.MergeCommit), u.members[0].Branch)
			st.PullRequest = &pr
			e.awaitMerge(u, pr, now)
			return false
		}
	default:
		pr.Action = waitingFor(pr, false)
	}
	state.setPullRequest(u.Name, pr)
	e.showPullRequest(u, pr, statuses, "")
	e.pollPullRequestAt(u, now.Add(DefaultPullRequestPoll))
	return false
}

// showTracked is trackPullRequest for a pass that writes nothing: the unit shows the pull
// request it waits on, or the refusal that holds its candidate, as the State has them.
func (e *Engine) showTracked(_ context.Context, u *group, d decision, _ map[string]*observation, state *working, _ time.Time, statuses map[string]*Status) bool {
	if pr, ok := state.PullRequests[u.Name]; ok {
		e.showPullRequest(u, pr, statuses, "")
		return false
	}
	return !(d.Decision == DecisionPromote && e.refused(u, d.Cand, state, statuses))
}

// abandoned says whether the open pull request no longer proposes what the unit should run,
// and why: the branch already holds its value (someone landed it another way), or nothing is
// to be promoted any more (the freight was rolled back upstream, the stage is up to date).
// A pass that could not tell (a failure, a hold, a wait) keeps it open.
func abandoned(u *group, d decision, pr PullRequest, obs map[string]*observation) (string, bool) {
	cur := make([]string, len(u.members))
	for i, m := range u.members {
		o := obs[m.Name]
		if o == nil || o.err != nil {
			return "", false
		}
		cur[i] = o.current
	}
	if u.value(valueSet(u, cur)) == pr.Value {
		return fmt.Sprintf("%s already holds %s", u.members[0].Branch, pr.Value), true
	}
	if d.Decision == DecisionUpToDate {
		return "superseded: " + d.Reason, true
	}
	return "", false
}

// autoMerge merges the open pull request once the forge says it can and its checks passed;
// it returns whether it is merged now. pr is updated.
func (e *Engine) autoMerge(ctx context.Context, f forge.Forge, u *group, pr *PullRequest, state *working, now time.Time, statuses map[string]*Status) bool {
	ready := pr.Mergeable != nil && *pr.Mergeable && (pr.Checks == forge.ChecksPassed || pr.Checks == forge.ChecksNone || pr.Checks == "")
	if !ready {
		pr.Action = waitingFor(*pr, true)
		return false
	}
	method := forge.MergeMethod(u.members[0].PullRequest.Method)
	subject, body, _ := strings.Cut(e.commitMessage(ctx, u, pr.Commit), "\n")
	title, message := fmt.Sprintf("Merge pull request #%d: %s", pr.Number, subject), ""
	if method == forge.MethodSquash {
		// The squash commit is the promotion: it keeps the commit's message, trailers and all,
		// so history reads it as the commit kropipe proposed.
		title, message = subject, strings.TrimLeft(body, "\n")
	}
	// The commit kropipe proposed, not the head the forge shows: a commit someone pushed on top
	// is not kropipe's to merge, and the forge refuses the merge then (ErrHeadMoved).
	merged, err := f.Merge(ctx, pr.Number, pr.Commit, method, title, message)
	switch {
	case err == nil:
		crashpoint.Hit(crashpoint.AfterMerge)
		pr.PullRequest = *merged
		pr.Action = ""
		state.setPullRequest(u.Name, *pr)
		e.log.Info("merged pull request", "stage", u.Name, "number", pr.Number, "method", method, "merge", short(pr.MergeCommit))
		return pr.State == forge.Merged
	case errors.Is(err, forge.ErrNotMergeable):
		pr.Action = "the forge refused to merge it yet (" + err.Error() + "); kropipe tries again"
	case errors.Is(err, forge.ErrHeadMoved):
		pr.Action = fmt.Sprintf("someone pushed to %s; kropipe does not merge what it did not propose: merge or close it by hand", pr.Head)
	default:
		e.forgeFailed(u, pr, err, state, now, statuses)
	}
	return false
}

// waitingFor says who must act on an open pull request.
func waitingFor(pr PullRequest, auto bool) string {
	switch {
	case pr.Checks == forge.ChecksFailed:
		return "required checks failed: a human must fix or close it"
	case pr.Checks == forge.ChecksPending:
		if auto {
			return "waiting for required checks, then kropipe merges"
		}
		return "waiting for required checks and a human to merge"
	case pr.Mergeable != nil && !*pr.Mergeable:
		return "the forge says it cannot be merged (conflicts or branch protection): a human must act"
	case auto && pr.Mergeable == nil:
		return "waiting for the forge to say it can be merged, then kropipe merges"
	case auto:
		return "kropipe merges it"
	}
	return "waiting for a human to review and merge"
}

// forgeFailed records a forge failure on the unit's pull request: retried with back-off, it
// never ends the promotion. One that needs a human (credentials, rights) fails the unit's
// status too, and is still retried.
func (e *Engine) forgeFailed(u *group, pr *PullRequest, err error, state *working, now time.Time, statuses map[string]*Status) {
	pr.Attempts++
	pr.LastError = err.Error()
	wait := forgeBackoffFirst << min(pr.Attempts-1, 8)
	var fe *forge.Error
	if errors.As(err, &fe) && fe.RetryAfter > wait {
		wait = fe.RetryAfter
	}
	pr.NextAttempt = now.Add(min(wait, forgeBackoffMax))
	state.setPullRequest(u.Name, *pr)
	e.pollPullRequestAt(u, pr.NextAttempt)
	if forge.Retryable(err) || pr.Number == 0 && errors.Is(err, forge.ErrNotFound) && pr.Attempts <= 5 {
		// A forge may not know a branch for a moment after the push (Gitea indexes pushed
		// branches from a queue): opening its pull request then answers 404 a few times.
		e.log.Warn("forge failed, will retry", "stage", u.Name, "number", pr.Number, "attempt", pr.Attempts, "err", err)
		e.showPullRequest(u, *pr, statuses, fmt.Sprintf("; the forge failed (%s), retrying at %s", err, pr.NextAttempt.UTC().Format("15:04:05Z")))
		return
	}
	e.log.Error("forge refused", "stage", u.Name, "number", pr.Number, "err", err)
	fail(u, statuses, "", fmt.Errorf("pull request #%d: %w", pr.Number, err), "")
	statuses[u.Name].PullRequest = pr
	mirror(u, statuses)
}

// showPullRequest says in the unit's status that it waits on pr.
func (e *Engine) showPullRequest(u *group, pr PullRequest, statuses map[string]*Status, suffix string) {
	st := statuses[u.Name]
	st.Decision = DecisionWait
	what := "proposes " + pr.Value
	if pr.Kind == gitwrite.Rollback.String() {
		what = "rolls back to " + pr.Value
	}
	if pr.Number == 0 {
		st.Reason = fmt.Sprintf("pushed %s to %s; opening its pull request", short(pr.Commit), pr.Head) + suffix
	} else {
		st.Reason = fmt.Sprintf("pull request #%d %s: %s", pr.Number, what, pr.Action) + suffix
	}
	st.PullRequest = &pr
}

// awaitMerge asks for the pass that reads the branch with the merge: at once while the merge
// is fresh (a forge shows the merge before its branch moves, for a moment), then at the poll.
func (e *Engine) awaitMerge(u *group, pr PullRequest, now time.Time) {
	if now.Sub(pr.CheckedAt) < time.Minute {
		e.target(memberNames(u))
		return
	}
	e.pollPullRequestAt(u, now.Add(DefaultPullRequestPoll))
}

// pollPullRequestAt asks for a pass at when: the forge is asked again then.
func (e *Engine) pollPullRequestAt(u *group, when time.Time) {
	e.soakEnd(u.Name+"\x00pull-request", when)
}

// refused says whether the candidate set was refused here (its pull request closed unmerged)
// and, if so, holds the unit.
func (e *Engine) refused(u *group, cand freight.Set, state *working, statuses map[string]*Status) bool {
	if cand == nil {
		return false
	}
	id := u.id(cand)
	for _, r := range state.Refused[u.Name] {
		if r.FreightID == id || (u.lone && r.Value == u.value(cand)) {
			st := statuses[u.Name]
			st.Decision, st.Reason = DecisionHold, fmt.Sprintf("%s was refused: pull request #%d was closed unmerged%s; promote it by hand to propose it again", r.Value, r.Number, by(r.ClosedBy))
			return true
		}
	}
	return false
}

// refuse records that the pull request was closed unmerged: its freight is refused.
func (e *Engine) refuse(u *group, pr PullRequest, state *working, now time.Time) {
	e.log.Info("pull request closed unmerged: freight refused", "stage", u.Name, "number", pr.Number, "value", pr.Value, "by", pr.ClosedBy)
	state.edit(func(s *State) {
		s.Refused[u.Name] = append(s.Refused[u.Name], Refusal{FreightID: pr.FreightID, Value: pr.Value, Number: pr.Number, URL: pr.URL, ClosedBy: pr.ClosedBy, ClosedAt: now})
		untrack(s, u.Name, pr)
	})
}

// sawMerged records that the unit's pull request is merged and says whether the pass may go
// on (the merge is on the branch this pass read: the stage moves) or waits for a pass that
// reads it.
func (e *Engine) sawMerged(ctx context.Context, u *group, pr PullRequest, obs map[string]*observation, state *working, statuses map[string]*Status) bool {
	pr.Action = ""
	state.setPullRequest(u.Name, pr)
	e.log.Info("pull request merged", "stage", u.Name, "number", pr.Number, "by", pr.MergedBy, "merge", short(pr.MergeCommit))
	if e.mergeLanded(ctx, u, pr, obs) {
		e.closeOut(ctx, u, pr, state)
		return true
	}
	st := statuses[u.Name]
	st.Decision, st.Reason = DecisionWait, fmt.Sprintf("pull request #%d merged%s; waiting for %s to show it", pr.Number, by(pr.MergedBy), u.members[0].Branch)
	st.PullRequest = &pr
	e.awaitMerge(u, pr, e.clock.Now())
	return false
}

// closePullRequest closes the unit's open pull request with a comment saying why. When the
// forge refuses because the request was merged meanwhile, it records and returns the merged
// request instead: a human's merge lands on the branch a moment before the forge reports it
// (Gitea pushes the merge, then marks the request merged, and answers a close then with 412
// "already merged"), so "the branch already holds its value" may be that very merge.
func (e *Engine) closePullRequest(ctx context.Context, f forge.Forge, u *group, pr PullRequest, reason string, state *working, now time.Time, statuses map[string]*Status) *PullRequest {
	comment := fmt.Sprintf("kropipe closes this pull request: %s.", reason)
	if err := f.Close(ctx, pr.Number, comment); err != nil {
		if cur, gerr := f.Get(ctx, pr.Number); gerr == nil && cur.State == forge.Merged {
			pr.PullRequest, pr.CheckedAt, pr.LastError, pr.Attempts, pr.NextAttempt = *cur, now, "", 0, time.Time{}
			state.setPullRequest(u.Name, pr)
			return &pr
		}
		e.forgeFailed(u, &pr, err, state, now, statuses)
		return nil
	}
	e.log.Info("closed pull request", "stage", u.Name, "number", pr.Number, "why", reason)
	pr.State, pr.Action = forge.Closed, reason
	e.closeOut(ctx, u, pr, state)
	return nil
}

// mergeLanded reports whether the branch as this pass fetched it holds the pull request's
// merge: its merge commit, or (when the forge named none) the values it proposed.
func (e *Engine) mergeLanded(ctx context.Context, u *group, pr PullRequest, obs map[string]*observation) bool {
	first := obs[u.members[0].Name]
	if first == nil || first.err != nil {
		return false
	}
	if pr.MergeCommit != "" {
		repo, err := e.Repo(ctx, u.members[0].RepoURL)
		if err != nil {
			return false
		}
		ok, err := repo.Contains(pr.MergeCommit, first.commit)
		return err == nil && ok
	}
	cur := make([]string, len(u.members))
	for i, m := range u.members {
		cur[i] = obs[m.Name].current
	}
	return u.value(valueSet(u, cur)) == pr.Value
}

// closeOut ends the tracking of a pull request merged or closed by kropipe: logged, its branch
// deleted (while it still holds the proposal).
func (e *Engine) closeOut(ctx context.Context, u *group, pr PullRequest, state *working) {
	state.edit(func(s *State) { untrack(s, u.Name, pr) })
	if repo, err := e.Repo(ctx, u.members[0].RepoURL); err == nil {
		if err := repo.DeleteBranch(ctx, pr.Head, pr.Commit); err != nil {
			e.log.Warn("deleting an ended pull request's branch", "stage", u.Name, "branch", pr.Head, "err", err)
		}
	}
}

// untrack moves the unit's pull request from PullRequests to its log (the newest
// maxPullRequestLog kept).
func untrack(s *State, unit string, pr PullRequest) {
	delete(s.PullRequests, unit)
	l := append(s.PullRequestLog[unit], pr)
	if len(l) > maxPullRequestLog {
		l = l[len(l)-maxPullRequestLog:]
	}
	s.PullRequestLog[unit] = l
}

// commitMessage is the message of a commit in the unit's clone ("" when unknown).
func (e *Engine) commitMessage(ctx context.Context, u *group, commit string) string {
	repo, err := e.Repo(ctx, u.members[0].RepoURL)
	if err != nil {
		return ""
	}
	msg, err := repo.CommitMessage(commit)
	if err != nil {
		return ""
	}
	return msg
}

// propose writes a unit's set in pull-request mode: the commit on the unit's branch (replacing
// a proposal in place), then the pull request opened, found or updated.
func (e *Engine) propose(ctx context.Context, p *pendingSet, statuses map[string]*Status, state *working) {
	u := p.g
	now := e.clock.Now()
	first := u.members[0]
	head, err := u.pullRequestBranch()
	if err != nil {
		p.err = err
		fail(u, statuses, "", err, "")
		return
	}
	pr, tracked := state.PullRequests[u.Name]
	value, id := u.value(p.set), u.id(p.set)
	if tracked && pr.State == forge.Open && pr.Number != 0 && pr.FreightID == id && pr.Kind == p.kind.String() {
		// Proposed already (an action asked twice, an owed rollback tried again).
		p.proposed = &pr
		e.showPullRequest(u, pr, statuses, "")
		return
	}
	f, err := e.forgeOf(ctx, first)
	if err != nil {
		p.err = err
		fail(u, statuses, "", err, "")
		return
	}
	repo, err := e.Repo(ctx, first.RepoURL)
	if err != nil {
		p.err = err
		fail(u, statuses, "", err, "")
		return
	}
	// Before anything is created: the request a run cut short may have opened.
	open, err := f.Find(ctx, head, first.Branch)
	if err != nil {
		e.proposeFailed(u, p, pr, head, err, state, now, statuses)
		return
	}
	lease := ""
	if tracked {
		lease = pr.Commit
	}
	var prop gitwrite.Proposal
	if first.commitVia() == CommitViaGitHubAPI {
		var c gitwrite.Committer
		if c, err = e.committerOf(ctx, first); err != nil {
			p.err = err
			fail(u, statuses, "", err, "")
			return
		}
		prop, err = repo.ProposeThrough(ctx, c, first.Branch, head, lease, p.changes()...)
	} else {
		prop, err = repo.Propose(ctx, first.Branch, head, lease, p.changes()...)
	}
	if err == nil && prop.Head == "" {
		// The branch holds the set already: nothing to propose.
		p.written = true
		if open != nil {
			e.closePullRequest(ctx, f, u, PullRequest{PullRequest: *open, Commit: open.HeadSHA, FreightID: pr.FreightID, Value: pr.Value}, first.Branch+" already holds "+value, state, now, statuses)
		}
		st := statuses[u.Name]
		st.Decision, st.Reason = DecisionUpToDate, "up to date at "+u.displaySet(p.set)
		return
	}
	if err != nil {
		for i, r := range prop.Results {
			var ce *gitwrite.ChangeError
			if r.Err != nil && errors.As(r.Err, &ce) {
				p.err = r.Err
				fail(u, statuses, u.members[i].Name, r.Err, "the set was not proposed: ")
				return
			}
		}
		p.err = err
		fail(u, statuses, "", err, "")
		return
	}
	msg, _ := repo.CommitMessage(prop.Head)
	subject, body, _ := strings.Cut(msg, "\n")
	body = strings.TrimSpace(body) + "\n\n---\n" + proposalStatus(u, p, first)
	prev := pr
	pr = PullRequest{Kind: p.kind.String(), FreightID: id, Value: value, From: u.value(valueSet(u, p.current)), Commit: prop.Head, OpenedAt: now}
	pr.Head, pr.Base, pr.HeadSHA, pr.Title = head, first.Branch, prop.Head, subject
	if tracked && prev.Number == 0 && prev.FreightID == id {
		// Pushed before, never opened: the forge's failures go on counting, so the back-off
		// grows instead of asking every 10 s for as long as the forge refuses.
		pr.Attempts = prev.Attempts
	}
	state.setPullRequest(u.Name, pr) // pushed: a restart finds the branch and this
	var got *forge.PullRequest
	if open != nil {
		err = f.Update(ctx, open.Number, subject, body)
		if err == nil {
			got, err = f.Get(ctx, open.Number)
		}
		if err == nil {
			e.log.Info("updated pull request in place", "stage", u.Name, "number", open.Number, "value", value)
		}
	} else {
		labels, reviewers := u.pullRequestAsk()
		got, err = f.Create(ctx, forge.NewPullRequest{Head: head, Base: first.Branch, Title: subject, Body: body, Labels: labels, Reviewers: reviewers})
		if err == nil {
			e.log.Info("opened pull request", "stage", u.Name, "number", got.Number, "url", got.URL, "value", value)
		}
	}
	if err != nil {
		e.proposeFailed(u, p, pr, head, err, state, now, statuses)
		return
	}
	opened := pr.OpenedAt
	pr.PullRequest = *got
	pr.HeadSHA, pr.Commit, pr.OpenedAt, pr.CheckedAt = prop.Head, prop.Head, opened, now
	pr.Attempts, pr.LastError, pr.NextAttempt = 0, "", time.Time{}
	pr.Action = waitingFor(pr, first.PullRequest.Merge == MergeAuto)
	state.setPullRequest(u.Name, pr)
	p.written, p.proposed, p.commit = true, &pr, prop.Head
	e.showPullRequest(u, pr, statuses, "")
	e.pollPullRequestAt(u, now.Add(DefaultPullRequestPoll))
}

// proposeFailed keeps what was done (the branch pushed) and retries the forge later.
func (e *Engine) proposeFailed(u *group, p *pendingSet, pr PullRequest, head string, err error, state *working, now time.Time, statuses map[string]*Status) {
	p.err = err
	if pr.Head == "" {
		pr.Head = head
	}
	if pr.Commit == "" {
		// Nothing pushed yet and nothing to remember: the next pass starts over.
		if forge.Retryable(err) {
			e.log.Warn("forge failed before proposing, will retry", "stage", u.Name, "err", err)
			st := statuses[u.Name]
			st.Decision, st.Reason = DecisionWait, fmt.Sprintf("the forge failed (%s); proposing again on the next pass", err)
			e.pollPullRequestAt(u, now.Add(forgeBackoffFirst))
			return
		}
		fail(u, statuses, "", err, "")
		return
	}
	e.forgeFailed(u, &pr, err, state, now, statuses)
}

// proposalStatus is the part of a pull request's body kropipe keeps up to date.
func proposalStatus(u *group, p *pendingSet, s Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Proposed by kropipe for %s %s: %s.\n", u.noun(), u.Name, u.display(p.set, p.current))
	for i, m := range u.members {
		f := p.set[i].Freight
		if f.Image != "" {
			fmt.Fprintf(&b, "- %s: %s\n", m.Name, f.Ref())
		}
	}
	if s.PullRequest.Merge == MergeAuto {
		fmt.Fprintf(&b, "\nkropipe merges it (%s) once the forge says it can be merged and required checks passed.\n", s.PullRequest.Method)
	} else {
		b.WriteString("\nMerge it to promote; close it to refuse this freight for the stage (kropipe then does not propose it again by itself).\n")
	}
	b.WriteString("A newer freight replaces this proposal in place.\n")
	return b.String()
}

func by(user string) string {
	if user == "" {
		return ""
	}
	return " by " + user
}

func memberNames(u *group) []string {
	out := make([]string, len(u.members))
	for i, m := range u.members {
		out[i] = m.Name
	}
	return out
}

// NotifyPullRequest says a forge's webhook reported a change of a pull request: the units
// proposing from its head branch in that repository get a pass at once. It returns their names.
func (e *Engine) NotifyPullRequest(ev forge.Event) []string {
	e.mu.Lock()
	units := append([]*group(nil), e.groups.list...)
	for _, g := range e.groups.alone {
		units = append(units, g)
	}
	e.mu.Unlock()
	var woke []string
	for _, u := range units {
		if !u.pullRequestMode() {
			continue
		}
		head, err := u.pullRequestBranch()
		if err != nil || head != ev.Head {
			continue
		}
		if !sameRepo(u.members[0].RepoURL, ev.Repo) {
			continue
		}
		woke = append(woke, u.Name)
		// The forge just spoke: whatever back-off its failures set, ask it now.
		e.mu.Lock()
		if e.woken == nil {
			e.woken = map[string]bool{}
		}
		e.woken[u.Name] = true
		e.mu.Unlock()
		e.target(memberNames(u))
	}
	return woke
}

// sameRepo reports whether the repository at repoURL is the one a forge names path (owner/name).
func sameRepo(repoURL, path string) bool {
	if r, err := forge.ParseRepo(repoURL); err == nil {
		return strings.EqualFold(r.Path, path)
	}
	// A server without owners (a test server): the URL's path.
	u, err := url.Parse(repoURL)
	return err == nil && path != "" && strings.EqualFold(strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git"), path)
}

// takeWoken reports whether a forge webhook named the unit since the last pass asked, and
// forgets it.
func (e *Engine) takeWoken(unit string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.woken[unit]
	delete(e.woken, unit)
	return w
}
