package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kropipe/kropipe/e2e/stack"
)

// hydratedAppSet is the hydrator version of the example ApplicationSet, shown in docs/hydrator.md.
const hydratedAppSet = "testdata/services-hydrated.yaml"

// TestHydrator_ExampleApplicationSetHydratesThroughKroPlugin applies the hydrator version of the
// example ApplicationSet to Argo CD v3 (Source Hydrator on, argocd-commit-server running): every
// Application's dry source is rendered by the kro plugin and pushed to environments/<env>.
// The hydrated manifest.yaml must hold exactly what `cmp-sidecar generate` prints for that
// instance at the dry commit — same objects, same order, sync-wave annotations and labels —,
// hydrator.metadata and the git note on the hydrated commit must name the dry commit, and a
// sync of the Application must deploy the rendered Deployment from the hydrated branch.
func TestHydrator_ExampleApplicationSetHydratesThroughKroPlugin(t *testing.T) {
	t.Parallel()
	argo := hydratorArgoCD(t)
	applyHydratedAppSet(t, argo)

	for _, env := range []string{"develop", "staging"} {
		for _, service := range []string{"frontend", "backend"} {
			t.Run(env+"-"+service, func(t *testing.T) {
				t.Parallel()
				app, dryPath := "hydrated-"+env+"-"+service, env+"/"+service
				op := waitHydration(t, argo, app, "Hydrated")
				branch := "environments/" + env

				got := decodeManifests(t, branch+":"+dryPath+"/manifest.yaml", gitShowAt(t, op.HydratedSHA, dryPath+"/manifest.yaml"))
				want := decodeManifests(t, "cmp-sidecar generate", generateAt(t, op.DrySHA, dryPath, app, env+"-hydrated"))
				if len(want) == 0 {
					t.Fatalf("cmp-sidecar generate printed no object for %s at %.8s", dryPath, op.DrySHA)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s:%s/manifest.yaml differs from `cmp-sidecar generate` at dry commit %.8s\nhydrated:\n%s\ngenerate:\n%s",
						branch, dryPath, op.DrySHA, toJSON(got), toJSON(want))
				}
				for _, obj := range got {
					if _, ok := obj.GetAnnotations()["argocd.argoproj.io/sync-wave"]; !ok {
						t.Errorf("%s:%s/manifest.yaml: %s %s has no sync-wave annotation", branch, dryPath, obj.GetKind(), obj.GetName())
					}
				}

				var meta struct {
					DrySHA  string `json:"drySha"`
					RepoURL string `json:"repoURL"`
				}
				if err := json.Unmarshal(gitShowAt(t, op.HydratedSHA, dryPath+"/hydrator.metadata"), &meta); err != nil {
					t.Fatalf("%s:%s/hydrator.metadata: %v", branch, dryPath, err)
				}
				if meta.DrySHA != op.DrySHA || meta.RepoURL != st.Git.RepoURL(repoName) {
					t.Errorf("%s:%s/hydrator.metadata = drySha %q repoURL %q, want %q %q", branch, dryPath, meta.DrySHA, meta.RepoURL, op.DrySHA, st.Git.RepoURL(repoName))
				}
				if note := hydratorNote(t, op.HydratedSHA); note.DrySHA != op.DrySHA {
					t.Errorf("git note %s on hydrated commit %.8s names dry commit %q, want %q", hydratorNoteRef, op.HydratedSHA, note.DrySHA, op.DrySHA)
				}

				// No automated sync in the example (the promoter syncs); sync as it would.
				syncTo(t, argo, app, op.HydratedSHA)
				// The sync operation done at the hydrated commit, not Healthy: staging/frontend has
				// an Ingress, which stays Progressing without a load balancer to give it an
				// address. Not "Synced" either: the other plugin tests push to the same dry branch
				// meanwhile, Argo CD hydrates again, and the comparison moves to the newer commit.
				waitApp(t, argo, app, "synced to hydrated commit "+op.HydratedSHA[:8], func(a *v1alpha1.Application) bool {
					o := a.Status.OperationState
					return o != nil && o.Phase == "Succeeded" && o.SyncResult != nil && o.SyncResult.Revision == op.HydratedSHA
				})
				// The instance as the dry commit holds it: the other plugin tests push new tags to
				// the same repository while this one runs.
				instance := filepath.Join(t.TempDir(), "instance.yaml")
				if err := os.WriteFile(instance, gitShowAt(t, op.DrySHA, dryPath+"/instance.yaml"), 0o644); err != nil {
					t.Fatal(err)
				}
				image, tag := instanceImage(t, instance)
				assertImage(t, env+"-hydrated", instanceName(t, instance), image+":"+tag)
			})
		}
	}
}

// TestHydrator_BrokenInstanceFailsHydrationNamingTheFile: an Application whose dry source is the
// broken instance ends its hydration Failed, with cmp-sidecar's error (the file and the missing
// field) in status.sourceHydrator.currentOperation.message, and nothing is pushed to its
// hydrated branch.
func TestHydrator_BrokenInstanceFailsHydrationNamingTheFile(t *testing.T) {
	t.Parallel()
	argo := hydratorArgoCD(t)
	const app, path, branch = "hydrated-broken-frontend", "broken/frontend", "environments/broken"
	subject, problem := sidecarError(t, argo, app, path, "broken-hydrated")
	createHydratorApp(t, argo, app, path, branch, "broken-hydrated")

	op := waitHydration(t, argo, app, "Failed")
	t.Logf("hydration message: %s", op.Message)
	if !strings.Contains(op.Message, "cmp-sidecar: "+subject) || !strings.Contains(op.Message, problem) {
		t.Errorf("hydration message = %q, want cmp-sidecar's error %q ... %q", op.Message, "cmp-sidecar: "+subject, problem)
	}
	if !strings.Contains(op.Message, "instance.yaml") {
		t.Errorf("hydration message = %q, want it to name the file (instance.yaml)", op.Message)
	}
	gitMu.Lock()
	defer gitMu.Unlock()
	if out, err := checkout.Git(context.Background(), "ls-remote", "origin", "refs/heads/"+branch); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("hydrated branch %s after a failed hydration: %q (err %v), want none", branch, out, err)
	}
}

// hydratorArgoCD is the stack's Argo CD installation with the Source Hydrator.
func hydratorArgoCD(tb testing.TB) *stack.ArgoCDInstall {
	tb.Helper()
	for _, a := range st.ArgoCDInstalls {
		if a.Hydrator {
			return a
		}
	}
	tb.Fatal("no Argo CD installation of the stack runs the Source Hydrator (stack.WithArgoCDV3)")
	return nil
}

// applyHydratedAppSet applies hydratedAppSet to installation argo, pointed at the stack: its Git
// repository and API server, argo's namespace, Applications named hydrated-<env>-<service>
// deploying to <env>-hydrated (the other plugin tests own <env> and <env>-v3). It also checks
// that docs/hydrator.md shows the file as it is.
func applyHydratedAppSet(t *testing.T, argo *stack.ArgoCDInstall) {
	t.Helper()
	data, err := os.ReadFile(hydratedAppSet)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(st.PluginConfigDir, "docs", "hydrator.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, data) {
		t.Errorf("docs/hydrator.md does not show %s as it is: copy the file into the document", hydratedAppSet)
	}
	s := string(data)
	for _, r := range []struct{ old, new string }{
		{"https://git.example.com/platform/gitops.git", st.Git.RepoURL(repoName)},
		{"https://kubernetes.default.svc", st.APIServerURL},
		{"namespace: argocd\n", "namespace: " + argo.Namespace + "\n"},
		{`name: "{{ .env }}-{{ .service }}"`, `name: "hydrated-{{ .env }}-{{ .service }}"`},
		{`namespace: "{{ .env }}"`, `namespace: "{{ .env }}-hydrated"`},
	} {
		if !strings.Contains(s, r.old) {
			t.Fatalf("%s: %q not found; update this test's substitutions", hydratedAppSet, r.old)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	f := filepath.Join(t.TempDir(), "appset.yaml")
	if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyFile(context.Background(), f, argo.Namespace); err != nil {
		t.Fatalf("apply %s: %v", hydratedAppSet, err)
	}
}

// createHydratorApp creates an Application of argo whose dry source is path on main, rendered by
// the kro plugin, hydrated to branch. The dynamic client: the typed client of Argo CD v2.14 that
// the e2e module uses has no drySource.plugin (v3.3).
func createHydratorApp(t testing.TB, argo *stack.ArgoCDInstall, name, path, branch, namespace string) {
	t.Helper()
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": name, "namespace": argo.Namespace},
		"spec": map[string]any{
			"project": "default",
			"sourceHydrator": map[string]any{
				"drySource": map[string]any{
					"repoURL": st.Git.RepoURL(repoName), "targetRevision": "main", "path": path,
					"plugin": map[string]any{"name": "kro", "parameters": []any{map[string]any{"name": "rgd-paths", "string": "rgds"}}},
				},
				"syncSource": map[string]any{"targetBranch": branch, "path": path},
			},
			"destination": map[string]any{"server": st.APIServerURL, "namespace": namespace},
		},
	}}
	if _, err := st.Dynamic.Resource(stack.ApplicationGVR).Namespace(argo.Namespace).Create(context.Background(), app, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Application %s/%s: %v", argo.Namespace, name, err)
	}
}

// hydrateOperation is status.sourceHydrator.currentOperation (Argo CD v3).
type hydrateOperation struct {
	Phase       string `json:"phase"`
	Message     string `json:"message"`
	DrySHA      string `json:"drySHA"`
	HydratedSHA string `json:"hydratedSHA"`
}

// waitHydration waits until Application name's current hydrate operation is in phase (Hydrated
// or Failed) and returns it.
func waitHydration(t testing.TB, argo *stack.ArgoCDInstall, name, phase string) hydrateOperation {
	t.Helper()
	return waitHydrationOf(t, argo, name, phase, "")
}

// waitHydrationOf is waitHydration for the hydration of dry commit drySHA ("": any).
func waitHydrationOf(t testing.TB, argo *stack.ArgoCDInstall, name, phase, drySHA string) hydrateOperation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	start := time.Now()
	var last hydrateOperation
	for {
		u, err := st.Dynamic.Resource(stack.ApplicationGVR).Namespace(argo.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = hydrateOperation{}
			if m, ok, _ := unstructured.NestedMap(u.Object, "status", "sourceHydrator", "currentOperation"); ok {
				b, _ := json.Marshal(m)
				_ = json.Unmarshal(b, &last)
			}
			if last.Phase == phase && (drySHA == "" || last.DrySHA == drySHA) {
				t.Logf("Application %s/%s: hydration %s after %s (dry %.8s, hydrated %.8s)", argo.Namespace, name, phase,
					time.Since(start).Round(10*time.Millisecond), last.DrySHA, last.HydratedSHA)
				return last
			}
		} else if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			t.Logf("get Application %s/%s: %v", argo.Namespace, name, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Application %s/%s (Argo CD %s): hydration not %s after %s; current operation: %+v", argo.Namespace, name, argo.Version, phase, syncTimeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// syncTo asks Argo CD to sync Application name to revision, as `argocd app sync` and the promoter
// do: by writing an operation onto the Application.
func syncTo(t testing.TB, argo *stack.ArgoCDInstall, name, revision string) {
	t.Helper()
	op := map[string]any{"operation": &v1alpha1.Operation{
		InitiatedBy: v1alpha1.OperationInitiator{Username: "kropipe-e2e"},
		Sync:        &v1alpha1.SyncOperation{Revision: revision, SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"}},
	}}
	patch, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apps(argo).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("sync Application %s/%s: %v", argo.Namespace, name, err)
	}
}

// gitShowAt is file rel at commit rev of the served repository (every branch fetched first:
// rev may have been pushed by another checkout or by argocd-commit-server).
func gitShowAt(t *testing.T, rev, rel string) []byte {
	t.Helper()
	gitMu.Lock()
	defer gitMu.Unlock()
	ctx := context.Background()
	if _, err := checkout.Git(ctx, "fetch", "--quiet", "origin", "+refs/heads/*:refs/remotes/origin/*"); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	out, err := checkout.Git(ctx, "show", rev+":"+rel)
	if err != nil {
		t.Fatalf("read %s at %.8s: %v", rel, rev, err)
	}
	return []byte(out)
}

// hydratorNoteRef holds argocd-commit-server's git notes (commitserver/commit.NoteNamespace).
const hydratorNoteRef = "refs/notes/hydrator.metadata"

// hydratorNote is the git note argocd-commit-server put on hydrated commit sha.
func hydratorNote(t *testing.T, sha string) (note struct {
	DrySHA string `json:"drySha"`
}) {
	t.Helper()
	gitMu.Lock()
	defer gitMu.Unlock()
	ctx := context.Background()
	if _, err := checkout.Git(ctx, "fetch", "--quiet", "origin", "+"+hydratorNoteRef+":"+hydratorNoteRef); err != nil {
		t.Fatalf("fetch %s: %v", hydratorNoteRef, err)
	}
	out, err := checkout.Git(ctx, "notes", "--ref="+hydratorNoteRef, "show", sha)
	if err != nil {
		t.Fatalf("git note of hydrated commit %.8s: %v", sha, err)
	}
	if err := json.Unmarshal([]byte(out), &note); err != nil {
		t.Fatalf("git note of hydrated commit %.8s: %v: %s", sha, err, out)
	}
	return note
}

// generateAt runs the freshly built cmp-sidecar generate in folder path of the repository at
// commit sha, with what Argo CD's plugin protocol tells it for Application app deploying to
// namespace (the example's rgd-paths parameter included), and returns what it prints.
func generateAt(t *testing.T, sha, path, app, namespace string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	gitMu.Lock()
	_, err := checkout.Git(context.Background(), "worktree", "add", "--quiet", "--detach", dir, sha)
	gitMu.Unlock()
	if err != nil {
		t.Fatalf("check out dry commit %.8s: %v", sha, err)
	}
	t.Cleanup(func() {
		gitMu.Lock()
		defer gitMu.Unlock()
		_, _ = checkout.Git(context.Background(), "worktree", "remove", "--force", dir)
	})
	cmd := exec.Command(st.Binaries.CmpSidecar, "generate")
	cmd.Dir = filepath.Join(dir, path)
	cmd.Env = append(os.Environ(), "ARGOCD_APP_NAME="+app, "ARGOCD_APP_NAMESPACE="+namespace, "ARGOCD_APP_SOURCE_PATH="+path,
		"ARGOCD_APP_PROJECT_NAME=default", `ARGOCD_APP_PARAMETERS=[{"name":"rgd-paths","string":"rgds"}]`, "PARAM_RGD_PATHS=rgds",
		harnessRenderInProcess)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cmp-sidecar generate in %s at %.8s: %v\n%s", path, sha, err, stderr.String())
	}
	return out
}

// decodeManifests reads a stream of YAML or JSON documents (what names it) into objects, in order.
func decodeManifests(t *testing.T, what string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := stack.DecodeObjects(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return objs
}

func toJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
