package plugin_test

import (
	"context"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kropipe/kropipe/e2e/stack"
)

var (
	commitToSyncedOnce sync.Once
	commitToSyncedErr  error
)

// BenchmarkCommitToSynced measures, on the Argo CD line with the Source Hydrator, what a
// promotion waits for after its commit: from the push of a new tag in one instance.yaml until
// the Application is Synced with it — done the way the promoter does it, by writing a sync
// operation onto that one Application (no automated sync, no waiting for a poll).
// "plugin": a kro plugin Application, synced to the commit (the sync renders it through the
// plugin). "hydrated": a hydrator Application of a copy of the same instance; Argo CD is asked
// to hydrate it (what a dry-source webhook does), then it is synced to the hydrated commit of
// the push. Each has its own instance folder, hydrated branch and namespace.
func BenchmarkCommitToSynced(b *testing.B) {
	ctx := context.Background()
	argo := hydratorArgoCD(b)
	const pluginApp, hydratedApp = "c2s-plugin", "c2s-hydrated"
	pluginDir, hydratedDir := "c2s/plugin", "c2s/hydrated"
	commitToSyncedOnce.Do(func() { commitToSyncedErr = seedCommitToSynced(ctx, pluginDir, hydratedDir) })
	if commitToSyncedErr != nil {
		b.Fatal(commitToSyncedErr)
	}
	createPluginAppNoAutoSync(b, argo, pluginApp, pluginDir, "c2s-plugin")
	createHydratorApp(b, argo, hydratedApp, hydratedDir, "environments/c2s", "c2s-hydrated")
	waitHydration(b, argo, hydratedApp, "Hydrated")

	tag := 0
	for _, kind := range []string{"plugin", "hydrated"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				tag++
				if kind == "plugin" {
					sha := pushTag(b, path.Join(pluginDir, "instance.yaml"), "1.3."+strconv.Itoa(tag))
					syncTo(b, argo, pluginApp, sha)
					waitApp(b, argo, pluginApp, "synced to "+sha[:8], syncedTo(sha))
					continue
				}
				sha := pushTag(b, path.Join(hydratedDir, "instance.yaml"), "1.3."+strconv.Itoa(tag))
				patch := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/hydrate":"normal"}}}`)
				if _, err := apps(argo).Patch(ctx, hydratedApp, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					b.Fatalf("request hydration of %s: %v", hydratedApp, err)
				}
				op := waitHydrationOf(b, argo, hydratedApp, "Hydrated", sha)
				syncTo(b, argo, hydratedApp, op.HydratedSHA)
				waitApp(b, argo, hydratedApp, "synced to "+op.HydratedSHA[:8], syncedTo(op.HydratedSHA))
			}
		})
	}
}

// syncedTo is met when the Application is Synced at revision and its last sync succeeded.
func syncedTo(revision string) func(*v1alpha1.Application) bool {
	return func(a *v1alpha1.Application) bool {
		return a.Status.Sync.Status == v1alpha1.SyncStatusCodeSynced && a.Status.Sync.Revision == revision &&
			a.Status.OperationState != nil && a.Status.OperationState.Phase == "Succeeded" &&
			a.Status.OperationState.SyncResult != nil && a.Status.OperationState.SyncResult.Revision == revision
	}
}

// seedCommitToSynced commits two copies of develop/frontend/instance.yaml (instances c2s-plugin
// and c2s-hydrated) under the given folders.
func seedCommitToSynced(ctx context.Context, dirs ...string) error {
	gitMu.Lock()
	defer gitMu.Unlock()
	inst, err := checkout.ReadFile("develop/frontend/instance.yaml")
	if err != nil {
		return err
	}
	for _, dir := range dirs {
		name := "c2s-" + path.Base(dir)
		body := strings.Replace(string(inst), "name: frontend", "name: "+name, 1)
		if err := checkout.WriteFile(path.Join(dir, "instance.yaml"), []byte(body)); err != nil {
			return err
		}
	}
	_, err = checkout.CommitAndPush(ctx, "bench: instances for commit-to-synced")
	return err
}

// createPluginAppNoAutoSync creates a kro plugin Application of dir on main without automated
// sync, as the example ApplicationSet's are: the promoter syncs it.
func createPluginAppNoAutoSync(tb testing.TB, argo *stack.ArgoCDInstall, name, dir, namespace string) {
	tb.Helper()
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: argo.Namespace},
		Spec: v1alpha1.ApplicationSpec{
			Project:     "default",
			Source:      &v1alpha1.ApplicationSource{RepoURL: st.Git.RepoURL(repoName), Path: dir, TargetRevision: "main", Plugin: examplePlugin()},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: namespace},
		},
	}
	if _, err := apps(argo).Create(context.Background(), app, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("create Application %s/%s: %v", argo.Namespace, name, err)
	}
}
