package page

import (
	"cmp"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
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
			WaitingApproval: st.Decision == stage.DecisionWait && strings.HasPrefix(st.Reason, "waiting for approval of "),
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
		if up, ok := status[st.Upstream]; ok && spec.Soak > 0 && st.Decision == stage.DecisionWait &&
			strings.Contains(st.Reason, " soak, ") && up.VerifiedFreight != nil {
			c.SoakUntil = up.VerifiedFreight.VerifiedAt.Add(spec.Soak)
		}
		out = append(out, c)
	}
	return out
}

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
