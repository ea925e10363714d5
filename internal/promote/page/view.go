package page

import (
	"cmp"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// card is one stage as the page shows it.
type card struct {
	Name      string
	Image     string
	Upstream  string
	Current   string
	Candidate string
	Decision  string
	Reason    string
	// SoakUntil is when the upstream's soak ends (zero when the stage does not soak now).
	SoakUntil       time.Time
	WaitingApproval bool
	Paused          bool
	Verified        string
	Verification    *stage.VerificationRun
	Sync            *stage.SyncStatus
	Hydration       *hydration
	Commit          string // short SHA of the last promotion or rollback
	CommitURL       string // the commit on its forge, "" when the repository maps to none
	LastPromotion   time.Time
	Problems        []string // what fails the stage (bad annotations included)
	Warnings        []string
	Skipped         []string // tags better than the candidate, not signed as the stage requires: "2.1.0: no signature by …"
	Owed            []string // automatic actions owed and not done yet (an automatic rollback Git refused)
	PullRequest     *prLink  // the pull request the stage waits on (pull-request mode)
	CanAct          bool     // the viewer may act (no token needed, or logged in)

	// Group is, for a member of a release group, the group it moves with: its actions go
	// to the group unless the viewer chooses the member alone.
	Group string
	// Members are, for a release group, its members' cards: its card shows them as rows,
	// and they appear nowhere else on the pipeline.
	Members []card
	// Origin is where the stage was configured (the grouping of ?group-by=).
	Origin stage.Origin
	// Search and States are what the filter looks at (filter.go), in the card's
	// data-q and data-state for the script; for a group, its members' too.
	Search string
	States []stagefilter.State
	// The freight pages of the values the card shows ("" when there is nothing to show).
	CurrentURL, CandidateURL, VerifiedURL string
}

// hydration is where Argo CD's Source Hydrator stands for the stage's Application: the dry
// commit it rendered (or failed to) and the hydrated commit it pushed to the sync branch.
type hydration struct {
	Phase      string
	Dry        string // short SHAs
	Hydrated   string
	SyncBranch string
	Message    string // why it failed, redacted
}

func hydrationOf(s *stage.SyncStatus) *hydration {
	if s == nil || s.Hydration == nil {
		return nil
	}
	h := s.Hydration
	v := &hydration{Phase: h.Phase, Dry: short(h.DryCommit), Hydrated: short(h.HydratedCommit), SyncBranch: h.SyncBranch, Message: gitwrite.Redact(h.Message)}
	if v.Hydrated == "" && h.Phase != "Hydrated" {
		// Hydrating or failed: the last hydrated commit is still what the branch holds.
		v.Hydrated = short(h.LastHydratedCommit)
	}
	return v
}

// prLink is a pull request as a card shows it: "#12" linking to the forge, then where it
// stands and who must act.
type prLink struct {
	Number int
	URL    string // "" unless an http(s) URL: the forge's answer is not trusted as a link
	State  string // open, merged, closed: the class that colours it
	Text   string // the rest of stage.PullRequest.Summary, after "#12 "
}

func pullRequestLink(pr stage.PullRequest) *prLink {
	l := &prLink{Number: pr.Number, State: cmp.Or(string(pr.State), "open")}
	if u, err := url.Parse(pr.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		u.User = nil
		l.URL = u.String()
	}
	// Redacted like the reason: the forge's last error may quote a URL with credentials.
	l.Text = gitwrite.Redact(pr.Summary())
	if pr.Number > 0 {
		l.Text = strings.TrimPrefix(l.Text, fmt.Sprintf("#%d ", pr.Number))
	}
	return l
}

// lane is one group of stages joined by upstream links (in practice one image), in
// columns by their distance from the lane's first stage.
type lane struct {
	Name    string
	Columns [][]card
}

// Specs is implemented by a Controller that can say how its stages are configured
// (*stage.Engine): the page uses it for soak countdowns and links to commits.
type Specs interface {
	Specs() []stage.Spec
}

// cards turns statuses into cards, in the statuses' order.
func cards(sts []stage.Status, specs []stage.Spec, canAct bool) []card {
	byName := make(map[string]stage.Spec, len(specs))
	for _, s := range specs {
		byName[s.Name] = s
	}
	status := make(map[string]stage.Status, len(sts))
	for _, st := range sts {
		status[st.Name] = st
	}
	out := make([]card, 0, len(sts))
	for _, st := range sts {
		c := card{
			Name: st.Name, Image: st.Image, Upstream: st.Upstream, Current: st.CurrentTag,
			Decision: string(st.Decision), Reason: st.Reason, Paused: st.Paused,
			Verification: st.Verification, Sync: st.Sync, Hydration: hydrationOf(st.Sync), Commit: short(st.LastCommit),
			LastPromotion: st.LastPromotion, CanAct: canAct,
			WaitingApproval: slices.Contains(stagefilter.StatesOf(st), stagefilter.WaitingApproval),
		}
		spec := byName[st.Name]
		if st.Candidate != nil {
			c.Candidate = st.Candidate.Value(spec.Strategy)
		}
		if st.VerifiedFreight != nil {
			c.Verified = st.VerifiedFreight.Value
		}
		// Redacted like the API's errors: a Git URL with credentials never reaches the page.
		c.Reason = gitwrite.Redact(c.Reason)
		if st.Error != "" {
			c.Problems = append(c.Problems, gitwrite.Redact(st.Error))
		}
		for _, w := range st.Warnings {
			c.Warnings = append(c.Warnings, gitwrite.Redact(w))
		}
		for _, sk := range st.Skipped {
			c.Skipped = append(c.Skipped, gitwrite.Redact(sk))
		}
		for _, o := range st.Owed {
			c.Owed = append(c.Owed, gitwrite.Redact(o.String()))
		}
		if st.PullRequest != nil {
			c.PullRequest = pullRequestLink(*st.PullRequest)
		}
		if st.LastCommit != "" {
			c.CommitURL = commitURL(spec.RepoURL, st.LastCommit)
		}
		c.Group, c.Origin = st.Group, cmp.Or(st.Origin, spec.Origin)
		c.Search, c.States = stagefilter.SearchText(st), stagefilter.StatesOf(st)
		c.CurrentURL, c.CandidateURL, c.VerifiedURL = freightURLs(st, c.Candidate, spec.Strategy)
		if up, ok := status[st.Upstream]; ok && spec.Soak > 0 && st.Decision == stage.DecisionWait &&
			strings.Contains(st.Reason, " soak, ") && up.VerifiedFreight != nil {
			c.SoakUntil = up.VerifiedFreight.VerifiedAt.Add(spec.Soak)
		}
		out = append(out, c)
	}
	return out
}

// units folds the members of each release group into its card (Members), in their
// group's order: the pipeline shows a group as one card, each member once, inside it. A
// group's card is found by its members' values and states too, and its origin is its
// first member's.
func units(cs []card) []card {
	groups := map[string]int{}
	for i, c := range cs {
		if c.Group == "" {
			groups[c.Name] = i
		}
	}
	members := map[string][]card{}
	for _, c := range cs {
		if _, ok := groups[c.Group]; ok && c.Group != "" {
			members[c.Group] = append(members[c.Group], c)
		}
	}
	out := make([]card, 0, len(cs))
	for _, c := range cs {
		if _, folded := groups[c.Group]; folded && c.Group != "" {
			continue
		}
		if ms := members[c.Name]; len(ms) > 0 {
			c.Members = ms
			c.Origin = ms[0].Origin
			for _, m := range ms {
				c.Search += " " + m.Search
				for _, s := range m.States {
					if !slices.Contains(c.States, s) {
						c.States = append(c.States, s)
					}
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// freightURLs link a stage's current, candidate and verified values to their freight
// pages: by the freight's id where the status knows it, else by image and value.
func freightURLs(st stage.Status, candidate, strategy string) (current, cand, verified string) {
	if st.Image == "" {
		return "", "", ""
	}
	if st.Candidate != nil && candidate != "" {
		cand = freightPath(st.Candidate.ID())
	}
	if v := st.VerifiedFreight; v != nil && v.FreightID != "" {
		verified = freightPath(v.FreightID)
	}
	switch {
	case st.CurrentTag == "":
	case st.VerifiedFreight != nil && st.VerifiedFreight.Value == st.CurrentTag && verified != "":
		current = verified
	case st.Candidate != nil && st.Candidate.Value(strategy) == st.CurrentTag:
		current = cand
	case st.Verification != nil && st.Verification.Value == st.CurrentTag && hexCommit.MatchString(st.Verification.Freight):
		current = freightPath(st.Verification.Freight)
	default:
		current = "/freight/find?" + url.Values{"image": {st.Image}, "value": {st.CurrentTag}}.Encode()
	}
	return current, cand, verified
}

func freightPath(id string) string { return "/freight/" + url.PathEscape(id) }

// lanes groups cards by the upstream graph: a stage joins its upstream's lane, one column
// further right. Lanes keep the order of their first stage; a stage whose upstream is
// unknown (misconfigured) starts a lane of its own.
func lanes(cs []card) []lane {
	laneOf := map[string]int{}
	depth := map[string]int{}
	var out []lane
	// Statuses come upstreams first, so one walk places every stage after its upstream.
	for _, c := range cs {
		li, ok := laneOf[c.Upstream]
		d := depth[c.Upstream] + 1
		if c.Upstream == "" || !ok {
			li, d = len(out), 0
			out = append(out, lane{Name: laneName(c)})
		}
		laneOf[c.Name], depth[c.Name] = li, d
		l := &out[li]
		for len(l.Columns) <= d {
			l.Columns = append(l.Columns, nil)
		}
		l.Columns[d] = append(l.Columns[d], c)
	}
	return out
}

// laneName is the image's repository path without the registry (team/frontend), or the
// stage's name when it has no image (a stage whose annotations are wrong).
func laneName(c card) string {
	if len(c.Members) > 0 {
		// develop/shop: the group's name after its environment, as its commits say it.
		return "release group " + c.Name[strings.LastIndex(c.Name, "/")+1:]
	}
	if c.Image == "" {
		return c.Name
	}
	if i := strings.Index(c.Image, "/"); i > 0 && strings.ContainsAny(c.Image[:i], ".:") {
		return c.Image[i+1:]
	}
	return c.Image
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

var (
	hexCommit = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	// scpLike is Git's user@host:path form.
	scpLike = regexp.MustCompile(`^(?:[^@/]+@)?([^:/]+):(.+)$`)
)

// commitURL is the web page of commit in the repository at repoURL when the host is a
// forge whose commit URLs are known (GitHub, GitLab, Gitea/Forgejo/Codeberg, Bitbucket);
// "" otherwise. User names and passwords in repoURL never reach the link.
func commitURL(repoURL, commit string) string {
	if !hexCommit.MatchString(commit) {
		return ""
	}
	var host, path string
	if u, err := url.Parse(repoURL); err == nil && u.Host != "" {
		host, path = u.Hostname(), u.Path
	} else if m := scpLike.FindStringSubmatch(repoURL); m != nil && !strings.Contains(repoURL, "://") {
		host, path = m[1], m[2]
	} else {
		return ""
	}
	host = strings.ToLower(host)
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	if path == "" || strings.Contains(path, "..") {
		return ""
	}
	base := "https://" + host + "/" + path
	switch {
	case host == "github.com" || strings.HasPrefix(host, "github."):
		return base + "/commit/" + commit
	case host == "gitlab.com" || strings.HasPrefix(host, "gitlab."):
		return base + "/-/commit/" + commit
	case host == "codeberg.org" || strings.HasPrefix(host, "gitea.") || strings.HasPrefix(host, "forgejo."):
		return base + "/commit/" + commit
	case host == "bitbucket.org":
		return base + "/commits/" + commit
	}
	return ""
}
