package promoter_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// Pull-request mode in the cluster, on the real stack: a GitOps repository on a real Gitea
// whose main branch requires the check "ci", Argo CD (and kropipe) reading it with an Argo CD
// repository Secret holding the Gitea account's login and token. prc-develop-frontend is
// annotated kropipe.io/write: pull-request with merge: auto, prc-develop-backend with merge:
// manual. A new frontend tag opens a pull request from kropipe/prc-develop-frontend and nothing
// else happens (main untouched, no Application asked to sync) until CI passes. Meanwhile a
// teammate's change (the Service's port) lands on main. kropipe merges the pull request and asks
// Argo CD to sync prc-develop-frontend, and only it, to the merge commit — not to the proposal
// on the pull request's branch, which lacks the teammate's change — so the cluster runs the new
// tag and the new port, and the stage is verified with no pull request left on its status. A new backend tag opens a second pull request that
// kropipe leaves for a human: alice merges it through Gitea's API and prc-develop-backend alone
// is synced to that merge commit. The Events on the Applications tell the story; the
// promoter's log shows no "forbidden" and never the token.
func TestController_PullRequestMergedThenOnlyItsApplicationSyncsTheMergeCommit(t *testing.T) {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c := newPRClusterPipeline(t, ctx)
	seed := c.seed()
	if err := st.EnsureNamespace(ctx, prcNamespace); err != nil {
		t.Fatal(err)
	}
	for _, app := range c.apps {
		c.syncByHand(app, seed)
	}
	for _, app := range c.apps {
		c.waitApp(app, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	}
	before := map[string]*v1alpha1.Application{}
	for _, app := range c.apps {
		before[app] = c.app(app)
	}
	c.waitDeployment(prcNamespace, "frontend", c.image("frontend", "1.2.1"))
	c.waitDeployment(prcNamespace, "backend", c.image("backend", "2.0.0"))

	a := c.startPromoter("promoter-prc-a")
	c.waitLeader("promoter-prc-a")
	for app, tag := range map[string]string{prcFrontend: "1.2.1", prcBackend: "2.0.0"} {
		c.waitStage(a, app, "verified "+tag+" (running before kropipe started)", func(s stageStatus) bool {
			return s.Decision == "up-to-date" && s.VerifiedFreight != nil && s.VerifiedFreight.Value == tag
		})
	}
	started := time.Now()

	// CI pushes frontend:1.2.2: a pull request, and nothing else.
	pushImage(t, st.RegistryAddr, "prc/frontend", "1.2.2")
	pr := c.waitPullRequest("kropipe/"+prcFrontend, "Promote image from 1.2.1 to 1.2.2")
	opened := time.Now()
	// CI reports on the proposal as it would: pending first.
	if err := c.gitea.Admin.SetCommitStatus(ctx, c.repo, pr.Head.SHA, "ci", "pending"); err != nil {
		t.Fatal(err)
	}
	s := c.waitPRStage(a, prcFrontend, "waiting on its pull request", func(s prcStageStatus) bool {
		return s.Decision == "wait" && s.PullRequest != nil && s.PullRequest.Number == pr.Number && s.PullRequest.State == "open"
	})
	if !strings.Contains(s.PullRequest.URL, fmt.Sprintf("/%s/pulls/%d", c.repo, pr.Number)) || s.PullRequest.HeadSHA != pr.Head.SHA {
		t.Errorf("stage %s shows pull request %+v, want #%d at %s with its page's URL", prcFrontend, *s.PullRequest, pr.Number, pr.Head.SHA)
	}
	// kropipe tries on every pass: three more passes while CI is pending.
	c.waitPRStage(a, prcFrontend, "three passes with the pull request open", func(x prcStageStatus) bool {
		return x.CheckedAt.After(s.CheckedAt.Add(3 * prcInterval))
	})
	if head := c.branchSHA("main"); head != seed {
		t.Fatalf("main moved to %s while the pull request waited for CI: kropipe wrote the branch it must only propose to", head)
	}
	if got, err := c.gitea.Admin.PullRequest(ctx, c.repo, pr.Number); err != nil || got.State != "open" || got.Merged {
		t.Fatalf("pull request #%d before CI passed: %+v (%v), want open and unmerged", pr.Number, got, err)
	}
	c.wantUntouched(before, c.apps...)
	t.Logf("tag → pull request #%d opened in %s", pr.Number, opened.Sub(started).Round(10*time.Millisecond))

	// Meanwhile a teammate's change to the frontend lands on main: the frontend is to serve
	// on port 8080. The merge holds both; the pull request's own commit only the tag.
	instance := c.files["develop/frontend/instance.yaml"]
	if !strings.Contains(instance, "port: 80\n") {
		t.Fatalf("examples/gitops/develop/frontend/instance.yaml: no service port 80 line:\n%s", instance)
	}
	teammate, err := c.gitea.Admin.PushFiles(ctx, c.repo, "main", "", map[string]string{
		"develop/frontend/instance.yaml": strings.Replace(instance, "port: 80\n", "port: 8080\n", 1),
	}, "Serve the frontend on port 8080")
	if err != nil {
		t.Fatal(err)
	}

	// CI passes: kropipe merges and syncs the merge commit, only in prc-develop-frontend.
	passed := time.Now()
	if err := c.gitea.Admin.SetCommitStatus(ctx, c.repo, pr.Head.SHA, "ci", "success"); err != nil {
		t.Fatal(err)
	}
	merged := c.waitMerged(pr.Number)
	if merged.MergedBy == nil || merged.MergedBy.Login != c.gitea.Admin.Login {
		t.Errorf("pull request #%d merged by %+v, want kropipe's account %s", pr.Number, merged.MergedBy, c.gitea.Admin.Login)
	}
	mergeCommit := merged.MergeCommitSHA
	if head := c.branchSHA("main"); head != mergeCommit {
		t.Fatalf("main at %s after the merge, want the merge commit %s", head, mergeCommit)
	}
	if parents := c.parents(mergeCommit); len(parents) != 2 || parents[0] != teammate || parents[1] != pr.Head.SHA {
		t.Fatalf("merge commit %s has parents %v, want main's %s (the teammate's) and the proposal %s", mergeCommit, parents, teammate, pr.Head.SHA)
	}
	c.waitApp(prcFrontend, "Synced and Healthy at the merge commit, synced by kropipe to it", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(mergeCommit)(app) && syncedBy(app, "kropipe", mergeCommit)
	})
	synced := time.Now()
	c.waitDeployment(prcNamespace, "frontend", c.image("frontend", "1.2.2"))
	// What main holds after the merge runs: the new tag and the teammate's port.
	if svc, err := st.Kube.CoreV1().Services(prcNamespace).Get(ctx, "frontend", metav1.GetOptions{}); err != nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("Service %s/frontend after the merge: %v %+v, want port 8080 from main", prcNamespace, err, svc.Spec.Ports)
	}
	v := c.waitPRStage(a, prcFrontend, "verified 1.2.2 with no pull request left", func(s prcStageStatus) bool {
		return s.Decision == "up-to-date" && s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2" && s.PullRequest == nil
	})
	t.Logf("CI passed → merged in %s, %s Synced and Healthy at the merge commit %s after CI, verified %s after it",
		c.mergedAt(merged).Sub(passed).Round(time.Second), prcFrontend, synced.Sub(passed).Round(10*time.Millisecond), v.VerifiedFreight.VerifiedAt.Sub(passed).Round(10*time.Millisecond))
	if op := c.app(prcFrontend).Status.OperationState; op.Operation.Sync.Revision != mergeCommit {
		t.Errorf("%s's operation synced %s, want the merge commit %s", prcFrontend, op.Operation.Sync.Revision, mergeCommit)
	}
	c.wantUntouched(before, prcBackend)
	c.waitDeployment(prcNamespace, "backend", c.image("backend", "2.0.0"))
	if _, err := c.gitea.Admin.BranchSHA(ctx, c.repo, "kropipe/"+prcFrontend); err == nil {
		t.Errorf("branch kropipe/%s is still there after its pull request merged", prcFrontend)
	}
	frontendSynced := c.app(prcFrontend)

	// A backend tag: kropipe proposes and leaves the merge to a human.
	pushImage(t, st.RegistryAddr, "prc/backend", "2.1.0")
	bpr := c.waitPullRequest("kropipe/"+prcBackend, "Promote image from 2.0.0 to 2.1.0")
	if bpr.Number == pr.Number {
		t.Fatalf("the backend's promotion reused pull request #%d", pr.Number)
	}
	if err := c.gitea.Admin.SetCommitStatus(ctx, c.repo, bpr.Head.SHA, "ci", "success"); err != nil {
		t.Fatal(err)
	}
	bs := c.waitPRStage(a, prcBackend, "waiting for a human to merge its pull request", func(s prcStageStatus) bool {
		return s.Decision == "wait" && s.PullRequest != nil && s.PullRequest.Number == bpr.Number && s.PullRequest.Checks == "passed" &&
			strings.Contains(s.PullRequest.Action, "human")
	})
	c.waitPRStage(a, prcBackend, "three passes with the pull request ready", func(x prcStageStatus) bool {
		return x.CheckedAt.After(bs.CheckedAt.Add(3 * prcInterval))
	})
	if got, err := c.gitea.Admin.PullRequest(ctx, c.repo, bpr.Number); err != nil || got.State != "open" {
		t.Fatalf("pull request #%d with merge: manual: %+v (%v), want it left open for a human", bpr.Number, got, err)
	}
	if head := c.branchSHA("main"); head != mergeCommit {
		t.Fatalf("main moved to %s while the backend's pull request waited for a human", head)
	}
	c.wantUntouched(before, prcBackend)
	if err := c.alice.MergePullRequest(ctx, c.repo, bpr.Number, "merge", ""); err != nil {
		t.Fatal(err)
	}
	aliceMerged := time.Now()
	bmerged := c.waitMerged(bpr.Number)
	if bmerged.MergedBy == nil || bmerged.MergedBy.Login != "alice" {
		t.Errorf("pull request #%d merged by %+v, want alice", bpr.Number, bmerged.MergedBy)
	}
	c.waitApp(prcBackend, "Synced and Healthy at alice's merge commit, synced by kropipe to it", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(bmerged.MergeCommitSHA)(app) && syncedBy(app, "kropipe", bmerged.MergeCommitSHA)
	})
	c.waitDeployment(prcNamespace, "backend", c.image("backend", "2.1.0"))
	bv := c.waitPRStage(a, prcBackend, "verified 2.1.0 with no pull request left", func(s prcStageStatus) bool {
		return s.Decision == "up-to-date" && s.VerifiedFreight != nil && s.VerifiedFreight.Value == "2.1.0" && s.PullRequest == nil
	})
	t.Logf("alice merged #%d → %s verified %s after", bpr.Number, prcBackend, bv.VerifiedFreight.VerifiedAt.Sub(aliceMerged).Round(10*time.Millisecond))
	// The frontend, already verified, was not asked again.
	if now := c.app(prcFrontend); now.Operation != nil || !sameOperation(frontendSynced, now) {
		t.Errorf("%s got another operation for the backend's merge: %s", prcFrontend, stack.DescribeApplication(now))
	}
	c.waitDeployment(prcNamespace, "frontend", c.image("frontend", "1.2.2"))

	// Two pull requests in all, both merged; main holds the seed, two proposals, two merges.
	all, err := c.gitea.Admin.PullRequests(ctx, c.repo, "all")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Errorf("pull requests: %+v, want the frontend's and the backend's", all)
	}

	// kubectl get events: the pull request's life on each Application.
	c.wantEvent(prcFrontend, "PullRequestOpened", fmt.Sprintf("#%d", pr.Number))
	c.wantEvent(prcFrontend, "PullRequestMerged", fmt.Sprintf("#%d %s merged by %s", pr.Number, merged.HTMLURL, c.gitea.Admin.Login))
	c.wantEvent(prcBackend, "PullRequestOpened", fmt.Sprintf("#%d", bpr.Number))
	c.wantEvent(prcBackend, "PullRequestMerged", fmt.Sprintf("#%d %s merged by alice", bpr.Number, bmerged.HTMLURL))

	// The promoter's log: its RBAC was enough, and the token never shows.
	logs, err := os.ReadFile(a.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ToLower(logs), []byte("forbidden")) {
		t.Errorf("the promoter's log says forbidden:\n%s", prcGrepLines(logs, "forbidden"))
	}
	for what, secret := range map[string]string{"token": c.gitea.Admin.Token, "password": c.gitea.Admin.Password} {
		if bytes.Contains(logs, []byte(secret)) {
			t.Errorf("the promoter's log contains the Gitea account's %s", what)
		}
	}
	if _, body := c.get(a, "/api/v1/stages"); strings.Contains(body, c.gitea.Admin.Token) {
		t.Error("GET /api/v1/stages contains the Gitea token")
	}
	t.Logf("test wall time %s (Gitea up in %s)", time.Since(begin).Round(100*time.Millisecond), c.gitea.StartTime.Round(10*time.Millisecond))
}

// The test's names, apart from the other controller tests' in the same stack.
const (
	prcNamespace = "prc-develop"
	prcFrontend  = "prc-develop-frontend"
	prcBackend   = "prc-develop-backend"
	prcInterval  = 3 * time.Second
)

// prcPipeline is TestPipeline's machinery on a Gitea repository of its own.
type prcPipeline struct {
	*pipeline
	gitea *stack.Gitea
	alice *stack.GiteaUser
	repo  string            // owner/name on Gitea
	files map[string]string // main's seed: path → content
}

func newPRClusterPipeline(t *testing.T, ctx context.Context) *prcPipeline {
	p := &pipeline{t: t, ctx: ctx, apps: []string{prcFrontend, prcBackend}}
	c := &prcPipeline{pipeline: p, gitea: stack.StartGitea(t)}
	p.installPromoterRBAC()
	// Registered before the replicas start, so it runs after they stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	var err error
	if c.alice, err = c.gitea.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	return c
}

// seed creates the repository on Gitea (main: examples/gitops's RGDs and develop instances on
// images under prc/ in the stack's registry, protected, the check "ci" required, alice a
// writer), the Argo CD repository Secret with the Gitea account's token, the tags the
// instances name and the two Applications; it returns main's seed commit.
func (c *prcPipeline) seed() string {
	t := c.t
	examples := filepath.Join(repoRoot, "examples", "gitops")
	files := map[string]string{}
	rgds, err := os.ReadDir(filepath.Join(examples, "rgds"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rgds {
		b, err := os.ReadFile(filepath.Join(examples, "rgds", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files["rgds/"+e.Name()] = string(b)
	}
	for svc, tag := range map[string]string{"frontend": "1.2.1", "backend": "2.0.0"} {
		path := "develop/" + svc + "/instance.yaml"
		b, err := os.ReadFile(filepath.Join(examples, path))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "registry.example.com/team/", st.RegistryAddr+"/prc/")
		if !tagLine.MatchString(s) {
			t.Fatalf("examples/gitops/%s: no deployment tag line", path)
		}
		files[path] = tagLine.ReplaceAllString(s, `${1}"`+tag+`"`)
	}
	c.files = files
	admin := c.gitea.Admin
	if c.repo, err = admin.CreateRepo(c.ctx, "prc-gitops", files); err != nil {
		t.Fatal(err)
	}
	if err := admin.AddCollaborator(c.ctx, c.repo, c.alice.Login, "write"); err != nil {
		t.Fatal(err)
	}
	if err := admin.ProtectBranch(c.ctx, c.repo, "main", "ci"); err != nil {
		t.Fatal(err)
	}
	seed := c.branchSHA("main")
	// Argo CD's repository Secret: Argo CD reads with it, kropipe pushes and calls the forge's
	// API with it.
	secret := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "repo-prc-gitops", Namespace: stack.ArgoCDNamespace,
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "repository"}},
		StringData: map[string]string{"type": "git", "url": c.gitea.RepoURL(c.repo), "username": admin.Login, "password": admin.Token},
	}
	c.apply(secret)
	t.Cleanup(func() {
		_ = st.Kube.CoreV1().Secrets(stack.ArgoCDNamespace).Delete(context.Background(), secret.Name, metav1.DeleteOptions{})
	})
	for _, img := range []struct{ repo, tag string }{{"prc/frontend", "1.2.1"}, {"prc/backend", "2.0.0"}} {
		pushImage(t, st.RegistryAddr, img.repo, img.tag)
	}
	c.createApp(prcFrontend, "frontend", "^1.2", "auto")
	c.createApp(prcBackend, "backend", "^2", "manual")
	return seed
}

// createApp creates Application name for develop/<service> in pull-request mode with merge.
func (c *prcPipeline) createApp(name, service, constraint, merge string) {
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: stack.ArgoCDNamespace, Annotations: map[string]string{
			"argocd.argoproj.io/manifest-generate-paths": ".;/rgds",
			"kropipe.io/image":                           st.RegistryAddr + "/prc/" + service,
			"kropipe.io/strategy":                        "semver",
			"kropipe.io/constraint":                      constraint,
			"kropipe.io/auto-promote":                    "true",
			"kropipe.io/interval":                        prcInterval.String(),
			"kropipe.io/write":                           "pull-request",
			"kropipe.io/merge":                           merge,
			"kropipe.io/forge":                           "gitea",
			"kropipe.io/forge-api-url":                   c.gitea.URL + "/api/v1",
		}},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL: c.gitea.RepoURL(c.repo), Path: "develop/" + service, TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{{Name: "rgd-paths", String_: ptr.To("rgds")}}},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: prcNamespace},
			SyncPolicy:  &v1alpha1.SyncPolicy{SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"}},
		},
	}
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Create(c.ctx, app, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create Application %s: %v", name, err)
	}
}

func (c *prcPipeline) image(service, tag string) string {
	return st.RegistryAddr + "/prc/" + service + ":" + tag
}

func (c *prcPipeline) branchSHA(branch string) string {
	sha, err := c.gitea.Admin.BranchSHA(c.ctx, c.repo, branch)
	if err != nil {
		c.t.Fatal(err)
	}
	return sha
}

// parents are commit's parents in order, as Gitea's API gives them.
func (c *prcPipeline) parents(commit string) []string {
	var got struct {
		Parents []struct {
			SHA string `json:"sha"`
		} `json:"parents"`
	}
	if err := c.gitea.Admin.API(c.ctx, http.MethodGet, "/repos/"+c.repo+"/git/commits/"+commit, nil, &got); err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, p := range got.Parents {
		out = append(out, p.SHA)
	}
	return out
}

// waitPullRequest waits for the open pull request from head into main titled title.
func (c *prcPipeline) waitPullRequest(head, title string) stack.GiteaPullRequest {
	var pr stack.GiteaPullRequest
	c.poll(fmt.Sprintf("a pull request %q from %s", title, head), syncTimeout, func() (bool, string) {
		prs, err := c.gitea.Admin.PullRequests(c.ctx, c.repo, "open")
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, p := range prs {
			if p.Head.Ref == head && p.Base.Ref == "main" && p.Title == title {
				pr = p
				return true, ""
			}
			seen = append(seen, fmt.Sprintf("#%d %s → %s %q", p.Number, p.Head.Ref, p.Base.Ref, p.Title))
		}
		return false, "open: " + strings.Join(seen, "; ")
	})
	return pr
}

// waitMerged waits until pull request n is merged and returns it.
func (c *prcPipeline) waitMerged(n int) *stack.GiteaPullRequest {
	var pr *stack.GiteaPullRequest
	c.poll(fmt.Sprintf("pull request #%d merged", n), syncTimeout, func() (bool, string) {
		var err error
		if pr, err = c.gitea.Admin.PullRequest(c.ctx, c.repo, n); err != nil {
			return false, err.Error()
		}
		return pr.Merged && pr.MergeCommitSHA != "", fmt.Sprintf("state %s, merged %v", pr.State, pr.Merged)
	})
	return pr
}

// mergedAt is when Gitea recorded the merge.
func (c *prcPipeline) mergedAt(pr *stack.GiteaPullRequest) time.Time {
	var got struct {
		MergedAt time.Time `json:"merged_at"`
	}
	if err := c.gitea.Admin.API(c.ctx, http.MethodGet, fmt.Sprintf("/repos/%s/pulls/%d", c.repo, pr.Number), nil, &got); err != nil {
		c.t.Fatal(err)
	}
	return got.MergedAt
}

// wantUntouched fails the test when one of apps got an operation since before.
func (c *prcPipeline) wantUntouched(before map[string]*v1alpha1.Application, apps ...string) {
	c.t.Helper()
	for _, app := range apps {
		if now := c.app(app); now.Operation != nil || !sameOperation(before[app], now) {
			c.t.Errorf("%s got an operation: %s", app, stack.DescribeApplication(now))
		}
	}
}

// prcStageStatus is the part of GET /api/v1/stages/{name} this test reads, the pull request
// included.
type prcStageStatus struct {
	stageStatus
	PullRequest *struct {
		Number  int    `json:"number"`
		URL     string `json:"url"`
		State   string `json:"state"`
		HeadSHA string `json:"headSHA"`
		Checks  string `json:"checks"`
		Action  string `json:"action"`
	} `json:"pullRequest"`
}

func (c *prcPipeline) waitPRStage(pr *promoter, name, what string, cond func(prcStageStatus) bool) prcStageStatus {
	return waitStageAs(c.pipeline, pr, name, what, cond)
}

// prcGrepLines are the lines of b holding word, any case.
func prcGrepLines(b []byte, word string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
