package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// hydrate plays Argo CD's Source Hydrator on the Application: it hydrated dry into hydrated.
func (e clusterEnv) hydrate(t *testing.T, name, dry, hydrated string) {
	t.Helper()
	u := e.app(t, name)
	h := map[string]any{
		"lastComparedDryRevision": dry,
		"currentOperation":        map[string]any{"phase": "Hydrated", "drySHA": dry, "hydratedSHA": hydrated, "startedAt": time.Now().UTC().Format(time.RFC3339)},
		"lastSuccessfulOperation": map[string]any{"drySHA": dry, "hydratedSHA": hydrated},
	}
	if err := unstructured.SetNestedField(u.Object, h, "status", "sourceHydrator"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The controller as wired by Run promotes a Source Hydrator Application: the dry commit, then
// the sync of the hydrated commit of a dry commit that holds it (asked of the controller's own
// clone), and the API shows both commits.
func TestController_PromotesAHydratorApplicationThroughItsHydratedCommit(t *testing.T) {
	const hydrated = "1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d"
	e := newClusterEnv(t)
	u := e.app(t, "develop-frontend")
	src, _, _ := unstructured.NestedMap(u.Object, "spec", "source")
	unstructured.RemoveNestedField(u.Object, "spec", "source")
	_ = unstructured.SetNestedMap(u.Object, map[string]any{
		"drySource":  map[string]any{"repoURL": src["repoURL"], "targetRevision": "main", "path": "develop/frontend", "plugin": map[string]any{"name": "kro"}},
		"syncSource": map[string]any{"targetBranch": "environments/develop", "path": "develop/frontend"},
	}, "spec", "sourceHydrator")
	ctx := context.Background()
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	addr, logs, _ := e.start(t, configFor(""))
	c := api.NewClient(addr, "", nil)
	waitStage(t, c, logs, "promoted in the dry source", func(st stage.Status) bool {
		return st.CurrentTag == "1.2.2" && strings.Contains(st.Reason, "Argo CD has not hydrated dry commit")
	})
	promo := head(t, e.bare)
	if got, _ := e.app(t, "develop-frontend").GetAnnotations()[argocd.HydrateAnnotation]; got != "normal" {
		t.Fatalf("hydration not asked for: annotation %q", got)
	}
	// Argo CD hydrates a later dry commit, which holds the promotion.
	later, err := gitserver.GitOutput(ctx, e.bare, "commit-tree", "-p", promo, "-m", "Unrelated change", promo+"^{tree}")
	if err != nil {
		t.Fatal(err)
	}
	later = strings.TrimSpace(later)
	if err := gitserver.Git(ctx, e.bare, "update-ref", "refs/heads/main", later); err != nil {
		t.Fatal(err)
	}
	e.hydrate(t, "develop-frontend", later, hydrated)
	e.waitSyncRequested(t, "develop-frontend", hydrated, logs)
	if op, _, _ := unstructured.NestedMap(e.app(t, "develop-backend").Object, "operation"); op != nil {
		t.Fatalf("develop-backend got an operation: %v", op)
	}
	e.finishSync(t, "develop-frontend", hydrated)
	e.hydrate(t, "develop-frontend", later, hydrated) // finishSync replaced the status
	waitStage(t, c, logs, "verified", func(st stage.Status) bool {
		return st.VerifiedFreight != nil && st.VerifiedFreight.Commit == promo
	})
	st, err := c.Stage(ctx, "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	if st.LastCommit != promo || st.Sync == nil || st.Sync.Revision != hydrated || st.Sync.Hydration == nil ||
		st.Sync.Hydration.DryCommit != later || st.Sync.Hydration.HydratedCommit != hydrated || st.Sync.Hydration.SyncBranch != "environments/develop" {
		t.Fatalf("status %+v sync %+v", st, st.Sync)
	}
}
