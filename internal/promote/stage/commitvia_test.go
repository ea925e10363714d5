package stage

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

// apiFixture serves seed twice from one Git server: team/gitops.git, which the GitHub API
// server (gitHubAPI) commits into, and gitops.git for the same promotions in git mode, to
// compare with byte for byte. The registry is shared, so both see the same digests.
type apiFixture struct {
	*fixture
	api    *gitHubAPI
	gitURL string // gitops.git: the git-mode twin
	gitDir string
}

func newAPIFixture(t *testing.T, seed string) *apiFixture {
	t.Helper()
	srv := gitserver.StartTB(t)
	ctx := context.Background()
	bare, err := srv.NewBareRepo(ctx, "team/gitops.git", seed)
	if err != nil {
		t.Fatal(err)
	}
	twin, err := srv.NewBareRepo(ctx, "gitops.git", seed)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	f := &fixture{
		t: t, git: srv, url: srv.URL("team/gitops.git"), bare: bare,
		reg: newTestRegistry(t), dataDir: dataDir, clock: newFakeClock(),
		store: NewFileStore(dataDir + "/state.json"),
	}
	return &apiFixture{fixture: f, api: newGitHubAPI(t, bare), gitURL: srv.URL("gitops.git"), gitDir: twin}
}

// viaAPI makes s commit through GitHub's API (the server's URL as the forge API).
func (f *apiFixture) viaAPI(s Spec) Spec {
	s.CommitVia = CommitViaGitHubAPI
	s.PullRequest.Forge, s.PullRequest.ForgeAPIURL = "github", f.api.srv.URL
	return s
}

// forgeOption gives the engine the real GitHub client on the API server.
func (f *apiFixture) forgeOption() Option {
	gh := f.api.forge(f.url)
	return WithForges(func(ctx context.Context, s Spec) (forge.Forge, error) { return gh, nil })
}

// twin runs specs in git mode on the twin repository with an engine of its own, and returns
// the twin's head.
func (f *apiFixture) twin(t *testing.T, specs []Spec, opts ...Option) string {
	t.Helper()
	for i := range specs {
		specs[i].RepoURL, specs[i].CommitVia = f.gitURL, ""
		specs[i].PullRequest.Forge, specs[i].PullRequest.ForgeAPIURL = "", ""
	}
	dir := t.TempDir()
	base := []Option{WithGit(dir+"/git", gitwrite.WithAuthor("kropipe", "kropipe@example.com"), gitwrite.WithLogger(quiet())), WithStore(NewFileStore(dir + "/state.json"))}
	reconcile(t, f.engine(specs, append(base, opts...)...))
	return git(t, f.gitDir, "rev-parse", "main")
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// message is a commit's message byte for byte (cat-file, not log, which reformats).
func message(t *testing.T, dir, rev string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), dir, "cat-file", "commit", rev)
	if err != nil {
		t.Fatal(err)
	}
	_, msg, _ := strings.Cut(out, "\n\n")
	return msg
}

func TestCommitViaGitHubAPI_PushModeCommitsOnceThroughTheAPIAsGitWould(t *testing.T) {
	f := newAPIFixture(t, "testdata/seed")
	f.reg.push(t, "team/frontend", "1.2.2")
	spec := f.viaAPI(f.spec("develop-frontend", "develop/frontend", "frontend"))
	seed := git(t, f.bare, "rev-parse", "main")
	e := f.engine([]Spec{spec}, f.forgeOption())

	reconcile(t, e)
	head := git(t, f.bare, "rev-parse", "main")
	if parent := git(t, f.bare, "rev-parse", "main^"); parent != seed {
		t.Fatalf("main is %s on %s, want one commit on the seed %s", head, parent, seed)
	}
	if who := git(t, f.bare, "log", "-1", "--format=%an <%ae> / %cn", "main"); who != "kropipe[bot] <12345+kropipe[bot]@users.noreply.github.com> / GitHub" {
		t.Fatalf("the commit was made by %q, not by GitHub for the App", who)
	}
	if n := f.git.Pushes("team/gitops.git"); n != 0 {
		t.Fatalf("%d pushes; github-api must not push", n)
	}
	if n := f.api.count("POST git/commits"); n != 1 {
		t.Fatalf("%d API commits, want 1", n)
	}

	// The same promotion in git mode: the same message (trailers and all) and file bytes.
	twin := f.twin(t, []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	if got, want := message(t, f.bare, head), message(t, f.gitDir, twin); got != want {
		t.Fatalf("API commit message:\n%q\ngit mode writes:\n%q", got, want)
	}
	const file = "develop/frontend/instance.yaml"
	if got, want := git(t, f.bare, "show", "main:"+file), git(t, f.gitDir, "show", "main:"+file); got != want {
		t.Fatalf("file through the API:\n%s\ngit mode:\n%s", got, want)
	}
	if diff := git(t, f.bare, "diff", "--numstat", seed, head); diff != "1\t1\t"+file {
		t.Fatalf("the commit changed %q, want one line of %s", diff, file)
	}

	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionPromote || st.CurrentTag != "1.2.2" || st.LastCommit != head || st.VerifiedFreight == nil {
		t.Fatalf("status %+v", st)
	}
	// History and ancestry read the forge's commit from the clone.
	recs, err := e.History(context.Background(), "develop-frontend")
	if err != nil || len(recs) != 1 || recs[0].Commit != head || recs[0].Value != "1.2.2" {
		t.Fatalf("history %+v %v", recs, err)
	}
	reconcile(t, e)
	if n := f.api.count("POST git/commits"); n != 1 {
		t.Fatalf("a pass with nothing new made %d API commits", n)
	}
}

func TestCommitViaGitHubAPI_RollbackIsCommittedThroughTheAPIAsGitWould(t *testing.T) {
	f := newAPIFixture(t, "testdata/seed")
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	ctx := context.Background()
	rollBack := func(e *Engine) Outcome {
		t.Helper()
		reconcile(t, e)
		out, err := e.Rollback(ctx, "develop-frontend", "")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	e := f.engine([]Spec{f.viaAPI(f.spec("develop-frontend", "develop/frontend", "frontend"))}, f.forgeOption())
	out := rollBack(e)
	head := git(t, f.bare, "rev-parse", "main")
	if out.Old != "1.2.2" || out.New != "1.2.1" || out.Commit != head || git(t, f.bare, "log", "-1", "--format=%an", "main") != "kropipe[bot]" {
		t.Fatalf("rollback %+v, main %s", out, head)
	}
	if n := f.api.count("POST git/commits"); n != 2 || f.git.Pushes("team/gitops.git") != 0 {
		t.Fatalf("%d API commits, %d pushes; want the promotion and the rollback through the API", n, f.git.Pushes("team/gitops.git"))
	}
	// The rejection is read back from the forge's commit: a new engine (a restart) keeps 1.2.1.
	reconcile(t, f.engine([]Spec{f.viaAPI(f.spec("develop-frontend", "develop/frontend", "frontend"))}, f.forgeOption()))
	if got := git(t, f.bare, "rev-parse", "main"); got != head {
		t.Fatalf("the rejected 1.2.2 was promoted again: main %s", got)
	}

	dir := t.TempDir()
	twin := f.spec("develop-frontend", "develop/frontend", "frontend")
	twin.RepoURL = f.gitURL
	rollBack(f.engine([]Spec{twin}, WithGit(dir+"/git", gitwrite.WithAuthor("kropipe", "kropipe@example.com"), gitwrite.WithLogger(quiet())), WithStore(NewFileStore(dir+"/state.json"))))
	if got, want := message(t, f.bare, head), message(t, f.gitDir, "main"); got != want || !strings.Contains(got, "Kropipe-Rejected: 1.2.2") {
		t.Fatalf("API rollback message:\n%q\ngit mode writes:\n%q", got, want)
	}
}

func TestCommitViaGitHubAPI_MovedBranchIsBuiltAgainOnTheNewHead(t *testing.T) {
	f := newAPIFixture(t, "testdata/seed")
	f.reg.push(t, "team/frontend", "1.2.2")
	spec := f.viaAPI(f.spec("develop-frontend", "develop/frontend", "frontend"))
	e := f.engine([]Spec{spec}, f.forgeOption())
	var theirs string
	f.api.beforeRef = func() { // someone pushes between kropipe's fetch and the branch update
		theirs = commitFile(t, f.bare, "main", "NOTES.md", "by hand\n", "Someone else's commit\n")
	}

	reconcile(t, e)
	if theirs == "" {
		t.Fatal("the other writer never ran")
	}
	if got := git(t, f.bare, "rev-parse", "main^"); got != theirs {
		t.Fatalf("the promotion is on %s, want on the other writer's %s", got, theirs)
	}
	if got := git(t, f.bare, "show", "main:NOTES.md"); got != "by hand" {
		t.Fatalf("the other writer's file is %q", got)
	}
	if n := f.api.count("PATCH git/refs/heads"); n != 2 {
		t.Fatalf("%d branch updates, want a refused one and the one that landed", n)
	}
	if st := mustStatus(t, e, "develop-frontend"); st.Decision != DecisionPromote || st.LastCommit != git(t, f.bare, "rev-parse", "main") {
		t.Fatalf("status %+v", st)
	}
}

// gitHubPRForge is a pull-request forge whose pull requests are the engine tests' in-memory
// ones (gitForge, over the same bare repository) and whose commits are GitHub's API's.
type gitHubPRForge struct {
	*gitForge
	forge.FileCommitter
}

func (gitHubPRForge) Kind() forge.Kind { return forge.GitHub }

func TestCommitViaGitHubAPI_PullRequestBranchCreatedThenReplacedInPlaceWithALease(t *testing.T) {
	f := newAPIFixture(t, "testdata/seed")
	fg := newGitForge(f.fixture)
	both := gitHubPRForge{gitForge: fg, FileCommitter: f.api.forge(f.url).(forge.FileCommitter)}
	opt := WithForges(func(ctx context.Context, s Spec) (forge.Forge, error) { return both, nil })
	f.reg.push(t, "team/frontend", "1.2.2")
	spec := f.viaAPI(f.prSpec("develop-frontend", "develop/frontend", "frontend", MergeManual))
	main := git(t, f.bare, "rev-parse", "main")
	e := f.engine([]Spec{spec}, opt)
	const branch = "kropipe/develop-frontend"

	reconcile(t, e)
	first := f.branchHead(branch)
	if first == "" || git(t, f.bare, "rev-parse", branch+"^") != main || f.branchHead("main") != main {
		t.Fatalf("branch %s at %q, main %s: want one commit on main's head, main untouched", branch, first, f.branchHead("main"))
	}
	if f.api.count("POST git/refs") != 1 || f.git.Pushes("team/gitops.git") != 0 {
		t.Fatalf("the branch was not created through the API: %v, %d pushes", f.api.calls, f.git.Pushes("team/gitops.git"))
	}
	if who := git(t, f.bare, "log", "-1", "--format=%an", branch); who != "kropipe[bot]" {
		t.Fatalf("the proposal was made by %q", who)
	}
	twin := f.twin(t, []Spec{f.spec("develop-frontend", "develop/frontend", "frontend")})
	if got, want := message(t, f.bare, first), message(t, f.gitDir, twin); got != want {
		t.Fatalf("proposed message:\n%q\ngit mode writes:\n%q", got, want)
	}
	if pr := fg.pr(1); pr.HeadSHA != first || pr.Title != "Promote image from 1.2.1 to 1.2.2" || !strings.Contains(pr.Body, "Kropipe-Stage: develop-frontend") {
		t.Fatalf("pull request %+v", pr)
	}

	// Newer freight: the same branch, replaced in place on the lease, the same pull request.
	f.reg.push(t, "team/frontend", "1.2.3")
	f.clock.Step(time.Minute)
	reconcile(t, e)
	second := f.branchHead(branch)
	if second == first || git(t, f.bare, "rev-parse", branch+"^") != main || fg.count() != 1 {
		t.Fatalf("branch at %s (was %s), %d pull requests", second, first, fg.count())
	}
	if got := git(t, f.bare, "show", branch+":develop/frontend/instance.yaml"); !strings.Contains(got, `tag: "1.2.3"`) {
		t.Fatalf("the proposal holds\n%s", got)
	}
	if n := f.api.count("PATCH git/refs/heads"); n != 1 {
		t.Fatalf("%d forced branch updates, want 1", n)
	}

	// Someone else's commit on the branch: refused, nothing overwritten.
	theirs := commitFile(t, f.bare, branch, "NOTES.md", "review notes\n", "A reviewer's commit\n")
	f.reg.push(t, "team/frontend", "1.2.4")
	f.clock.Step(time.Minute)
	err := e.Reconcile(context.Background())
	if f.branchHead(branch) != theirs {
		t.Fatalf("the branch was overwritten: %s, want the reviewer's %s", f.branchHead(branch), theirs)
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionFailed || !strings.Contains(st.Error, "kropipe will not overwrite it") || err == nil {
		t.Fatalf("status %+v, err %v", st, err)
	}
	if n := f.api.count("PATCH git/refs/heads"); n != 1 {
		t.Fatalf("%d branch updates, want none after the reviewer's commit", n)
	}
}

func TestCommitViaGitHubAPI_ReleaseGroupSetIsOneAPICommit(t *testing.T) {
	f := newAPIFixture(t, "testdata/groupseed")
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "2.1.0")
	specs := func(via bool) []Spec {
		fe, be := f.spec("develop-frontend", "develop/frontend", "frontend"), f.spec("develop-backend", "develop/backend", "backend")
		be.Constraint = "^2"
		if via {
			fe, be = f.viaAPI(fe), f.viaAPI(be)
		}
		return []Spec{fe, be}
	}
	group := WithGroups(GroupSpec{Name: "develop/shop", Members: []string{"develop-frontend", "develop-backend"}})
	seed := git(t, f.bare, "rev-parse", "main")
	e := f.engine(specs(true), group, f.forgeOption())

	reconcile(t, e)
	if n := f.api.count("POST git/commits"); n != 1 || git(t, f.bare, "rev-parse", "main^") != seed {
		t.Fatalf("%d API commits, want the set in one", n)
	}
	if got, want := f.changedFiles("main"), []string{"develop/backend/instance.yaml", "develop/frontend/instance.yaml"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the commit changed %q, want %q", got, want)
	}
	twin := f.twin(t, specs(false), group)
	if got, want := message(t, f.bare, "main"), message(t, f.gitDir, twin); got != want {
		t.Fatalf("API set message:\n%q\ngit mode writes:\n%q", got, want)
	}
	if st := mustStatus(t, e, "develop/shop"); st.Decision != DecisionPromote || st.LastCommit != git(t, f.bare, "rev-parse", "main") {
		t.Fatalf("develop/shop %+v", st)
	}
}

func TestCommitViaGitHubAPI_ForgeThatIsNotGitHubIsANamedErrorAndNothingIsWritten(t *testing.T) {
	f := newAPIFixture(t, "testdata/seed")
	f.reg.push(t, "team/frontend", "1.2.2")

	// Configuration: a forge that is not GitHub is refused by Validate.
	s := f.spec("develop-frontend", "develop/frontend", "frontend")
	s.CommitVia, s.PullRequest.Forge = CommitViaGitHubAPI, "gitea"
	var fe *FieldError
	if err := s.Validate(); !errors.As(err, &fe) || fe.Field != "commitVia" || !strings.Contains(err.Error(), "forge is gitea") {
		t.Fatalf("Validate = %v, want a commitVia error naming the forge", err)
	}
	s.PullRequest.Forge = ""
	if err := s.Validate(); !errors.As(err, &fe) || fe.Field != "commitVia" || !strings.Contains(err.Error(), "does not show GitHub") {
		t.Fatalf("Validate = %v, want a commitVia error: the URL does not show GitHub", err)
	}

	// At run time: a forge that cannot commit through an API fails the stage, named.
	main := git(t, f.bare, "rev-parse", "main")
	fg := newGitForge(f.fixture) // Gitea-like, no CommitFiles
	e := f.engine([]Spec{f.viaAPI(f.spec("develop-frontend", "develop/frontend", "frontend"))}, fg.option())
	err := e.Reconcile(context.Background())
	st := mustStatus(t, e, "develop-frontend")
	if err == nil || st.Decision != DecisionFailed || !strings.Contains(st.Error, "commitVia") || !strings.Contains(st.Error, "github-api") || !strings.Contains(st.Error, "gitea") {
		t.Fatalf("status %+v, err %v", st, err)
	}
	if git(t, f.bare, "rev-parse", "main") != main || f.api.count("POST git/commits") != 0 || f.git.Pushes("team/gitops.git") != 0 {
		t.Fatal("something was written")
	}
}
