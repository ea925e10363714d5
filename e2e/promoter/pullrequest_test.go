package promoter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kropipe/kropipe/e2e/stack"
)

// Pull-request mode end to end: the freshly built promoter in local mode (`run --once` passes,
// or `run`) against a real Gitea (e2e/stack's, built from its module) and the stack's registry.
// Gitea's API is the witness: what a user sees on the forge is what these tests check.

// prStage is the one stage every test here promotes.
const prStage = "develop-frontend"

// prFile is the stage's file in the repository.
const prFile = "develop/frontend/instance.yaml"

var (
	prGiteaOnce sync.Once
	prGitea     *stack.Gitea
	prHuman     *stack.GiteaUser // alice: the human who merges, closes, reviews
	prGiteaErr  error
)

// sharedGitea starts one Gitea for the package's pull-request tests, as one more component of
// the stack (stopped with it); each test works in a repository of its own.
func sharedGitea(t *testing.T) (*stack.Gitea, *stack.GiteaUser) {
	t.Helper()
	prGiteaOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		if prGitea, prGiteaErr = st.StartGitea(ctx); prGiteaErr != nil {
			return
		}
		prHuman, prGiteaErr = prGitea.CreateUser(ctx, "alice")
	})
	if prGiteaErr != nil {
		t.Fatal(prGiteaErr)
	}
	return prGitea, prHuman
}

// prOptions are what a test changes in its stage and run.
type prOptions struct {
	merge       string // "auto" or "manual"
	forgeAPIURL string // default: Gitea's own URL
	signingKey  string // git.signing.keyFile
	// gitTokenOnly leaves KROPIPE_FORGE_TOKEN unset: the forge takes the Git token.
	gitTokenOnly bool
}

// prRig is one test's repository on Gitea (owned by the administrator kropipe acts as, alice
// a collaborator with write access), its image in the stack's registry, and the promoter.yaml
// and data folder of its promoter.
type prRig struct {
	t       *testing.T
	ctx     context.Context
	g       *stack.Gitea
	admin   *stack.GiteaUser
	human   *stack.GiteaUser
	name    string // the repository's and the image's name
	repo    string // owner/name on Gitea
	cfgPath string
	dataDir string
	env     []string
	seed    string // main's first commit
	passes  int
}

func newPRRig(t *testing.T, ctx context.Context, name string, o prOptions) *prRig {
	t.Helper()
	g, human := sharedGitea(t)
	r := &prRig{t: t, ctx: ctx, g: g, admin: g.Admin, human: human, name: name, dataDir: t.TempDir()}
	instance, err := os.ReadFile(filepath.Join(repoRoot, "examples", "gitops", prFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(instance), `tag: "1.2.1"`) {
		t.Fatalf("examples/gitops/%s no longer holds tag 1.2.1", prFile)
	}
	if r.repo, err = r.admin.CreateRepo(ctx, name, map[string]string{prFile: string(instance), "README.md": "GitOps\n"}); err != nil {
		t.Fatal(err)
	}
	if r.seed, err = r.admin.BranchSHA(ctx, r.repo, "main"); err != nil {
		t.Fatal(err)
	}
	if err := r.admin.AddCollaborator(ctx, r.repo, human.Login, "write"); err != nil {
		t.Fatal(err)
	}
	pushImage(t, st.RegistryAddr, name+"/frontend", "1.2.1")
	if o.merge == "" {
		o.merge = "manual"
	}
	if o.forgeAPIURL == "" {
		o.forgeAPIURL = g.URL
	}
	signing := ""
	if o.signingKey != "" {
		signing = fmt.Sprintf("  signing: {keyFile: %s}\n", o.signingKey)
	}
	cfg := fmt.Sprintf(`git:
  url: %s
  branch: main
  author: {name: kropipe, email: kropipe@example.com}
%sregistries:
  - host: %s
    insecure: true
stages:
  - name: %s
    image: %s/%s/frontend
    strategy: semver
    constraint: "^1.2"
    file: %s
    write: pull-request
    pullRequest:
      merge: %s
      forge: gitea
      forgeAPIURL: %s
      labels: [promotion]
      reviewers: [%s]
`, g.RepoURL(r.repo), signing, st.RegistryAddr, prStage, st.RegistryAddr, name, prFile, o.merge, o.forgeAPIURL, human.Login)
	r.cfgPath = filepath.Join(t.TempDir(), "promoter.yaml")
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Git over HTTP with the administrator's token (Gitea takes a token as basic auth's
	// password); the forge's API with the same token, unless the test proves the fallback.
	r.env = []string{"KROPIPE_GIT_USERNAME=" + r.admin.Login, "KROPIPE_GIT_TOKEN=" + r.admin.Token}
	if !o.gitTokenOnly {
		r.env = append(r.env, "KROPIPE_FORGE_TOKEN="+r.admin.Token)
	}
	return r
}

// push makes tag of the rig's image exist, as CI would.
func (r *prRig) push(tag string) { pushImage(r.t, st.RegistryAddr, r.name+"/frontend", tag) }

// promoter runs the promoter binary with args (--config and --data-dir added) and the rig's
// credentials, plus env.
func (r *prRig) promoter(env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(r.ctx, st.Binaries.Promoter, append(args, "--config", r.cfgPath, "--data-dir", r.dataDir)...)
	cmd.Env = append(append(os.Environ(), r.env...), env...)
	return cmd
}

// once runs one `promoter run --once` pass and returns its output; a pass that fails (exit
// status) fails the test.
func (r *prRig) once() string {
	r.t.Helper()
	out, err := r.onceEnv(nil)
	if err != nil {
		r.t.Fatalf("promoter run --once (pass %d): %v\n%s", r.passes, err, out)
	}
	return out
}

func (r *prRig) onceEnv(env []string) (string, error) {
	r.passes++
	out, err := r.promoter(env, "run", "--once").CombinedOutput()
	return string(out), err
}

// prStageStatus is what `promoter status -o json` says of a stage (the fields tested).
type prStageStatus struct {
	Decision        string `json:"decision"`
	Reason          string `json:"reason"`
	Error           string `json:"error"`
	CurrentTag      string `json:"currentTag"`
	VerifiedFreight *struct {
		Value  string `json:"value"`
		Commit string `json:"commit"`
	} `json:"verifiedFreight"`
	PullRequest *struct {
		Number  int    `json:"number"`
		URL     string `json:"url"`
		State   string `json:"state"`
		Value   string `json:"value"`
		Action  string `json:"action"`
		Checks  string `json:"checks"`
		Commit  string `json:"commit"`
		LastErr string `json:"lastError"`
	} `json:"pullRequest"`
}

func (s prStageStatus) String() string {
	v, pr := "none", "none"
	if s.VerifiedFreight != nil {
		v = fmt.Sprintf("%s at %.8s", s.VerifiedFreight.Value, s.VerifiedFreight.Commit)
	}
	if p := s.PullRequest; p != nil {
		pr = fmt.Sprintf("#%d %s %s checks %q: %s", p.Number, p.State, p.Value, p.Checks, p.Action)
	}
	return fmt.Sprintf("%s at %q (%s; error %q), verified %s, pull request %s", s.Decision, s.CurrentTag, s.Reason, s.Error, v, pr)
}

// status is `promoter status develop-frontend -o json` on the repository itself.
func (r *prRig) status() prStageStatus {
	r.t.Helper()
	out, err := r.promoter(nil, "status", prStage, "-o", "json").Output()
	if err != nil {
		r.t.Fatalf("promoter status: %v\n%s", err, out)
	}
	var sts []prStageStatus
	if err := json.Unmarshal(out, &sts); err != nil || len(sts) != 1 {
		r.t.Fatalf("promoter status -o json: %v\n%s", err, out)
	}
	return sts[0]
}

// passUntil runs `run --once` passes until cond holds of Gitea's and the promoter's view
// (at most max passes); it returns how many it took.
func (r *prRig) passUntil(what string, max int, cond func() (bool, string)) int {
	r.t.Helper()
	var last, out string
	for i := 1; i <= max; i++ {
		out = r.once()
		ok, why := cond()
		if ok {
			return i
		}
		last = why
		time.Sleep(200 * time.Millisecond) // Gitea checks a request's mergeability from a queue
	}
	r.t.Fatalf("after %d passes: not %s (%s); last pass:\n%s", max, what, last, out)
	return 0
}

// pulls is every pull request of the repository, any state.
func (r *prRig) pulls() []stack.GiteaPullRequest {
	r.t.Helper()
	prs, err := r.admin.PullRequests(r.ctx, r.repo, "all")
	if err != nil {
		r.t.Fatal(err)
	}
	return prs
}

// onlyPull is the repository's one pull request; any other number fails the test.
func (r *prRig) onlyPull() stack.GiteaPullRequest {
	r.t.Helper()
	prs := r.pulls()
	if len(prs) != 1 {
		r.t.Fatalf("%d pull requests in %s, want exactly 1: %s", len(prs), r.repo, describePulls(prs))
	}
	return prs[0]
}

func describePulls(prs []stack.GiteaPullRequest) string {
	var b strings.Builder
	for _, p := range prs {
		fmt.Fprintf(&b, "\n  #%d %s merged=%v %q head %s@%.8s", p.Number, p.State, p.Merged, p.Title, p.Head.Ref, p.Head.SHA)
	}
	return b.String()
}

// pull reads pull request n from Gitea.
func (r *prRig) pull(n int) *stack.GiteaPullRequest {
	r.t.Helper()
	pr, err := r.admin.PullRequest(r.ctx, r.repo, n)
	if err != nil {
		r.t.Fatal(err)
	}
	return pr
}

func (r *prRig) main() string {
	r.t.Helper()
	sha, err := r.admin.BranchSHA(r.ctx, r.repo, "main")
	if err != nil {
		r.t.Fatal(err)
	}
	return sha
}

// clone is a fresh clone of the repository from Gitea (anonymous: the repository is public).
func (r *prRig) clone() string {
	r.t.Helper()
	dir := filepath.Join(r.t.TempDir(), "clone")
	if out, err := exec.CommandContext(r.ctx, "git", "clone", "--quiet", r.g.RepoURL(r.repo), dir).CombinedOutput(); err != nil {
		r.t.Fatalf("git clone %s: %v\n%s", r.repo, err, out)
	}
	return dir
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// mainSinceSeed is main's history after the seed, one line per commit: "<sha> <parents> <subject>".
func (r *prRig) mainSinceSeed() []string {
	r.t.Helper()
	dir := r.clone()
	out := gitIn(r.t, dir, "log", "--format=%H %P | %s", r.seed+"..origin/main")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// fileOnMain is the stage's file as main holds it now.
func (r *prRig) fileOnMain() string {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.clone(), prFile))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// branchGone reports whether the stage's pull request branch no longer exists on Gitea.
func (r *prRig) branchGone() bool {
	_, err := r.admin.BranchSHA(r.ctx, r.repo, "kropipe/"+prStage)
	var ge *stack.GiteaError
	return errors.As(err, &ge) && ge.Status == http.StatusNotFound
}

func timed(t *testing.T) func() {
	begin := time.Now()
	return func() { t.Logf("wall time %s", time.Since(begin).Round(10*time.Millisecond)) }
}

// A new tag becomes one pull request from kropipe/<stage>; main is untouched while its check
// is pending; once the check passes kropipe merges it, the stage moves to the merge, and
// kropipe deletes its branch.
func TestPullRequest_AutoMergeOnceChecksPass(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-auto", prOptions{merge: "auto"})
	if err := r.admin.ProtectBranch(ctx, r.repo, "main", "ci"); err != nil {
		t.Fatal(err)
	}
	r.once()
	if prs := r.pulls(); len(prs) != 0 {
		t.Fatalf("a pull request with nothing new in the registry: %s", describePulls(prs))
	}
	r.push("1.2.2")
	r.once()
	pr := r.onlyPull()
	if pr.Title != "Promote image from 1.2.1 to 1.2.2" || pr.Head.Ref != "kropipe/"+prStage || pr.Base.Ref != "main" || pr.State != "open" {
		t.Fatalf("pull request #%d: %q from %s into %s, %s; want \"Promote image from 1.2.1 to 1.2.2\" from kropipe/%s into main, open",
			pr.Number, pr.Title, pr.Head.Ref, pr.Base.Ref, pr.State, prStage)
	}
	if !slices.ContainsFunc(pr.Labels, func(l struct {
		Name string `json:"name"`
	}) bool {
		return l.Name == "promotion"
	}) {
		t.Errorf("pull request #%d labels %v, want promotion", pr.Number, pr.Labels)
	}
	if len(pr.RequestedReviewers) != 1 || pr.RequestedReviewers[0].Login != r.human.Login {
		t.Errorf("pull request #%d asks %v for a review, want %s", pr.Number, pr.RequestedReviewers, r.human.Login)
	}
	if !strings.Contains(pr.Body, "Proposed by kropipe") {
		t.Errorf("pull request body lacks the stage's status:\n%s", pr.Body)
	}
	// The CI of the repository reports on kropipe's commit: pending keeps it open.
	if err := r.admin.SetCommitStatus(ctx, r.repo, pr.Head.SHA, "ci", "pending"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r.once()
	}
	if got := r.onlyPull(); got.State != "open" || got.Merged {
		t.Fatalf("pull request #%d merged with its required check pending: %s", got.Number, describePulls([]stack.GiteaPullRequest{got}))
	}
	if head := r.main(); head != r.seed {
		t.Fatalf("main moved to %s before the pull request was merged (seed %s)", head, r.seed)
	}
	s := r.status()
	if s.PullRequest == nil || s.PullRequest.Number != pr.Number || !strings.Contains(s.Reason+s.PullRequest.Action, "checks") {
		t.Errorf("status while the check is pending: %s; want #%d waiting for checks", s, pr.Number)
	}

	if err := r.admin.SetCommitStatus(ctx, r.repo, pr.Head.SHA, "ci", "success"); err != nil {
		t.Fatal(err)
	}
	var merged *stack.GiteaPullRequest
	n := r.passUntil("merged by kropipe, its branch deleted and the stage up to date at 1.2.2", 8, func() (bool, string) {
		merged = r.pull(pr.Number)
		s := r.status()
		return merged.Merged && r.branchGone() && s.Decision == "up-to-date" && s.CurrentTag == "1.2.2",
			fmt.Sprintf("merged %v, branch gone %v; stage %s", merged.Merged, r.branchGone(), s)
	})
	t.Logf("check passed → merged, branch deleted and the stage up to date in %d passes", n)
	if merged.MergedBy == nil || merged.MergedBy.Login != r.admin.Login {
		t.Errorf("pull request #%d merged by %v, want kropipe's account %s", merged.Number, merged.MergedBy, r.admin.Login)
	}
	if merged.MergeCommitSHA != r.main() {
		t.Errorf("main at %s, want the merge commit %s", r.main(), merged.MergeCommitSHA)
	}
	if ok, err := r.admin.IsAncestor(ctx, r.repo, pr.Head.SHA, "main"); err != nil || !ok {
		t.Errorf("kropipe's commit %s is not in main's history (%v)", pr.Head.SHA, err)
	}
	if f := r.fileOnMain(); !strings.Contains(f, `tag: "1.2.2"`) || !strings.Contains(f, "# bumped by the promoter") {
		t.Errorf("%s on main after the merge:\n%s", prFile, f)
	}
	if log := r.mainSinceSeed(); len(log) != 2 {
		t.Errorf("main since the seed: %q, want the merge and kropipe's commit", log)
	}
	// The promotion commit is kropipe's (its trailers), reached from main through the merge.
	if s := r.status(); s.VerifiedFreight == nil || s.VerifiedFreight.Value != "1.2.2" || s.VerifiedFreight.Commit != pr.Head.SHA {
		t.Errorf("stage after the merge: %s, want 1.2.2 verified at kropipe's commit %.8s", s, pr.Head.SHA)
	}
	out, err := r.promoter(nil, "history", prStage).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("PR #%d", pr.Number)) || !strings.Contains(string(out), "1.2.2") {
		t.Errorf("promoter history (%v):\n%s\nwant the promotion to 1.2.2 linked to PR #%d", err, out, pr.Number)
	}
	// More passes: nothing new proposed, nothing written.
	r.once()
	if prs := r.pulls(); len(prs) != 1 {
		t.Errorf("pull requests after another pass: %s", describePulls(prs))
	}
}

// merge: manual waits for a human: kropipe never merges; once alice merged through Gitea, the
// next pass moves the stage to the merge commit. The forge's API takes the Git token here
// (no KROPIPE_FORGE_TOKEN), as local mode documents.
func TestPullRequest_HumanMergeMovesTheStage(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-manual", prOptions{merge: "manual", gitTokenOnly: true})
	r.push("1.2.2")
	r.once()
	pr := r.onlyPull()
	for range 2 {
		r.once()
	}
	if got := r.pull(pr.Number); got.Merged || got.State != "open" {
		t.Fatalf("merge: manual, yet pull request #%d is %s (merged %v) without a human", pr.Number, got.State, got.Merged)
	}
	if head := r.main(); head != r.seed {
		t.Fatalf("main moved to %s before anyone merged", head)
	}
	if err := r.human.MergePullRequest(ctx, r.repo, pr.Number, "merge", ""); err != nil {
		t.Fatal(err)
	}
	merged := r.pull(pr.Number)
	n := r.passUntil("the stage up to date at 1.2.2, verified", 5, func() (bool, string) {
		s := r.status()
		return s.Decision == "up-to-date" && s.CurrentTag == "1.2.2" && s.VerifiedFreight != nil &&
			s.VerifiedFreight.Value == "1.2.2" && s.VerifiedFreight.Commit == pr.Head.SHA, s.String()
	})
	t.Logf("human merge → stage up to date and verified in %d passes", n)
	if merged.MergedBy == nil || merged.MergedBy.Login != r.human.Login {
		t.Errorf("pull request #%d merged by %v, want %s", merged.Number, merged.MergedBy, r.human.Login)
	}
	if !r.branchGone() {
		t.Errorf("kropipe/%s still exists after the merge", prStage)
	}
	if log := r.mainSinceSeed(); len(log) != 2 || !strings.HasPrefix(log[0], merged.MergeCommitSHA) {
		t.Errorf("main since the seed: %q, want alice's merge %.8s and kropipe's commit", log, merged.MergeCommitSHA)
	}
}

// A newer tag while the pull request is open replaces the proposal in the same pull request:
// same number, new title, a new head commit built on main; never a second pull request.
func TestPullRequest_NewerTagUpdatesTheOpenPullRequest(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-newer", prOptions{merge: "manual"})
	r.push("1.2.2")
	r.once()
	first := r.onlyPull()
	r.push("1.2.3")
	r.once()
	now := r.onlyPull()
	if now.Number != first.Number || now.State != "open" || now.Title != "Promote image from 1.2.1 to 1.2.3" || now.Head.SHA == first.Head.SHA {
		t.Fatalf("after 1.2.3: %s\nwant #%d open, \"Promote image from 1.2.1 to 1.2.3\", a head other than %.8s",
			describePulls([]stack.GiteaPullRequest{now}), first.Number, first.Head.SHA)
	}
	if !strings.Contains(now.Body, "1.2.3") {
		t.Errorf("pull request #%d's body does not name 1.2.3:\n%s", now.Number, now.Body)
	}
	dir := r.clone()
	if parent := gitIn(t, dir, "rev-parse", now.Head.SHA+"^"); parent != r.seed {
		t.Errorf("the new proposal %.8s sits on %.8s, want main's head %.8s (one commit, not stacked on the old one)", now.Head.SHA, parent, r.seed)
	}
	if f := gitIn(t, dir, "show", now.Head.SHA+":"+prFile); !strings.Contains(f, `tag: "1.2.3"`) {
		t.Errorf("%s on the proposal:\n%s", prFile, f)
	}
	// Passes with nothing new propose nothing new.
	for range 2 {
		r.once()
	}
	if again := r.onlyPull(); again.Head.SHA != now.Head.SHA {
		t.Errorf("passes with nothing new moved the proposal from %.8s to %.8s", now.Head.SHA, again.Head.SHA)
	}
	if err := r.human.MergePullRequest(ctx, r.repo, now.Number, "merge", ""); err != nil {
		t.Fatal(err)
	}
	r.passUntil("the stage up to date at 1.2.3", 5, func() (bool, string) {
		s := r.status()
		return s.Decision == "up-to-date" && s.CurrentTag == "1.2.3", s.String()
	})
	r.once()
	r.onlyPull()
}

// A pull request a human closes unmerged refuses its freight for the stage: the stage holds
// naming who closed it, later passes open nothing, and only a newer tag gets a new pull request.
func TestPullRequest_ClosedUnmergedRefusesTheFreight(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-closed", prOptions{merge: "auto"})
	r.push("1.2.2")
	r.once()
	pr := r.onlyPull()
	if err := r.human.ClosePullRequest(ctx, r.repo, pr.Number, "not this one"); err != nil {
		t.Fatal(err)
	}
	var out string
	for range 4 {
		out = r.once()
	}
	got := r.onlyPull()
	if got.State != "closed" || got.Merged {
		t.Fatalf("after alice closed it and 4 passes: %s", describePulls([]stack.GiteaPullRequest{got}))
	}
	if head := r.main(); head != r.seed {
		t.Errorf("main moved to %s after the pull request was closed unmerged", head)
	}
	// The pass's own status table (run --once prints it).
	want := fmt.Sprintf("1.2.2 was refused: pull request #%d was closed unmerged by %s", pr.Number, r.human.Login)
	if row := stageRow(out); !strings.Contains(row, " hold ") || !strings.Contains(row, want) {
		var timeline []map[string]any
		_ = r.admin.API(ctx, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/timeline", r.repo, pr.Number), nil, &timeline)
		tl, _ := json.Marshal(timeline)
		t.Errorf("the 4th pass after the close says:\n%s\nwant hold: %s\nGitea's timeline of #%d: %s", out, want, pr.Number, tl)
	}
	r.push("1.2.3")
	r.once()
	prs := r.pulls()
	if len(prs) != 2 || prs[0].Number == pr.Number || prs[0].State != "open" || prs[0].Title != "Promote image from 1.2.1 to 1.2.3" {
		t.Fatalf("after 1.2.3: %s\nwant a new open pull request \"Promote image from 1.2.1 to 1.2.3\" beside the closed #%d", describePulls(prs), pr.Number)
	}
}

// Gitea's API answers 503 for a while (the fault proxy in front of it, Git still straight to
// Gitea): first before anything is pushed, then only when the pull request is opened, after
// the push. The promotion survives both and completes once the API is back, with one pull
// request.
func TestPullRequest_ForgeDownForAWhile_PromotionSurvives(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, _ := sharedGitea(t)
	proxy, err := stack.StartFaultProxy(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	r := newPRRig(t, ctx, "pr-503", prOptions{merge: "auto", forgeAPIURL: proxy.URL})
	proxy.Fail(http.StatusServiceUnavailable, stack.GiteaAPI)
	r.push("1.2.2")
	api := r.start(t, "promoter-pr-503", "--interval", "1s")

	api.waitStage("the forge's failure shown", func(s prStageStatus) bool {
		_, injected := proxy.Counts()
		return injected >= 2 && strings.Contains(s.Reason, "the forge failed")
	})
	if prs := r.pulls(); len(prs) != 0 {
		t.Fatalf("pull requests while the API was down: %s", describePulls(prs))
	}
	// The API answers again, but opening a pull request fails: the branch is pushed first.
	proxy.Fail(http.StatusServiceUnavailable, func(req *http.Request) bool {
		return stack.GiteaAPI(req) && req.Method == http.MethodPost
	})
	s := api.waitStage("the branch pushed and the opening retried", func(s prStageStatus) bool {
		_, err := r.admin.BranchSHA(ctx, r.repo, "kropipe/"+prStage)
		return err == nil && strings.Contains(s.Reason, "retrying at")
	})
	t.Logf("while opening fails: %s", s)
	if prs := r.pulls(); len(prs) != 0 {
		t.Fatalf("pull requests while opening failed: %s", describePulls(prs))
	}
	healed := time.Now()
	proxy.Heal()
	api.waitStage("up to date at 1.2.2 after the merge", func(s prStageStatus) bool {
		return s.Decision == "up-to-date" && s.CurrentTag == "1.2.2"
	})
	t.Logf("API healed → merged and up to date in %s", time.Since(healed).Round(10*time.Millisecond))
	pr := r.onlyPull()
	if !pr.Merged || pr.Title != "Promote image from 1.2.1 to 1.2.2" {
		t.Errorf("after healing: %s", describePulls([]stack.GiteaPullRequest{pr}))
	}
	passed, injected := proxy.Counts()
	t.Logf("fault proxy: %d requests failed with 503, %d passed", injected, passed)
	if log := r.mainSinceSeed(); len(log) != 2 {
		t.Errorf("main since the seed: %q, want the merge and kropipe's commit", log)
	}
}

// SIGKILL right after the branch was pushed, before the pull request was opened or anything
// recorded: the restarted promoter opens one pull request for it, merges once, and the stage
// moves.
func TestPullRequest_KilledAfterPush_OnePullRequestOneMerge(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-crash-push", prOptions{merge: "auto"})
	r.push("1.2.2")
	out, err := r.onceEnv([]string{"KROPIPE_CRASH_AT=after-push"})
	mustBeKilledAt(t, "after-push", out, err)
	if _, err := r.admin.BranchSHA(ctx, r.repo, "kropipe/"+prStage); err != nil {
		t.Fatalf("killed after the push, yet: %v", err)
	}
	if prs := r.pulls(); len(prs) != 0 {
		t.Fatalf("killed before opening it, yet: %s", describePulls(prs))
	}
	r.passUntil("merged once, the stage up to date at 1.2.2", 8, func() (bool, string) {
		s := r.status()
		return s.Decision == "up-to-date" && s.CurrentTag == "1.2.2" && r.branchGone(), s.String()
	})
	r.once()
	pr := r.onlyPull()
	if !pr.Merged {
		t.Errorf("the one pull request: %s", describePulls([]stack.GiteaPullRequest{pr}))
	}
	if log := r.mainSinceSeed(); len(log) != 2 || !strings.HasPrefix(log[0], pr.MergeCommitSHA) {
		t.Errorf("main since the seed: %q, want the merge %.8s and kropipe's commit", log, pr.MergeCommitSHA)
	}
}

// SIGKILL right after Gitea merged, before the promoter recorded it: the restarted promoter
// finds the merge, merges nothing again, and moves the stage.
func TestPullRequest_KilledAfterMerge_OneMerge(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-crash-merge", prOptions{merge: "auto"})
	r.push("1.2.2")
	r.once()
	pr := r.onlyPull()
	var out string
	var err error
	for i := 0; i < 8; i++ {
		if out, err = r.onceEnv([]string{"KROPIPE_CRASH_AT=after-merge"}); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // Gitea still checking whether it can be merged
	}
	mustBeKilledAt(t, "after-merge", out, err)
	merged := r.pull(pr.Number)
	if !merged.Merged {
		t.Fatalf("killed after the merge, yet: %s", describePulls([]stack.GiteaPullRequest{*merged}))
	}
	r.passUntil("the stage up to date at 1.2.2, verified", 5, func() (bool, string) {
		s := r.status()
		return s.Decision == "up-to-date" && s.CurrentTag == "1.2.2" && r.branchGone() && s.VerifiedFreight != nil &&
			s.VerifiedFreight.Value == "1.2.2" && s.VerifiedFreight.Commit == pr.Head.SHA, s.String()
	})
	r.once()
	r.onlyPull()
	if log := r.mainSinceSeed(); len(log) != 2 || !strings.HasPrefix(log[0], merged.MergeCommitSHA) || r.main() != merged.MergeCommitSHA {
		t.Errorf("main since the seed: %q, want only the merge %.8s and kropipe's commit", log, merged.MergeCommitSHA)
	}
}

// mustBeKilledAt checks that a promoter run ended by its crash point's SIGKILL.
func mustBeKilledAt(t *testing.T, point, out string, err error) {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("promoter ended with %v, want SIGKILL at %s:\n%s", err, point, out)
	}
	if !strings.Contains(out, "crashpoint: killing the process at "+point) {
		t.Fatalf("promoter killed without the crash point's line:\n%s", out)
	}
}

// The commit kropipe proposes is signed with the configured SSH key: real `git verify-commit`
// (gpg.format=ssh, an allowed-signers file) passes on a clone from Gitea.
func TestPullRequest_ProposedCommitIsSigned(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "signing")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kropipe", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(keyDir, "allowed_signers")
	if err := os.WriteFile(allowed, []byte(`kropipe@example.com namespaces="git" `+string(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newPRRig(t, ctx, "pr-signed", prOptions{merge: "manual", signingKey: key})
	r.push("1.2.2")
	r.once()
	pr := r.onlyPull()
	dir := r.clone()
	verify := exec.Command("git", "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", "-v", pr.Head.SHA)
	verify.Dir = dir
	verify.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+keyDir)
	out, err := verify.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `Good "git" signature for kropipe@example.com`) {
		t.Fatalf("git verify-commit %.8s (the proposal of #%d): %v\n%s", pr.Head.SHA, pr.Number, err, out)
	}
	// The same check refuses an unsigned commit: it proves something.
	seed := exec.Command("git", "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", r.seed)
	seed.Dir, seed.Env = dir, verify.Env
	if out, err := seed.CombinedOutput(); err == nil {
		t.Fatalf("git verify-commit passed on the unsigned seed commit:\n%s", out)
	}
}

// With an hour between polls, a forge webhook (Gitea's pull_request event to POST
// /webhook/forge, signed with the webhook secret) makes a human's merge move the stage within
// seconds, not at the next 30 s check of the open pull request.
func TestPullRequest_ForgeWebhookMovesTheStageAtOnce(t *testing.T) {
	defer timed(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newPRRig(t, ctx, "pr-webhook", prOptions{merge: "manual"})
	ports, err := stack.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	secret := randomSecret()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.admin.CreateWebhook(ctx, r.repo, "http://"+hookAddr+"/webhook/forge", secret, "pull_request"); err != nil {
		t.Fatal(err)
	}
	r.push("1.2.2")
	api := r.start(t, "promoter-pr-webhook", "--interval", "1h", "--webhook-addr", hookAddr, "--webhook-secret-file", secretFile)
	api.waitStage("waiting on its pull request", func(s prStageStatus) bool {
		return s.PullRequest != nil && s.PullRequest.Number > 0
	})
	pr := r.onlyPull()
	merged := time.Now()
	if err := r.human.MergePullRequest(ctx, r.repo, pr.Number, "merge", ""); err != nil {
		t.Fatal(err)
	}
	s := api.waitStage("up to date at 1.2.2", func(s prStageStatus) bool {
		return s.Decision == "up-to-date" && s.CurrentTag == "1.2.2"
	})
	took := time.Since(merged)
	t.Logf("human merge → stage up to date in %s (poll interval 1h, pull request check every 30s): %s", took.Round(10*time.Millisecond), s)
	if took > 15*time.Second {
		t.Errorf("the stage moved %s after the merge: the webhook did not wake it", took)
	}
	if !r.branchGone() {
		t.Errorf("kropipe/%s still exists after the merge", prStage)
	}
}

// runningPromoter is a `promoter run` of a rig, reached through its API.
type runningPromoter struct {
	t    *testing.T
	addr string
	p    *stack.Process
}

// start runs `promoter run` on the rig with args (and an API on a free port) until the test ends.
func (r *prRig) start(t *testing.T, name string, args ...string) *runningPromoter {
	t.Helper()
	ports, err := stack.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	p, err := st.Run(name, st.Binaries.Promoter, append([]string{"run", "--config", r.cfgPath, "--data-dir", r.dataDir, "--addr", addr}, args...), r.env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s's log, last lines:\n%s", name, p.Tail(40))
		}
	})
	return &runningPromoter{t: t, addr: addr, p: p}
}

// waitStage polls the running promoter's API for the stage until cond holds (a minute at most).
func (rp *runningPromoter) waitStage(what string, cond func(prStageStatus) bool) prStageStatus {
	rp.t.Helper()
	deadline := time.Now().Add(time.Minute)
	var s prStageStatus
	for {
		body := httpGet("http://" + rp.addr + "/api/v1/stages/" + prStage)
		s = prStageStatus{}
		if json.Unmarshal([]byte(body), &s) == nil && cond(s) {
			return s
		}
		if exited, err := rp.p.Exited(); exited || time.Now().After(deadline) {
			rp.t.Fatalf("stage %s never %s (exited %v: %v); last: %s\n%s", prStage, what, exited, err, s, rp.p.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// stageRow is the stage's line of a status table (run --once prints one after its pass).
func stageRow(table string) string {
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, prStage+" ") {
			return l
		}
	}
	return ""
}
