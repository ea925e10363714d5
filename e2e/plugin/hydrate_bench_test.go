package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kropipe/kropipe/e2e/stack"
)

// hydratedBranch is where the Source Hydrator pushes the refresh benchmark's 100 applications,
// one folder apps/app-<i> each.
const hydratedBranch = "environments/bench"

var (
	hydrateOnce sync.Once
	hydrateErr  error
	// hydrated is the harness's clone of the gitops repository on hydratedBranch (under gitMu).
	hydrated *stack.Checkout
)

// hydrateAppName is the name of the hydrator Application of the refresh benchmark's app i.
func hydrateAppName(i int) string { return fmt.Sprintf("hydrate-%d", i) }

// seedHydratedApps creates, on the Argo CD installation with the Source Hydrator, one hydrator
// Application per refresh benchmark app (dry source refresh/apps/app-<i> on main, rendered by the
// kro plugin; hydrated to hydratedBranch, apps/app-<i>), waits until all are hydrated, and
// clones hydratedBranch. The Applications are never synced: the benchmarks measure rendering.
func seedHydratedApps(ctx context.Context, tb testing.TB) error {
	argo := hydratorArgoCD(tb)
	res := st.Dynamic.Resource(stack.ApplicationGVR).Namespace(argo.Namespace)
	for i := range refreshApps {
		app := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
			"metadata": map[string]any{"name": hydrateAppName(i), "namespace": argo.Namespace,
				// Only a commit to the app's own folder hydrates it by itself: the refresh
				// benchmark's RGD commits must not start 100 renders on the v3 line while it
				// measures the v2 line. BenchmarkHydrate100Apps asks for hydration outright.
				"annotations": map[string]any{"argocd.argoproj.io/manifest-generate-paths": "."}},
			"spec": map[string]any{
				"project": "default",
				"sourceHydrator": map[string]any{
					"drySource": map[string]any{
						"repoURL": st.Git.RepoURL(repoName), "targetRevision": "main", "path": fmt.Sprintf("refresh/apps/app-%d", i),
						"plugin": map[string]any{"name": "kro", "parameters": []any{map[string]any{"name": "rgd-paths", "string": "rgds"}}},
					},
					"syncSource": map[string]any{"targetBranch": hydratedBranch, "path": fmt.Sprintf("apps/app-%d", i)},
				},
				"destination": map[string]any{"server": st.APIServerURL, "namespace": "bench-hydrated"},
			},
		}}
		if _, err := res.Create(ctx, app, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create hydrator Application %s: %w", hydrateAppName(i), err)
		}
	}
	gitMu.Lock()
	head, err := checkout.Git(ctx, "rev-parse", "HEAD")
	gitMu.Unlock()
	if err != nil {
		return err
	}
	if err := waitAllHydrated(ctx, argo, head[:40]); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(st.Dir, "checkout-")
	if err != nil {
		return err
	}
	gitMu.Lock()
	defer gitMu.Unlock()
	if hydrated, err = st.Git.Clone(ctx, repoName, filepath.Join(dir, repoName)); err != nil {
		return err
	}
	_, err = hydrated.Git(ctx, "checkout", "--quiet", "-B", hydratedBranch, "origin/"+hydratedBranch)
	return err
}

// waitAllHydrated waits until every hydrate-<i> Application's last hydration is of dry commit
// drySHA and succeeded; a failed one ends the wait with its message.
func waitAllHydrated(ctx context.Context, argo *stack.ArgoCDInstall, drySHA string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	res := st.Dynamic.Resource(stack.ApplicationGVR).Namespace(argo.Namespace)
	want := map[string]bool{}
	for i := range refreshApps {
		want[hydrateAppName(i)] = true
	}
	for {
		list, err := res.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list Applications of %s: %w", argo.Namespace, err)
		}
		done := 0
		for _, u := range list.Items {
			if !want[u.GetName()] {
				continue
			}
			var op hydrateOperation
			if m, ok, _ := unstructured.NestedMap(u.Object, "status", "sourceHydrator", "currentOperation"); ok {
				b, _ := json.Marshal(m)
				_ = json.Unmarshal(b, &op)
			}
			switch {
			case op.Phase == "Failed":
				return fmt.Errorf("Application %s: hydration failed: %s", u.GetName(), op.Message)
			case op.Phase == "Hydrated" && op.DrySHA == drySHA:
				done++
			}
		}
		if done == len(want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d Applications hydrated at %.8s: %w", done, len(want), drySHA, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var cpuRequest = regexp.MustCompile(`(?m)^(\s+cpu: )\d+m$`)

// BenchmarkHydrate100Apps measures the Source Hydrator on the refresh benchmark's 100 kro
// applications, all hydrated to one branch: an iteration commits one change to the shared RGD
// that changes every rendered Deployment (its CPU request), asks Argo CD to hydrate one of the
// Applications (a dry-source webhook asks for all; one request hydrates every Application that
// shares the dry source and the hydrated branch; "hard", as the Applications' manifest-generate-
// paths leave the RGD out), and ends when all 100 report the new dry commit hydrated: 100
// renders through the kro plugin, one commit of 100 manifest.yaml files, one push.
func BenchmarkHydrate100Apps(b *testing.B) {
	ctx := context.Background()
	seedHydrated(ctx, b)
	argo := hydratorArgoCD(b)
	cpu := 50
	for b.Loop() {
		b.StopTimer()
		cpu++
		sha, err := commitRGDChange(ctx, cpu)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		patch := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/hydrate":"hard"}}}`)
		if _, err := apps(argo).Patch(ctx, hydrateAppName(0), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			b.Fatalf("request hydration of %s: %v", hydrateAppName(0), err)
		}
		if err := waitAllHydrated(ctx, argo, sha); err != nil {
			b.Fatal(err)
		}
	}
}

// seedHydrated seeds the refresh benchmark's apps and their hydrator Applications, once.
func seedHydrated(ctx context.Context, b *testing.B) {
	b.Helper()
	var setupErr error
	refreshOnce.Do(func() { setupErr = seedRefreshApps(ctx, repoServer(b, st.ArgoCDV2())) })
	if setupErr != nil {
		b.Fatal(setupErr)
	}
	hydrateOnce.Do(func() { hydrateErr = seedHydratedApps(ctx, b) })
	if hydrateErr != nil {
		b.Fatal(hydrateErr)
	}
}

// commitRGDChange sets the CPU request of the example RGD's Deployment to cpu millicores and
// pushes, returning the commit.
func commitRGDChange(ctx context.Context, cpu int) (string, error) {
	gitMu.Lock()
	defer gitMu.Unlock()
	const rgd = "rgds/webapp.yaml"
	data, err := checkout.ReadFile(rgd)
	if err != nil {
		return "", err
	}
	if !cpuRequest.Match(data) {
		return "", fmt.Errorf("%s: no `cpu: <n>m` line to change", rgd)
	}
	if err := checkout.WriteFile(rgd, cpuRequest.ReplaceAll(data, []byte("${1}"+strconv.Itoa(cpu)+"m"))); err != nil {
		return "", err
	}
	return checkout.CommitAndPush(ctx, fmt.Sprintf("bench: CPU request %dm", cpu))
}

// commitHydratedRevision gives hydratedBranch a new commit outside the apps' folders, as the
// hydrator's next commit would give it one, so repo-server fetches a new revision.
func commitHydratedRevision(ctx context.Context, revision int) error {
	gitMu.Lock()
	defer gitMu.Unlock()
	// The hydrator may have pushed since: start from the server's branch.
	if _, err := hydrated.Git(ctx, "fetch", "--quiet", "origin", hydratedBranch); err != nil {
		return err
	}
	if _, err := hydrated.Git(ctx, "reset", "--quiet", "--hard", "FETCH_HEAD"); err != nil {
		return err
	}
	if err := hydrated.WriteFile("REVISION", []byte(strconv.Itoa(revision)+"\n")); err != nil {
		return err
	}
	if _, err := hydrated.Git(ctx, "add", "-A"); err != nil {
		return err
	}
	if _, err := hydrated.Git(ctx, "commit", "--quiet", "-m", fmt.Sprintf("bench: revision %d", revision)); err != nil {
		return err
	}
	_, err := hydrated.Git(ctx, "push", "--quiet", "origin", "HEAD:"+hydratedBranch)
	return err
}
