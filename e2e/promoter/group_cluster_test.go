package promoter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// The release group of the README in the cluster: develop/shop and staging/shop, each the
// backend and frontend Applications annotated kropipe.io/group, with a develop-cart sibling
// outside the group. backend:2.1.0 and frontend:1.2.2 are pushed while the group is paused;
// resumed, the controller makes one develop commit for the set and is SIGKILLed at its first
// sync request (KROPIPE_CRASH_AT=during-sync). The restarted controller makes no second commit,
// syncs both members (never the sibling) to that commit, verifies the set once both are Synced
// and Healthy, and after the soak moves staging as one commit. frontend:1.2.3 alone then gives
// the set {1.2.3, 2.1.0}; a rollback of the group through the API is one commit, synced; a
// member whose sync the cluster refuses fails the set, and staging does not take it.
func TestPromoterController_ReleaseGroupMovesAsOneSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	g := newShopPipeline(t, ctx)
	seed := g.seed()
	// Members share a namespace per environment: create them first, so two first syncs do not
	// race to create one (see the crash test).
	for _, ns := range []string{shopDevelop, shopStaging} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range g.apps {
		g.syncByHand(app, seed)
	}
	for _, app := range g.apps {
		g.waitApp(app, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	}
	before := map[string]*v1alpha1.Application{}
	for _, app := range g.apps {
		before[app] = g.app(app)
	}

	a := g.startPromoter("promoter-shop-a", "KROPIPE_CRASH_AT=during-sync")
	g.waitLeader("promoter-shop-a")
	g.waitStage(a, developShop, "up to date (the seed set running before kropipe started)", func(s stageStatus) bool {
		return s.Decision == "up-to-date" && s.CurrentTag == "shop-develop-backend=2.0.0, shop-develop-frontend=1.2.1"
	})
	if head := g.head(); head != seed {
		t.Fatalf("the promoter committed with nothing new in the registry:\n%s", g.log(seed))
	}
	// A release: CI pushes the backend and the frontend that needs it while the group is paused,
	// so one pass sees both.
	for _, action := range []string{"pause", "resume"} {
		if action == "resume" {
			pushImage(t, st.RegistryAddr, "shop/backend", "2.1.0")
			pushImage(t, st.RegistryAddr, "shop/frontend", "1.2.2")
		}
		if code, body := g.post(a, "/api/v1/stages/"+developShop+"/"+action, map[string]string{}); code != http.StatusOK {
			t.Fatalf("POST %s develop/shop: %d %s", action, code, body)
		}
	}
	started := time.Now()
	g.poll("promoter-shop-a killed at its first sync request", syncTimeout, func() (bool, string) {
		exited, _ := a.Exited()
		return exited, "still running"
	})
	died := time.Now()
	_, err := a.Exited()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("promoter-shop-a ended with %v, want SIGKILL:\n%s", err, a.Tail(30))
	}
	if logs, err := os.ReadFile(a.LogPath); err != nil || !strings.Contains(string(logs), "crashpoint: killing the process at during-sync") {
		t.Fatalf("promoter-shop-a died (%v) without the crash point's line:\n%s", err, a.Tail(30))
	}

	// One commit for the set, changing both files, with every member's trailers.
	const developSubject = "Promote shop: backend 2.0.0 → 2.1.0, frontend 1.2.1 → 1.2.2"
	develop := g.waitCommit("develop/frontend/instance.yaml", developSubject, seed)
	if got := g.log(seed); strings.Count(strings.TrimSpace(got), "\n") != 0 {
		t.Fatalf("commits since the seed:\n%s\nwant the one commit of the set", got)
	}
	g.wantFiles(develop, "develop/backend/instance.yaml", "develop/frontend/instance.yaml")
	g.wantTrailers(develop, map[string]string{
		"Kropipe-Stage":    "shop-develop-backend,shop-develop-frontend",
		"Kropipe-Value":    "2.1.0,1.2.2",
		"Kropipe-Previous": "2.0.0,1.2.1",
		"Kropipe-Group":    "develop/shop",
	})
	if f := g.trailer(develop, "Kropipe-Freight"); !regexp.MustCompile(`^[0-9a-f]{8,}$`).MatchString(f) {
		t.Errorf("develop commit Kropipe-Freight = %q, want the set's id", f)
	}
	// The crash point sits before the first patch: Argo CD was asked nothing yet.
	for _, app := range g.apps {
		if now := g.app(app); now.Operation != nil || !sameOperation(before[app], now) {
			t.Fatalf("%s got an operation before the restart: %s", app, stack.DescribeApplication(now))
		}
	}
	t.Logf("resume → set committed (%.8s) and leader dead at its sync request in %s", develop, died.Sub(started).Round(10*time.Millisecond))

	// The restarted controller syncs both members to the commit on the server, no second commit.
	b := g.startPromoter("promoter-shop-b")
	g.waitLeader("promoter-shop-b")
	tookOver := time.Now()
	for _, app := range []string{"shop-develop-backend", "shop-develop-frontend"} {
		g.waitApp(app, "Synced and Healthy at the set's commit, synced by kropipe", func(app *v1alpha1.Application) bool {
			return syncedHealthyAt(develop)(app) && syncedBy(app, "kropipe", develop)
		})
	}
	g.waitDeployment(shopDevelop, "backend", g.shopImage("backend", "2.1.0"))
	g.waitDeployment(shopDevelop, "frontend", g.shopImage("frontend", "1.2.2"))
	dv := g.waitStage(b, developShop, "verified the set", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Commit == develop
	}).VerifiedFreight
	// Verified together: not before the last member's sync finished.
	for _, app := range []string{"shop-develop-backend", "shop-develop-frontend"} {
		if op := g.app(app).Status.OperationState; op.FinishedAt == nil || op.FinishedAt.After(dv.VerifiedAt) {
			t.Errorf("develop/shop verified at %s, before %s finished its sync (%v)", dv.VerifiedAt, app, op.FinishedAt)
		}
	}
	t.Logf("restart leads and syncs; develop/shop verified %s after the takeover", dv.VerifiedAt.Sub(tookOver).Round(10*time.Millisecond))

	// Staging takes the set verified together, after the soak, as one commit.
	const stagingSubject = "Promote shop: backend 2.0.0 → 2.1.0, frontend 1.2.1 → 1.2.2"
	staging := g.waitCommit("staging/frontend/instance.yaml", stagingSubject, develop)
	if at := g.commitTime(staging); at.Before(dv.VerifiedAt.Add(shopSoak).Truncate(time.Second)) {
		t.Errorf("staging/shop promoted at %s, before develop/shop's verification %s + soak %s", at, dv.VerifiedAt, shopSoak)
	}
	g.wantFiles(staging, "staging/backend/instance.yaml", "staging/frontend/instance.yaml")
	g.wantTrailers(staging, map[string]string{
		"Kropipe-Stage": "shop-staging-backend,shop-staging-frontend",
		"Kropipe-Value": "2.1.0,1.2.2",
		"Kropipe-Group": "staging/shop",
	})
	for _, app := range []string{"shop-staging-backend", "shop-staging-frontend"} {
		g.waitApp(app, "Synced and Healthy at staging's set commit", func(app *v1alpha1.Application) bool {
			return syncedHealthyAt(staging)(app) && syncedBy(app, "kropipe", staging)
		})
	}
	g.waitDeployment(shopStaging, "backend", g.shopImage("backend", "2.1.0"))
	g.waitDeployment(shopStaging, "frontend", g.shopImage("frontend", "1.2.2"))
	if got := g.log(seed); strings.Count(strings.TrimSpace(got), "\n") != 1 {
		t.Fatalf("commits since the seed:\n%s\nwant develop's and staging's set, none repeated after the restart", got)
	}

	// frontend:1.2.3 alone: the set {1.2.3, 2.1.0}, one commit, both members synced to it.
	pushImage(t, st.RegistryAddr, "shop/frontend", "1.2.3")
	next := g.waitCommit("develop/frontend/instance.yaml", "Promote shop: frontend 1.2.2 → 1.2.3", staging)
	g.wantFiles(next, "develop/frontend/instance.yaml")
	for _, app := range []string{"shop-develop-backend", "shop-develop-frontend"} {
		g.waitApp(app, "Synced and Healthy at the {1.2.3, 2.1.0} commit", func(app *v1alpha1.Application) bool {
			return syncedHealthyAt(next)(app) && syncedBy(app, "kropipe", next)
		})
	}
	g.waitDeployment(shopDevelop, "frontend", g.shopImage("frontend", "1.2.3"))
	g.waitDeployment(shopDevelop, "backend", g.shopImage("backend", "2.1.0"))
	g.waitStage(b, developShop, "verified the set {1.2.3, 2.1.0}", func(s stageStatus) bool {
		return s.CurrentTag == "shop-develop-backend=2.1.0, shop-develop-frontend=1.2.3" && s.VerifiedFreight != nil && s.VerifiedFreight.Commit == next
	})
	stagingNext := g.waitCommit("staging/frontend/instance.yaml", "Promote shop: frontend 1.2.2 → 1.2.3", next)

	// What a user sees through kubectl port-forward: the group with its members.
	status := exec.CommandContext(ctx, st.Binaries.Promoter, "status", "--addr", b.addr, "develop/shop")
	table, err := status.CombinedOutput()
	if err != nil || !regexp.MustCompile(`member shop-develop-frontend\s+1\.2\.3`).Match(table) || !regexp.MustCompile(`member shop-develop-backend\s+2\.1\.0`).Match(table) {
		t.Errorf("promoter status --addr %s develop/shop: %v\n%s", b.addr, err, table)
	}

	// A rollback of the group through the API: one commit back to the previous set, the
	// rejected value in its trailer, every member synced to it.
	if code, body := g.post(b, "/api/v1/stages/"+developShop+"/rollback", map[string]string{}); code != http.StatusOK {
		t.Fatalf("POST rollback develop/shop: %d %s", code, body)
	}
	rolledBack := g.waitCommit("develop/frontend/instance.yaml", "Roll back shop: frontend 1.2.3 → 1.2.2", stagingNext)
	if r := g.trailer(rolledBack, "Kropipe-Rejected"); r != "1.2.3" {
		t.Errorf("rollback commit Kropipe-Rejected = %q, want 1.2.3", r)
	}
	for _, app := range []string{"shop-develop-backend", "shop-develop-frontend"} {
		g.waitApp(app, "Synced and Healthy at the rollback commit", func(app *v1alpha1.Application) bool {
			return syncedHealthyAt(rolledBack)(app) && syncedBy(app, "kropipe", rolledBack)
		})
	}
	g.waitDeployment(shopDevelop, "frontend", g.shopImage("frontend", "1.2.2"))
	rb := g.waitStage(b, developShop, "verified the rolled-back set", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Commit == rolledBack
	})
	g.waitStage(b, developShop, "two more passes", func(s stageStatus) bool { return s.CheckedAt.After(rb.CheckedAt.Add(2 * shopInterval)) })
	if head := g.head(); head != rolledBack {
		t.Errorf("after the rollback the promoter committed again:\n%s", g.log(rolledBack))
	}

	// A failing member blocks the set: the cluster's admission policy refuses frontend:1.2.4, so
	// its sync fails while the backend's succeeds; past --health-timeout the group fails naming
	// the frontend, the backend is blocked, and staging never takes the set. (The failing member
	// is the last one: a set verified on its first member alone would reach staging.)
	g.denyImage(shopDevelop, g.shopImage("frontend", "1.2.4"))
	pushImage(t, st.RegistryAddr, "shop/frontend", "1.2.4")
	bad := g.waitCommit("develop/frontend/instance.yaml", "Promote shop: frontend 1.2.2 → 1.2.4", rolledBack)
	g.waitApp("shop-develop-frontend", "sync to the set's commit refused by the policy", func(app *v1alpha1.Application) bool {
		op := app.Status.OperationState
		return app.Operation == nil && syncedBy(app, "kropipe", bad) && op.Phase == "Failed" && strings.Contains(op.Message, "banned by the e2e policy")
	})
	g.waitApp("shop-develop-backend", "Synced and Healthy at the set's commit", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(bad)(app) && syncedBy(app, "kropipe", bad)
	})
	failed := g.waitStage(b, developShop, "failed naming shop-develop-frontend", func(s stageStatus) bool {
		return s.Decision == "failed" && strings.Contains(s.Error, "shop-develop-frontend") && strings.Contains(s.Error, "sync Failed")
	})
	g.waitStage(b, "shop-develop-backend", "blocked by its group", func(s stageStatus) bool {
		return s.Decision == "blocked" && strings.Contains(s.Reason, "develop/shop")
	})
	g.waitDeployment(shopDevelop, "frontend", g.shopImage("frontend", "1.2.2"))
	g.waitStage(b, stagingShop, "a soak and two passes past develop's failure", func(s stageStatus) bool {
		return s.CheckedAt.After(failed.CheckedAt.Add(shopSoak + 2*shopInterval))
	})
	if head := g.head(); head != bad {
		t.Errorf("after develop/shop failed, commits:\n%s\nwant none: staging must not take a set that was not verified", g.log(bad))
	}
	t.Logf("develop/shop failed: %s", failed.Error)

	// The sibling outside the group was never asked to sync.
	if now := g.app("shop-develop-cart"); now.Operation != nil || !sameOperation(before["shop-develop-cart"], now) {
		t.Errorf("shop-develop-cart, outside the group, got an operation: %s", stack.DescribeApplication(now))
	}
	g.waitDeployment(shopDevelop, "cart", g.shopImage("cart", "1.0.0"))
}

// The test's names, apart from the other controller tests' in the same stack.
const (
	shopRepo     = "shop-gitops"
	shopDevelop  = "shop-develop"
	shopStaging  = "shop-staging"
	shopInterval = 3 * time.Second
	shopSoak     = 5 * time.Second
	// shopHealthTimeout is how long a failed member sync holds before the set fails.
	shopHealthTimeout = 10 * time.Second
)

// The groups' names as a path segment of the API.
var developShop, stagingShop = url.PathEscape("develop/shop"), url.PathEscape("staging/shop")

// shopPipeline is TestPipeline's machinery on names of its own: repository shop-gitops on the
// stack's anonymous Git server, images under shop/, Applications shop-*, namespaces shop-*.
type shopPipeline struct {
	*pipeline
}

func newShopPipeline(t *testing.T, ctx context.Context) *shopPipeline {
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, soak: shopSoak, promoterArgs: []string{"--health-timeout=" + shopHealthTimeout.String()}, apps: []string{
		"shop-develop-backend", "shop-develop-cart", "shop-develop-frontend", "shop-staging-backend", "shop-staging-frontend",
	}}
	p.installPromoterRBAC()
	// Registered before the replicas start, so it runs after they stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	return &shopPipeline{p}
}

// seed serves examples/gitops's RGDs and develop instances for develop and staging (develop's
// instances: staging's example has an Ingress nothing admits here), a cart copied from the
// backend, all at the tags pushed here; it creates the Applications and returns the seed commit.
func (g *shopPipeline) seed() string {
	t := g.t
	if err := g.srv.CreateRepo(g.ctx, shopRepo); err != nil {
		t.Fatal(err)
	}
	co, err := g.srv.Clone(g.ctx, shopRepo, filepath.Join(t.TempDir(), shopRepo))
	if err != nil {
		t.Fatal(err)
	}
	g.co = co
	examples := filepath.Join(repoRoot, "examples", "gitops")
	if err := co.CopyTree(filepath.Join(examples, "rgds"), "rgds"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ path, from, name, image, tag string }{
		{"develop/backend/instance.yaml", "backend", "backend", "backend", "2.0.0"},
		{"develop/frontend/instance.yaml", "frontend", "frontend", "frontend", "1.2.1"},
		{"develop/cart/instance.yaml", "backend", "cart", "cart", "1.0.0"},
		{"staging/backend/instance.yaml", "backend", "backend", "backend", "2.0.0"},
		{"staging/frontend/instance.yaml", "frontend", "frontend", "frontend", "1.2.1"},
	} {
		b, err := os.ReadFile(filepath.Join(examples, "develop", f.from, "instance.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), "name: "+f.from, "name: "+f.name, 1)
		s = strings.ReplaceAll(s, "registry.example.com/team/"+f.from, st.RegistryAddr+"/shop/"+f.image)
		if !tagLine.MatchString(s) {
			t.Fatalf("examples/gitops/develop/%s: no deployment tag line", f.from)
		}
		s = tagLine.ReplaceAllString(s, `${1}"`+f.tag+`"`)
		if err := co.WriteFile(f.path, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := co.CommitAndPush(g.ctx, "Seed the shop")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []struct{ repo, tag string }{{"shop/frontend", "1.2.1"}, {"shop/backend", "2.0.0"}, {"shop/cart", "1.0.0"}} {
		pushImage(t, st.RegistryAddr, img.repo, img.tag)
	}
	group := map[string]string{"kropipe.io/group": "develop/shop"}
	staging := func(upstream string) map[string]string {
		return map[string]string{"kropipe.io/group": "staging/shop", "kropipe.io/upstream": upstream, "kropipe.io/soak": shopSoak.String()}
	}
	g.createApp("shop-develop-backend", "develop/backend", "backend", shopDevelop, "^2", group)
	g.createApp("shop-develop-frontend", "develop/frontend", "frontend", shopDevelop, "^1.2", group)
	g.createApp("shop-develop-cart", "develop/cart", "cart", shopDevelop, "^1", nil)
	g.createApp("shop-staging-backend", "staging/backend", "backend", shopStaging, "^2", staging("shop-develop-backend"))
	g.createApp("shop-staging-frontend", "staging/frontend", "frontend", shopStaging, "^1.2", staging("shop-develop-frontend"))
	return seed
}

// createApp creates Application name as the example ApplicationSet would, plus extra
// kropipe.io annotations.
func (g *shopPipeline) createApp(name, path, image, ns, constraint string, extra map[string]string) {
	ann := map[string]string{
		"argocd.argoproj.io/manifest-generate-paths": ".;/rgds",
		"kropipe.io/image":                           st.RegistryAddr + "/shop/" + image,
		"kropipe.io/strategy":                        "semver",
		"kropipe.io/constraint":                      constraint,
		"kropipe.io/auto-promote":                    "true",
		"kropipe.io/interval":                        shopInterval.String(),
	}
	for k, v := range extra {
		ann[k] = v
	}
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: stack.ArgoCDNamespace, Annotations: ann},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL: g.srv.RepoURL(shopRepo), Path: path, TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{{Name: "rgd-paths", String_: ptr.To("rgds")}}},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: ns},
			SyncPolicy:  &v1alpha1.SyncPolicy{SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"}},
		},
	}
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Create(g.ctx, app, metav1.CreateOptions{}); err != nil {
		g.t.Fatalf("create Application %s: %v", name, err)
	}
}

// denyImage makes the cluster refuse Deployments running image in namespace ns, as a policy
// banning a release would: a ValidatingAdmissionPolicy and its binding, removed when the test
// ends. It returns once the API server enforces it (a dry-run create is refused).
func (g *shopPipeline) denyImage(ns, image string) {
	t := g.t
	const name = "e2e-shop-banned-image"
	adm := st.Kube.AdmissionregistrationV1()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("!object.spec.template.spec.containers.exists(c, c.image == %q)", image),
				Message:    image + " is banned by the e2e policy",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns},
			}},
		},
	}
	if _, err := adm.ValidatingAdmissionPolicies().Create(g.ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if _, err := adm.ValidatingAdmissionPolicyBindings().Create(g.ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	probe := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-probe", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "policy-probe"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "policy-probe"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
	g.poll("the API server refusing "+image+" in "+ns, time.Minute, func() (bool, string) {
		_, err := st.Kube.AppsV1().Deployments(ns).Create(g.ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "banned by the e2e policy"), fmt.Sprintf("dry-run create: %v", err)
	})
}

func (g *shopPipeline) shopImage(service, tag string) string {
	return st.RegistryAddr + "/shop/" + service + ":" + tag
}

// wantFiles fails the test unless commit changed exactly files (in git's order).
func (g *shopPipeline) wantFiles(commit string, files ...string) {
	g.t.Helper()
	if got := strings.Fields(g.git("show", "--name-only", "--format=", commit)); strings.Join(got, " ") != strings.Join(files, " ") {
		g.t.Errorf("commit %.8s changed %q, want %q", commit, got, files)
	}
}

func (g *shopPipeline) wantTrailers(commit string, want map[string]string) {
	g.t.Helper()
	for k, v := range want {
		if got := g.trailer(commit, k); got != v {
			g.t.Errorf("commit %.8s trailer %s = %q, want %q\n%s", commit, k, got, v, g.git("log", "-1", "--format=%B", commit))
		}
	}
}
