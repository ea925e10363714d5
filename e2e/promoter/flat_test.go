package promoter_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
)

// Apps side by side, the layout most GitOps repositories have: develop/frontend sits among
// 200 other app folders in develop/, so the promotion commit rewrites develop/'s 201-entry
// tree, which the promoter pushes as a delta against the tree the server has (a thin pack).
// Git takes it — git fsck --full on the server's repository and on a fresh clone are clean,
// the clone reads the new tag, no sibling changed — and Argo CD syncs the promotion.
func TestController_SideBySideAppsPromotionSyncs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, apps: []string{flatStage}}
	p.installPromoterRBAC()
	// Registered before the replica starts, so it runs after it stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	v := &verifyPipeline{p}
	siblings := map[string]string{}
	for i := range 200 {
		siblings[fmt.Sprintf("develop/svc%03d/instance.yaml", i)] = fmt.Sprintf(flatSibling, i, i)
	}
	seed := v.seedRepo(flatRepo, "flat", siblings)
	v.createAppIn(flatRepo, flatStage, "develop/frontend", "flat/frontend", nil)
	if err := st.EnsureNamespace(ctx, flatStage); err != nil {
		t.Fatal(err)
	}
	v.syncByHand(flatStage, seed)
	v.waitApp(flatStage, "Synced and Healthy at the seed", syncedHealthyAt(seed))

	v.startPromoter("promoter-flat")
	v.waitLeader("promoter-flat")
	pushImage(t, st.RegistryAddr, "flat/frontend", "1.2.2")
	promoted := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	v.waitApp(flatStage, "Synced and Healthy at the promotion, synced by kropipe", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(promoted)(app) && syncedBy(app, "kropipe", promoted)
	})

	bare := filepath.Join(st.Git.Root, flatRepo+".git")
	if out, err := exec.CommandContext(ctx, "git", "-C", bare, "fsck", "--full", "--strict").CombinedOutput(); err != nil {
		t.Fatalf("git fsck on the server's repository after the promotion: %v\n%s", err, out)
	}
	check, err := st.Git.Clone(ctx, flatRepo, filepath.Join(t.TempDir(), "check"))
	if err != nil {
		t.Fatalf("a fresh clone after the promotion: %v", err)
	}
	if out, err := check.Git(ctx, "fsck", "--full", "--strict"); err != nil {
		t.Fatalf("git fsck on a fresh clone: %v\n%s", err, out)
	}
	data, err := check.ReadFile("develop/frontend/instance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `tag: "1.2.2"`) {
		t.Errorf("develop/frontend/instance.yaml in a fresh clone:\n%s", data)
	}
	if changed, err := check.Git(ctx, "diff", "--name-only", seed, promoted); err != nil || strings.TrimSpace(changed) != "develop/frontend/instance.yaml" {
		t.Errorf("files the promotion changed: %q (%v); want develop/frontend/instance.yaml alone", changed, err)
	}
}

// The test's names: a repository, Application, image and namespace of its own.
const (
	flatRepo  = "flat-gitops"
	flatStage = "flat-develop"
	// flatSibling is another app's instance in develop/, never promoted here.
	flatSibling = `apiVersion: kro.run/v1alpha1
kind: WebApp
metadata:
  name: svc%03d
spec:
  values:
    deployment:
      image: registry.example.com/team/svc%03d
      tag: "1.0.0"
`
)
