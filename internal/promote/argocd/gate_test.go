package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

const (
	oldCommit = "0000000aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	promoted  = "1a2b3c4dddddddddddddddddddddddddddddddd1"
	later     = "5e6f7a8eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee2"
)

var tStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// staticApps maps every stage to the Application of the same name in argocd.
type staticApps map[string]Binding

func (s staticApps) App(stage string) (Binding, bool) { b, ok := s[stage]; return b, ok }

// seedApps are the seed's four Applications, Synced and Healthy at oldCommit.
func seedApps() []runtime.Object {
	var out []runtime.Object
	for _, n := range []string{"develop-frontend", "develop-backend", "staging-frontend", "staging-backend"} {
		env, svc, _ := strings.Cut(n, "-")
		a := app(n, env+"/"+svc, map[string]string{AnnImage: img(svc)})
		a.SetResourceVersion("1")
		a.Object["status"] = argoStatus(oldCommit, "Synced", "Healthy", "Succeeded", "")
		out = append(out, a)
	}
	return out
}

// argoStatus is an Application status as Argo CD writes it after an operation
// at rev finished at tStart and a comparison one second later.
func argoStatus(rev, sync, health, phase, msg string) map[string]any {
	st := map[string]any{
		"sync":         map[string]any{"status": sync, "revision": rev},
		"health":       map[string]any{"status": health, "message": msg},
		"reconciledAt": tStart.Add(time.Second).Format(time.RFC3339),
	}
	if phase != "" {
		st["operationState"] = map[string]any{
			"phase": phase, "message": msg,
			"operation":  map[string]any{"sync": map[string]any{"revision": rev}},
			"syncResult": map[string]any{"revision": rev},
			"startedAt":  tStart.Add(-time.Minute).Format(time.RFC3339),
			"finishedAt": tStart.Format(time.RFC3339),
		}
	}
	return st
}

type gateFixture struct {
	t      *testing.T
	client *dynamicfake.FakeDynamicClient
	clock  *clocktesting.FakeClock
	apps   staticApps
}

func newGateFixture(t *testing.T) *gateFixture {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), ListKinds, seedApps()...)
	apps := staticApps{}
	for _, n := range []string{"develop-frontend", "develop-backend", "staging-frontend", "staging-backend"} {
		apps[n] = Binding{Stage: n, App: AppRef{Namespace: "argocd", Name: n, UID: types.UID("uid-" + n)}, SourceIndex: -1, AutoRollback: n == "develop-frontend"}
	}
	return &gateFixture{t: t, client: client, clock: clocktesting.NewFakeClock(tStart), apps: apps}
}

func (f *gateFixture) gate(opts ...GateOption) *HealthGate {
	return NewHealthGate(f.client, f.apps, append([]GateOption{WithGateClock(f.clock), WithGateLogger(quiet())}, opts...)...)
}

// argo plays Argo CD: the requested operation is done, the status is status.
func (f *gateFixture) argo(name string, status map[string]any) {
	f.t.Helper()
	ctx := context.Background()
	u, err := f.client.Resource(ApplicationGVR).Namespace("argocd").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	delete(u.Object, "operation")
	u.Object["status"] = status
	if _, err := f.client.Resource(ApplicationGVR).Namespace("argocd").Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// patches returns the names of the Applications patched, and the last patch body.
func (f *gateFixture) patches() ([]string, map[string]any) {
	var names []string
	var body map[string]any
	for _, a := range f.client.Actions() {
		if p, ok := a.(clienttesting.PatchAction); ok {
			names = append(names, p.GetName())
			body = map[string]any{}
			if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	return names, body
}

func spec(name string) stage.Spec {
	return stage.Spec{Name: name, Image: img("frontend"), Strategy: "semver"}
}

var fr = freight.Freight{Image: img("frontend"), Tag: "1.2.2"}

func TestSyncer_PatchesOnlyThePromotedApp(t *testing.T) {
	f := newGateFixture(t)
	s := NewSyncer(f.client)
	if err := s.Sync(context.Background(), AppRef{Namespace: "argocd", Name: "develop-frontend"}, promoted, "Promote image from 1.2.1 to 1.2.2"); err != nil {
		t.Fatal(err)
	}
	names, body := f.patches()
	if len(names) != 1 || names[0] != "develop-frontend" {
		t.Fatalf("patched %v, want only develop-frontend", names)
	}
	want := `{"metadata":{"annotations":{"argocd.argoproj.io/refresh":"hard"},"resourceVersion":"1"},"operation":{"info":[{"name":"Reason","value":"Promote image from 1.2.1 to 1.2.2"}],"initiatedBy":{"username":"kropipe"},"sync":{"prune":true,"revision":"` + promoted + `","syncOptions":["CreateNamespace=true","ServerSideApply=true"]}}}`
	if got, _ := json.Marshal(body); string(got) != want {
		t.Fatalf("patch\n got %s\nwant %s", got, want)
	}
	u, _ := f.client.Resource(ApplicationGVR).Namespace("argocd").Get(context.Background(), "develop-backend", metav1.GetOptions{})
	if _, ok := u.Object["operation"]; ok {
		t.Fatal("a sibling got an operation")
	}
}

func TestSyncer_MultiSourceSyncsItsSourceOnly(t *testing.T) {
	a := app("develop-frontend", "", nil)
	a.SetResourceVersion("1")
	unstructured.RemoveNestedField(a.Object, "spec", "source")
	unstructured.RemoveNestedField(a.Object, "spec", "syncPolicy")
	_ = unstructured.SetNestedSlice(a.Object, []any{
		map[string]any{"repoURL": "https://charts.example.com", "chart": "redis", "targetRevision": "17.0.0"},
		map[string]any{"repoURL": testRepo, "path": "develop/frontend", "targetRevision": "main"},
	}, "spec", "sources")
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), ListKinds, a)
	if err := NewSyncer(client).SyncSource(context.Background(), AppRef{Namespace: "argocd", Name: "develop-frontend"}, 1, promoted, "r"); err != nil {
		t.Fatal(err)
	}
	u, _ := client.Resource(ApplicationGVR).Namespace("argocd").Get(context.Background(), "develop-frontend", metav1.GetOptions{})
	revs, _, _ := unstructured.NestedStringSlice(u.Object, "operation", "sync", "revisions")
	if strings.Join(revs, ",") != "17.0.0,"+promoted {
		t.Fatalf("revisions %v", revs)
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "operation", "sync", "prune"); ok {
		t.Fatal("prune set without an automated policy")
	}
}

func TestSyncer_WaitsForRunningOperation(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(u *unstructured.Unstructured)
		want   string
	}{
		{"operation requested", func(u *unstructured.Unstructured) {
			u.Object["operation"] = map[string]any{"sync": map[string]any{"revision": oldCommit}, "initiatedBy": map[string]any{"username": "alice"}}
		}, "waiting: develop-frontend has an operation running (requested by alice); kropipe syncs it to 1a2b3c4 when it ends"},
		{"operation in progress", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "Running", "status", "operationState", "phase")
		}, "waiting: develop-frontend has an operation running (Running)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := seedApps()
			tt.mutate(objs[0].(*unstructured.Unstructured))
			client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), ListKinds, objs...)
			err := NewSyncer(client).Sync(context.Background(), AppRef{Namespace: "argocd", Name: "develop-frontend"}, promoted, "r")
			if !errors.Is(err, stage.ErrPending) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrPending %q", err, tt.want)
			}
			for _, a := range client.Actions() {
				if a.GetVerb() == "patch" {
					t.Fatal("patched while an operation runs")
				}
			}
		})
	}
}

func TestHealthGate_SyncsOnceThenVerifiesWhenSyncedAndHealthy(t *testing.T) {
	f := newGateFixture(t)
	g := f.gate(WithSubject(func(context.Context, stage.Spec, string) string { return "Promote image from 1.2.1 to 1.2.2" }))
	ctx := context.Background()
	sp := spec("develop-frontend")

	err := g.Verify(ctx, sp, fr, promoted)
	if !errors.Is(err, stage.ErrPending) || err.Error() != "waiting: asked develop-frontend to sync to 1a2b3c4" {
		t.Fatalf("first call: %v", err)
	}
	if g.Waiting("develop-frontend") != err.Error() {
		t.Fatalf("Waiting %q", g.Waiting("develop-frontend"))
	}
	err = g.Verify(ctx, sp, fr, promoted)
	if !errors.Is(err, stage.ErrPending) || err.Error() != "waiting: develop-frontend is syncing (operation requested) at 1a2b3c4" {
		t.Fatalf("second call: %v", err)
	}
	// The last operation Argo CD reports finished (Succeeded, at an older commit); ours has not
	// started: its phase is not this operation's.
	u, err := f.client.Resource(ApplicationGVR).Namespace("argocd").Get(ctx, "develop-frontend", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Object["status"] = argoStatus("0ld0000000000000000000000000000000000000", "Synced", "Healthy", "Succeeded", "")
	if _, err := f.client.Resource(ApplicationGVR).Namespace("argocd").Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.Verify(ctx, sp, fr, promoted); err == nil || err.Error() != "waiting: develop-frontend is syncing (operation requested) at 1a2b3c4" {
		t.Fatalf("requested after a finished operation: %v", err)
	}
	f.argo("develop-frontend", argoStatus(promoted, "Synced", "Progressing", "Succeeded", ""))
	if err := g.Verify(ctx, sp, fr, promoted); err == nil || err.Error() != "waiting: develop-frontend is Synced/Progressing at 1a2b3c4" {
		t.Fatalf("progressing: %v", err)
	}
	st := argoStatus(promoted, "Synced", "Healthy", "Succeeded", "")
	st["reconciledAt"] = tStart.Add(-time.Second).Format(time.RFC3339)
	f.argo("develop-frontend", st)
	if err := g.Verify(ctx, sp, fr, promoted); !errors.Is(err, stage.ErrPending) || !strings.Contains(err.Error(), "has not compared develop-frontend since its sync finished") {
		t.Fatalf("stale comparison: %v", err)
	}
	f.argo("develop-frontend", argoStatus(promoted, "Synced", "Healthy", "Succeeded", ""))
	// The engine passes the branch head it read next pass; another stage moved it.
	if err := g.Verify(ctx, sp, fr, later); err != nil {
		t.Fatalf("healthy at the promotion commit: %v", err)
	}
	if names, body := f.patches(); len(names) != 1 || names[0] != "develop-frontend" {
		t.Fatalf("patches %v, want one on develop-frontend", names)
	} else if info := body["operation"].(map[string]any)["info"].([]any)[0].(map[string]any); info["value"] != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("reason %v", info)
	}
	if g.Waiting("develop-frontend") != "" {
		t.Fatal("still waiting after verification")
	}
}

func TestHealthGate_RestartBetweenPushAndSyncPatch(t *testing.T) {
	ctx := context.Background()
	sp := spec("develop-frontend")
	t.Run("sync not yet asked: a fresh gate asks once", func(t *testing.T) {
		f := newGateFixture(t)
		// The promoter pushed promoted and died; Argo CD still shows the old commit.
		g := f.gate()
		_ = g.Verify(ctx, sp, fr, promoted)
		_ = g.Verify(ctx, sp, fr, promoted)
		if names, _ := f.patches(); len(names) != 1 {
			t.Fatalf("patches %v, want exactly one", names)
		}
	})
	t.Run("sync already asked: a fresh gate does not patch again", func(t *testing.T) {
		for _, phase := range []string{"Running", "Succeeded"} {
			f := newGateFixture(t)
			st := argoStatus(promoted, "OutOfSync", "Progressing", phase, "")
			if phase == "Succeeded" {
				st["sync"] = map[string]any{"status": "OutOfSync", "revision": oldCommit}
			}
			f.argo("develop-frontend", st)
			f.client.ClearActions()
			_ = f.gate().Verify(ctx, sp, fr, promoted)
			if names, _ := f.patches(); len(names) != 0 {
				t.Fatalf("%s: patched %v again", phase, names)
			}
		}
	})
}

func TestHealthGate_AlreadySyncedByArgoCDNeedsNoOperation(t *testing.T) {
	f := newGateFixture(t)
	f.argo("develop-frontend", argoStatus(promoted, "Synced", "Healthy", "Succeeded", ""))
	f.client.ClearActions()
	if err := f.gate().Verify(context.Background(), spec("develop-frontend"), fr, promoted); err != nil {
		t.Fatal(err)
	}
	if names, _ := f.patches(); len(names) != 0 {
		t.Fatalf("patched %v", names)
	}
}

func TestHealthGate_DescendantRevisionCountsWithContains(t *testing.T) {
	f := newGateFixture(t)
	f.argo("develop-frontend", argoStatus(later, "Synced", "Healthy", "Succeeded", ""))
	f.client.ClearActions()
	g := f.gate(WithContains(func(_ context.Context, _ stage.Spec, a, d string) bool { return a == promoted && d == later }))
	if err := g.Verify(context.Background(), spec("develop-frontend"), fr, promoted); err != nil {
		t.Fatal(err)
	}
	if names, _ := f.patches(); len(names) != 0 {
		t.Fatalf("patched %v", names)
	}
}

func TestHealthGate_UnhealthyBeyondTimeoutFails(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status map[string]any
		want   string
	}{
		{"degraded", argoStatus(promoted, "Synced", "Degraded", "Succeeded", "Deployment frontend exceeded its progress deadline"),
			"application unhealthy after promotion: develop-frontend is Degraded at 1a2b3c4 for 5m0s: Deployment frontend exceeded its progress deadline"},
		{"sync failed", argoStatus(promoted, "OutOfSync", "Missing", "Failed", "one or more objects failed to apply"),
			"application unhealthy after promotion: develop-frontend is sync Failed at 1a2b3c4 for 5m0s: one or more objects failed to apply"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newGateFixture(t)
			g := f.gate()
			ctx := context.Background()
			sp := spec("develop-frontend")
			_ = g.Verify(ctx, sp, fr, promoted) // asks for the sync
			f.argo("develop-frontend", tt.status)
			err := g.Verify(ctx, sp, fr, promoted)
			if !errors.Is(err, stage.ErrPending) || !strings.Contains(err.Error(), "failing in 5m0s unless it recovers") {
				t.Fatalf("first bad sight: %v", err)
			}
			f.clock.Step(5 * time.Minute)
			err = g.Verify(ctx, sp, fr, promoted)
			if !errors.Is(err, ErrUnhealthy) || err.Error() != tt.want {
				t.Fatalf("after the timeout: %v\nwant %s", err, tt.want)
			}
			_ = g.Verify(ctx, sp, fr, promoted)
			fails := g.TakeFailures()
			if len(fails) != 1 || fails[0].Stage != "develop-frontend" || !fails[0].AutoRollback || fails[0].Value != "1.2.2" || fails[0].Commit != promoted || !errors.Is(fails[0].Err, ErrUnhealthy) {
				t.Fatalf("failures %+v, want one", fails)
			}
			if len(g.TakeFailures()) != 0 {
				t.Fatal("failure reported twice")
			}
			if names, _ := f.patches(); len(names) != 1 {
				t.Fatalf("patches %v, want the one sync", names)
			}
		})
	}
}

func TestHealthGate_RecoveryResetsTheTimeout(t *testing.T) {
	f := newGateFixture(t)
	g := f.gate()
	ctx := context.Background()
	sp := spec("develop-frontend")
	_ = g.Verify(ctx, sp, fr, promoted)
	f.argo("develop-frontend", argoStatus(promoted, "Synced", "Degraded", "Succeeded", "crash"))
	_ = g.Verify(ctx, sp, fr, promoted)
	f.clock.Step(4 * time.Minute)
	f.argo("develop-frontend", argoStatus(promoted, "Synced", "Progressing", "Succeeded", ""))
	_ = g.Verify(ctx, sp, fr, promoted)
	f.argo("develop-frontend", argoStatus(promoted, "Synced", "Degraded", "Succeeded", "crash"))
	f.clock.Step(4 * time.Minute)
	if err := g.Verify(ctx, sp, fr, promoted); !errors.Is(err, stage.ErrPending) {
		t.Fatalf("timeout not reset by recovery: %v", err)
	}
}

func TestHealthGate_AppDeletedMidPromotion(t *testing.T) {
	f := newGateFixture(t)
	g := f.gate()
	ctx := context.Background()
	sp := spec("develop-frontend")
	_ = g.Verify(ctx, sp, fr, promoted)
	if err := f.client.Resource(ApplicationGVR).Namespace("argocd").Delete(ctx, "develop-frontend", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := g.Verify(ctx, sp, fr, promoted)
	if !errors.Is(err, ErrAppNotFound) || errors.Is(err, stage.ErrPending) ||
		err.Error() != `stage "develop-frontend": 1.2.2 was written in 1a2b3c4 but application not found: Application argocd/develop-frontend was deleted; recreate it, or remove its kropipe.io annotations to drop the stage` {
		t.Fatalf("error %v", err)
	}
	if err := g.Verify(ctx, spec("nowhere"), fr, promoted); err == nil || !strings.Contains(err.Error(), `stage "nowhere" has no Argo CD Application`) {
		t.Fatalf("unbound stage: %v", err)
	}
}

func TestHealthGate_AppDeletedBetweenReadAndPatch(t *testing.T) {
	f := newGateFixture(t)
	f.client.PrependReactor("patch", "applications", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errNotFound("develop-frontend")
	})
	err := f.gate().Verify(context.Background(), spec("develop-frontend"), fr, promoted)
	if !errors.Is(err, ErrAppNotFound) || !strings.Contains(err.Error(), "was deleted before its sync to 1a2b3c4") {
		t.Fatalf("error %v", err)
	}
}

func TestHealthGate_SyncIfWaitsForArgoCDInstead(t *testing.T) {
	f := newGateFixture(t)
	g := f.gate(WithSyncIf(func(_ context.Context, _ stage.Spec, commit string) bool { return commit == promoted }))
	err := g.Verify(context.Background(), spec("develop-backend"), freight.Freight{Image: img("backend"), Tag: "1.2.1"}, later)
	if !errors.Is(err, stage.ErrPending) || err.Error() != "waiting: develop-backend is Synced/Healthy at 0000000" {
		t.Fatalf("error %v", err)
	}
	if names, _ := f.patches(); len(names) != 0 {
		t.Fatalf("patched %v", names)
	}
}

func TestHealthGate_OldFailedOperationOfAnotherRevisionDoesNotBlock(t *testing.T) {
	f := newGateFixture(t)
	st := argoStatus(oldCommit, "Synced", "Healthy", "Failed", "an old manual sync failed")
	st["sync"] = map[string]any{"status": "Synced", "revision": promoted} // Argo CD compared the new commit since
	f.argo("develop-frontend", st)
	f.client.ClearActions()
	if err := f.gate().Verify(context.Background(), spec("develop-frontend"), fr, promoted); err != nil {
		t.Fatal(err)
	}
	if names, _ := f.patches(); len(names) != 0 {
		t.Fatalf("patched %v", names)
	}
}

// In pull-request mode a merge commit brings the promotion into the branch: kropipe's own
// commit sits on the pull request's branch, a tree the branch never held (without what was
// merged into it meanwhile). Argo CD is asked to sync the merge commit; a push mode stage
// syncs its promotion commit as before.
func TestHealthGate_PullRequestModeSyncsTheMergeCommitThatLandedIt(t *testing.T) {
	const merge = "3e4f5a6bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb3"
	for _, tt := range []struct {
		name, write, want string
	}{
		{"pull-request mode: the merge commit", stage.WritePullRequest, merge},
		{"push mode: the promotion commit", stage.WritePush, promoted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newGateFixture(t)
			g := f.gate(
				WithLanded(func(_ context.Context, _ stage.Spec, commit string) string {
					if commit == promoted {
						return merge
					}
					return ""
				}),
				WithContains(func(_ context.Context, _ stage.Spec, a, d string) bool { return a == promoted && d == merge }),
			)
			ctx := context.Background()
			sp := spec("develop-frontend")
			sp.Write = tt.write

			err := g.Verify(ctx, sp, fr, promoted)
			if !errors.Is(err, stage.ErrPending) || err.Error() != "waiting: asked develop-frontend to sync to "+tt.want[:7] {
				t.Fatalf("first call: %v", err)
			}
			names, body := f.patches()
			if len(names) != 1 || names[0] != "develop-frontend" {
				t.Fatalf("patches %v, want one on develop-frontend", names)
			}
			if rev := body["operation"].(map[string]any)["sync"].(map[string]any)["revision"]; rev != tt.want {
				t.Fatalf("sync revision %v, want %s", rev, tt.want)
			}
			// A failed sync to it is this promotion's: judged, not asked again.
			f.argo("develop-frontend", argoStatus(tt.want, "OutOfSync", "Missing", "Failed", "one or more objects failed to apply"))
			if err := g.Verify(ctx, sp, fr, promoted); !errors.Is(err, stage.ErrPending) || !strings.Contains(err.Error(), "sync Failed") {
				t.Fatalf("failed sync: %v", err)
			}
			if names, _ := f.patches(); len(names) != 1 {
				t.Fatalf("patches %v after a failed sync, want the one", names)
			}
			f.argo("develop-frontend", argoStatus(tt.want, "Synced", "Healthy", "Succeeded", ""))
			if err := g.Verify(ctx, sp, fr, promoted); err != nil {
				t.Fatalf("Synced and Healthy at %s: %v", tt.want[:7], err)
			}
		})
	}
}
