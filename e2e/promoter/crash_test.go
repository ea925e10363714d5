package promoter_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// The crash point the fault suite cannot reach in local mode: the leader dies between its
// push and its sync request (KROPIPE_CRASH_AT=during-sync makes the real binary SIGKILL itself
// right before the Application patch). The standby must take the Lease and sync exactly that
// Application to the commit already on the server, without a second commit.
func TestController_LeaderKilledAtSyncRequest_StandbySyncsThePromotionOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c := newCrashPipeline(t, ctx)
	seed := c.seed()
	// Both Applications deploy into one namespace: with CreateNamespace=true, two first syncs at
	// once race to create it and the loser fails ("namespaces \"crash\" already exists").
	if err := st.EnsureNamespace(ctx, crashNamespace); err != nil {
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
	c.waitDeployment(crashNamespace, "frontend", c.crashImage("frontend", "1.2.1"))
	c.waitDeployment(crashNamespace, "backend", c.crashImage("backend", "2.0.0"))

	a := c.startPromoter("promoter-crash-a", "KROPIPE_CRASH_AT=during-sync")
	c.waitLeader("promoter-crash-a")
	c.waitStage(a, "crash-frontend", "verified 1.2.1 (running before kropipe started)", func(s stageStatus) bool {
		return s.Decision == "up-to-date" && s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1"
	})
	b := c.startPromoter("promoter-crash-b")
	if head := c.head(); head != seed {
		t.Fatalf("the promoter committed with nothing new in the registry:\n%s", c.log(seed))
	}

	pushed := time.Now()
	pushImage(t, st.RegistryAddr, "crash/frontend", "1.2.2")
	// The leader commits, pushes, and kills itself at its sync request.
	c.poll("promoter-crash-a killed at its sync request", syncTimeout, func() (bool, string) {
		exited, _ := a.Exited()
		return exited, "still running"
	})
	died := time.Now()
	_, err := a.Exited()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("promoter-crash-a ended with %v, want SIGKILL:\n%s", err, a.Tail(30))
	}
	if logs, err := os.ReadFile(a.LogPath); err != nil || !strings.Contains(string(logs), "crashpoint: killing the process at during-sync") {
		t.Fatalf("promoter-crash-a died (%v) without the crash point's line:\n%s", err, a.Tail(30))
	}
	promotion := c.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	// The crash point sits before the patch: Argo CD was asked nothing.
	if now := c.app("crash-frontend"); now.Operation != nil || !sameOperation(before["crash-frontend"], now) {
		t.Fatalf("crash-frontend got an operation before the standby took over: %s", stack.DescribeApplication(now))
	}
	t.Logf("push → leader dead at its sync request %s (commit %.8s on the server)", died.Sub(pushed).Round(10*time.Millisecond), promotion)

	c.waitLeader("promoter-crash-b")
	tookOver := time.Now()
	c.waitApp("crash-frontend", "Synced and Healthy at the promotion commit, synced by kropipe", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(promotion)(app) && syncedBy(app, "kropipe", promotion)
	})
	synced := time.Now()
	c.waitDeployment(crashNamespace, "frontend", c.crashImage("frontend", "1.2.2"))
	v := c.waitStage(b, "crash-frontend", "verified 1.2.2", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	})
	if v.VerifiedFreight.Commit != promotion {
		t.Errorf("crash-frontend verified 1.2.2 at %s, want the promotion commit %s", v.VerifiedFreight.Commit, promotion)
	}
	if v.CurrentTag != "1.2.2" {
		t.Errorf("crash-frontend current tag %q, want 1.2.2", v.CurrentTag)
	}
	t.Logf("standby leads %s after the kill; crash-frontend Synced and Healthy %s after takeover, verified %s after it",
		tookOver.Sub(died).Round(10*time.Millisecond), synced.Sub(tookOver).Round(10*time.Millisecond), v.VerifiedFreight.VerifiedAt.Sub(tookOver).Round(10*time.Millisecond))

	// Two more passes of the new leader: still the one promotion commit, no duplicate.
	c.waitStage(b, "crash-frontend", "two more passes", func(s stageStatus) bool {
		return s.CheckedAt.After(v.CheckedAt.Add(2 * crashInterval))
	})
	if head := c.head(); head != promotion || strings.Count(strings.TrimSpace(c.log(seed)), "\n") != 0 {
		t.Errorf("commits since the seed:\n%s\nwant only crash-frontend's promotion %.8s", c.log(seed), promotion)
	}
	// Only the promoted Application was synced.
	now := c.app("crash-backend")
	if now.Operation != nil || !sameOperation(before["crash-backend"], now) {
		t.Errorf("crash-backend got an operation: %s", stack.DescribeApplication(now))
	}
	c.waitDeployment(crashNamespace, "backend", c.crashImage("backend", "2.0.0"))
}

// crashNamespace holds both Applications' objects, apart from TestPipeline's namespaces.
const crashNamespace = "crash"

// crashRepo is the test's repository on the stack's Git server.
const crashRepo = "crash-gitops"

// crashInterval is the stages' kropipe.io/interval.
const crashInterval = 3 * time.Second

// crashPipeline is TestPipeline's machinery on names of its own (Git repository,
// Applications, images, namespace), so the two tests can share the package's stack
// in either order; only the promoter's Lease and state ConfigMap, fixed by the install's Role,
// are the same, and are removed when the test ends.
type crashPipeline struct {
	*pipeline
}

func newCrashPipeline(t *testing.T, ctx context.Context) *crashPipeline {
	// The stack's anonymous Git server, a repository of its own: TestPipeline proves the
	// credentials from Argo CD's Secret; here only the crash matters.
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, apps: []string{"crash-frontend", "crash-backend"}}
	p.installPromoterRBAC()
	// Registered before the replicas start, so it runs after they stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	return &crashPipeline{p}
}

// removeCrashObjects deletes what the test created in argocd and what its promoters left there.
func removeCrashObjects(t *testing.T, apps []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ignoreNotFound := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete %s: %v", what, err)
		}
	}
	for _, app := range apps {
		ignoreNotFound("Application "+app, st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Delete(ctx, app, metav1.DeleteOptions{}))
	}
	ignoreNotFound("ConfigMap kropipe-promoter-state", st.Kube.CoreV1().ConfigMaps(stack.ArgoCDNamespace).Delete(ctx, "kropipe-promoter-state", metav1.DeleteOptions{}))
	// The stages' state: one ConfigMap per bucket of stage names.
	ignoreNotFound("state ConfigMaps", st.Kube.CoreV1().ConfigMaps(stack.ArgoCDNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "kropipe.io/state-set=kropipe-promoter-state"}))
	ignoreNotFound("Lease kropipe-promoter", st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace).Delete(ctx, "kropipe-promoter", metav1.DeleteOptions{}))
}

// seed serves examples/gitops's RGDs and develop folder with images in the stack's registry under
// crash/, pushes the tags they name and creates one Application per service; it returns the
// seed commit.
func (c *crashPipeline) seed() string {
	t := c.t
	if err := c.srv.CreateRepo(c.ctx, crashRepo); err != nil {
		t.Fatal(err)
	}
	co, err := c.srv.Clone(c.ctx, crashRepo, filepath.Join(t.TempDir(), crashRepo))
	if err != nil {
		t.Fatal(err)
	}
	c.co = co
	examples := filepath.Join(repoRoot, "examples", "gitops")
	for _, dir := range []string{"rgds", "develop"} {
		if err := co.CopyTree(filepath.Join(examples, dir), dir); err != nil {
			t.Fatal(err)
		}
	}
	for path, tag := range map[string]string{"develop/frontend/instance.yaml": "1.2.1", "develop/backend/instance.yaml": "2.0.0"} {
		b, err := co.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "registry.example.com/team/", st.RegistryAddr+"/crash/")
		if !tagLine.MatchString(s) {
			t.Fatalf("examples/gitops/%s: no deployment tag line", path)
		}
		s = tagLine.ReplaceAllString(s, `${1}"`+tag+`"`)
		if err := co.WriteFile(path, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := co.CommitAndPush(c.ctx, "Seed from examples/gitops")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []struct{ repo, tag string }{{"crash/frontend", "1.2.1"}, {"crash/backend", "2.0.0"}} {
		pushImage(t, st.RegistryAddr, img.repo, img.tag)
	}
	for _, svc := range []string{"frontend", "backend"} {
		c.createApp(svc)
	}
	return seed
}

// createApp creates Application crash-<service> as the example ApplicationSet would make
// develop-<service>, one stage each.
func (c *crashPipeline) createApp(service string) {
	ann := map[string]string{
		"argocd.argoproj.io/manifest-generate-paths": ".;/rgds",
		"kropipe.io/image":                           st.RegistryAddr + "/crash/" + service,
		"kropipe.io/strategy":                        "semver",
		"kropipe.io/auto-promote":                    "true",
		"kropipe.io/interval":                        crashInterval.String(),
	}
	if service == "frontend" {
		ann["kropipe.io/constraint"] = "^1.2"
	}
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "crash-" + service, Namespace: stack.ArgoCDNamespace, Annotations: ann},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL: c.srv.RepoURL(crashRepo), Path: "develop/" + service, TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{{Name: "rgd-paths", String_: ptr.To("rgds")}}},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: crashNamespace},
			SyncPolicy:  &v1alpha1.SyncPolicy{SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"}},
		},
	}
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Create(c.ctx, app, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create Application %s: %v", app.Name, err)
	}
}

func (c *crashPipeline) crashImage(service, tag string) string {
	return fmt.Sprintf("%s/crash/%s:%s", st.RegistryAddr, service, tag)
}
