package stage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// gitForge is a forge for the engine's unit tests: pull requests kept in memory, merged into
// the fixture's real bare repository with real git (merge-tree, commit-tree, update-ref), so
// what the engine reads back after a merge is what a forge would have made. The real forge,
// Gitea built from its module, runs in e2e.
type gitForge struct {
	t    testing.TB
	bare string

	mu     sync.Mutex
	prs    []*forge.PullRequest
	fail   error            // every call fails with it while set
	failOp map[string]error // calls of one kind ("create", "get", ...) fail with it
	calls  map[string]int
	checks forge.Checks
	// landing holds merges already on the base branch that the forge does not report yet
	// (Gitea pushes the merge, then marks the request merged): by number.
	landing map[int]forge.PullRequest
}

func newGitForge(f *fixture) *gitForge {
	return &gitForge{t: f.t, bare: f.bare, calls: map[string]int{}, checks: forge.ChecksNone}
}

func (g *gitForge) Kind() forge.Kind { return forge.Gitea }

func (g *gitForge) git(args ...string) string {
	g.t.Helper()
	out, err := gitserver.GitOutput(context.Background(), g.bare, args...)
	if err != nil {
		g.t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(out)
}

func (g *gitForge) call(op string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls[op]++
	if err, ok := g.failOp[op]; ok {
		return err
	}
	return g.fail
}

// failOn makes calls of kind op fail with err (nil: succeed again).
func (g *gitForge) failOn(op string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failOp == nil {
		g.failOp = map[string]error{}
	}
	if err == nil {
		delete(g.failOp, op)
		return
	}
	g.failOp[op] = err
}

// refresh reads the head branch's commit, as a forge shows it.
func (g *gitForge) refresh(pr *forge.PullRequest) {
	if pr.State == forge.Open {
		if sha, err := gitserver.GitOutput(context.Background(), g.bare, "rev-parse", "refs/heads/"+pr.Head); err == nil {
			pr.HeadSHA = strings.TrimSpace(sha)
		}
		yes := true
		pr.Mergeable, pr.Checks = &yes, g.checks
	}
}

func (g *gitForge) Find(ctx context.Context, head, base string) (*forge.PullRequest, error) {
	if err := g.call("find"); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, pr := range g.prs {
		if pr.State == forge.Open && pr.Head == head && pr.Base == base {
			g.refresh(pr)
			c := *pr
			return &c, nil
		}
	}
	return nil, nil
}

func (g *gitForge) Get(ctx context.Context, number int) (*forge.PullRequest, error) {
	if err := g.call("get"); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	pr := g.prs[number-1]
	g.refresh(pr)
	c := *pr
	return &c, nil
}

func (g *gitForge) Create(ctx context.Context, n forge.NewPullRequest) (*forge.PullRequest, error) {
	if err := g.call("create"); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, pr := range g.prs {
		if pr.State == forge.Open && pr.Head == n.Head {
			g.t.Errorf("a second pull request from %s was asked for while #%d is open", n.Head, pr.Number)
			c := *pr
			return &c, nil
		}
	}
	pr := &forge.PullRequest{Number: len(g.prs) + 1, State: forge.Open, Title: n.Title, Body: n.Body, Head: n.Head, Base: n.Base}
	pr.URL = fmt.Sprintf("http://forge.example/team/gitops/pulls/%d", pr.Number)
	g.prs = append(g.prs, pr)
	g.refresh(pr)
	c := *pr
	return &c, nil
}

func (g *gitForge) Update(ctx context.Context, number int, title, body string) error {
	if err := g.call("update"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prs[number-1].Title, g.prs[number-1].Body = title, body
	return nil
}

func (g *gitForge) Merge(ctx context.Context, number int, sha string, method forge.MergeMethod, title, message string) (*forge.PullRequest, error) {
	if err := g.call("merge"); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	pr := g.prs[number-1]
	if pr.State == forge.Merged {
		c := *pr
		return &c, nil
	}
	g.refresh(pr)
	if pr.HeadSHA != sha {
		return nil, &forge.Error{Forge: forge.Gitea, Op: "merging", Status: 409, Err: forge.ErrHeadMoved}
	}
	g.merge(pr, method, title, message, "kropipe")
	c := *pr
	return &c, nil
}

// merge lands pr on its base with real git, as a forge does.
func (g *gitForge) merge(pr *forge.PullRequest, method forge.MergeMethod, title, message, by string) {
	base := g.git("rev-parse", "refs/heads/"+pr.Base)
	tree := g.git("merge-tree", "--write-tree", base, pr.HeadSHA)
	var commit string
	switch method {
	case forge.MethodSquash:
		commit = g.git("commit-tree", tree, "-p", base, "-m", strings.TrimSpace(title+"\n\n"+message))
	case forge.MethodRebase:
		// The proposal is one commit: re-made on the base with its own message.
		msg := g.git("log", "-1", "--format=%B", pr.HeadSHA)
		commit = g.git("commit-tree", tree, "-p", base, "-m", msg)
	default:
		if title == "" {
			title = fmt.Sprintf("Merge pull request #%d from %s", pr.Number, pr.Head)
		}
		commit = g.git("commit-tree", tree, "-p", base, "-p", pr.HeadSHA, "-m", title)
	}
	g.git("update-ref", "refs/heads/"+pr.Base, commit, base)
	pr.State, pr.MergeCommit, pr.MergedBy = forge.Merged, commit, by
}

func (g *gitForge) Close(ctx context.Context, number int, comment string) error {
	if err := g.call("close"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if merged, ok := g.landing[number]; ok {
		// What Gitea answers once the merge it was making is recorded.
		*g.prs[number-1] = merged
		delete(g.landing, number)
		return &forge.Error{Forge: forge.Gitea, Op: fmt.Sprintf("closing pull request #%d", number), Status: 412, Msg: "cannot change state of this pull request, it was already merged"}
	}
	if pr := g.prs[number-1]; pr.State == forge.Open {
		pr.State, pr.ClosedBy = forge.Closed, "kropipe"
		pr.Body += "\n\ncomment: " + comment
	}
	return nil
}

func (g *gitForge) Comment(ctx context.Context, number int, body string) error {
	return g.call("comment")
}

// humanMerges merges pull request n as a person would.
func (g *gitForge) humanMerges(n int, method forge.MergeMethod) {
	g.mu.Lock()
	defer g.mu.Unlock()
	pr := g.prs[n-1]
	g.refresh(pr)
	g.merge(pr, method, "", "", "alice")
}

// humanMergeLands merges pull request n as a person would, but the forge goes on reporting
// it open until landed(n) or a Close: the merge is on the base branch, the request not yet
// marked merged (Gitea's window between the two).
func (g *gitForge) humanMergeLands(n int, method forge.MergeMethod) {
	g.mu.Lock()
	defer g.mu.Unlock()
	pr := g.prs[n-1]
	g.refresh(pr)
	merged := *pr
	g.merge(&merged, method, "", "", "alice")
	if g.landing == nil {
		g.landing = map[int]forge.PullRequest{}
	}
	g.landing[n] = merged
}

// landed makes the forge report the merge humanMergeLands made.
func (g *gitForge) landed(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if merged, ok := g.landing[n]; ok {
		*g.prs[n-1] = merged
		delete(g.landing, n)
	}
}

// humanCloses closes pull request n unmerged.
func (g *gitForge) humanCloses(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prs[n-1].State, g.prs[n-1].ClosedBy = forge.Closed, "alice"
}

func (g *gitForge) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.prs)
}

func (g *gitForge) pr(n int) forge.PullRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refresh(g.prs[n-1])
	return *g.prs[n-1]
}

func (g *gitForge) setFail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = err
}

// option makes the engine use this forge for every stage.
func (g *gitForge) option() Option {
	return WithForges(func(ctx context.Context, s Spec) (forge.Forge, error) { return g, nil })
}
