package controller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// newShopEnv is a cluster whose develop-frontend and develop-backend Applications form the
// release group develop/shop, beside develop-cart, a kropipe stage outside the group.
func newShopEnv(t *testing.T, memberAnnotations map[string]any) clusterEnv {
	t.Helper()
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	registrytest.Push(t, host, "team/backend", "2.0.0", "2.1.0")
	registrytest.Push(t, host, "team/cart", "0.9.0")
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/groupseed")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name, service, constraint string, more map[string]any) runtime.Object {
		ann := map[string]any{
			"kropipe.io/image":                           host + "/team/" + service,
			"kropipe.io/constraint":                      constraint,
			"argocd.argoproj.io/manifest-generate-paths": ".",
		}
		for k, v := range more {
			ann[k] = v
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1",
			"kind":       "Application",
			"metadata":   map[string]any{"name": name, "namespace": "argocd", "annotations": ann},
			"spec": map[string]any{
				"source":      map[string]any{"repoURL": srv.URL("gitops.git"), "targetRevision": "main", "path": "develop/" + service},
				"destination": map[string]any{"namespace": service + "-develop"},
			},
		}}
	}
	group := map[string]any{"kropipe.io/group": "develop/shop"}
	for k, v := range memberAnnotations {
		group[k] = v
	}
	e := clusterEnv{
		bare: bare, regHost: host, kube: kubefake.NewClientset(),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), argocd.ListKinds,
			mk("develop-frontend", "frontend", "^1.2", group), mk("develop-backend", "backend", "^2", group), mk("develop-cart", "cart", "^0.9", nil)),
		blockPatches: &atomic.Bool{},
	}
	e.dyn.PrependReactor("patch", "applications", func(k8stesting.Action) (bool, runtime.Object, error) {
		if e.blockPatches.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	return e
}

func waitGroup(t *testing.T, c *api.Client, logs *syncBuffer, what string, ok func(stage.Status) bool) stage.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Stage(context.Background(), "develop/shop")
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("develop/shop never %s: %v %+v\n%s", what, err, st, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// In the cluster a group's members are in the order of their Applications' names.
const shopCommit = "Promote shop: backend 2.0.0 → 2.1.0, frontend 1.2.1 → 1.2.2\nSeed repository\n"

func TestController_ReleaseGroupSyncsEveryMemberAndVerifiesTheSetTogether(t *testing.T) {
	e := newShopEnv(t, nil)
	addr, logs, _ := e.start(t, configFor(""))
	c := api.NewClient(addr, "", nil)
	waitGroup(t, c, logs, "promoted", func(st stage.Status) bool {
		return st.CurrentTag == "develop-backend=2.1.0, develop-frontend=1.2.2"
	})
	if got := gitLog(t, e.bare); got != shopCommit {
		t.Fatalf("git log:\n%s\nwant one commit for the set", got)
	}
	commit := head(t, e.bare)
	e.waitSyncRequested(t, "develop-frontend", commit, logs)
	e.waitSyncRequested(t, "develop-backend", commit, logs)
	if _, ok := e.app(t, "develop-cart").Object["operation"]; ok {
		t.Fatal("develop-cart, outside the group, got an operation")
	}
	// One member synced is not the set verified.
	e.finishSync(t, "develop-frontend", commit)
	if st, _ := c.Stage(context.Background(), "develop/shop"); st.VerifiedFreight != nil {
		t.Fatalf("verified with one member synced: %+v", st)
	}
	e.finishSync(t, "develop-backend", commit)
	st := waitGroup(t, c, logs, "verified", func(st stage.Status) bool { return st.VerifiedFreight != nil })
	if st.VerifiedFreight.Commit != commit || len(st.Members) != 2 {
		t.Fatalf("develop/shop %+v", st)
	}
	if got := gitLog(t, e.bare); got != shopCommit {
		t.Fatalf("git log after verification:\n%s", got)
	}
}

func TestController_ReleaseGroupKilledBetweenCommitAndSyncIsSyncedByTheNextLeaderWithoutASecondCommit(t *testing.T) {
	e := newShopEnv(t, nil)
	e.blockPatches.Store(true)
	firstAddr, firstLogs, stopFirst := e.start(t, configFor(""))
	waitGroup(t, api.NewClient(firstAddr, "", nil), firstLogs, "promoted by the first replica", func(st stage.Status) bool {
		return st.CurrentTag == "develop-backend=2.1.0, develop-frontend=1.2.2"
	})
	commit := head(t, e.bare)
	_, logs, _ := e.start(t, configFor(""))
	if err := stopFirst(); err != nil {
		t.Fatal(err)
	}
	e.blockPatches.Store(false)
	e.waitSyncRequested(t, "develop-frontend", commit, logs)
	e.waitSyncRequested(t, "develop-backend", commit, logs)
	if got := gitLog(t, e.bare); got != shopCommit {
		t.Fatalf("git log after the takeover:\n%s\nwant exactly one commit for the set", got)
	}
}

// A member Degraded past the health timeout, with kropipe.io/auto-rollback, rolls the whole
// set back in one commit that rejects it; the set is not promoted again.
func TestController_ReleaseGroupMemberDegradedRollsTheSetBack(t *testing.T) {
	e := newShopEnv(t, map[string]any{"kropipe.io/auto-rollback": "true"})
	f := configFor("")
	f.HealthTimeout = time.Second
	addr, logs, _ := e.start(t, f)
	c := api.NewClient(addr, "", nil)
	waitGroup(t, c, logs, "promoted", func(st stage.Status) bool {
		return st.CurrentTag == "develop-backend=2.1.0, develop-frontend=1.2.2"
	})
	commit := head(t, e.bare)
	e.waitSyncRequested(t, "develop-backend", commit, logs)
	e.waitSyncRequested(t, "develop-frontend", commit, logs)
	e.finishSync(t, "develop-frontend", commit)
	e.finishSync(t, "develop-backend", commit)
	u := e.app(t, "develop-backend")
	_ = unstructured.SetNestedField(u.Object, "Degraded", "status", "health", "status")
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, c, logs, "rolled back and settled", func(st stage.Status) bool {
		return st.CurrentTag == "develop-backend=2.0.0, develop-frontend=1.2.1" && st.Decision != stage.DecisionPromote
	})
	last, err := gitserver.GitOutput(context.Background(), e.bare, "log", "-1", "--format=%s%n%(trailers:key=Kropipe-Rejected,valueonly,separator=%x2C)", "main")
	if err != nil || strings.TrimSpace(last) != "Roll back shop: backend 2.1.0 → 2.0.0, frontend 1.2.2 → 1.2.1\n2.1.0,1.2.2" {
		t.Fatalf("last commit %q, %v; want the set rolled back and rejected", last, err)
	}
	if got := gitLog(t, e.bare); strings.Count(got, "\n") != 3 {
		t.Fatalf("git log:\n%s\nwant the set and its rollback only", got)
	}
	// The set's rollback is told on every member's Application: each moved.
	evs, err := e.kube.CoreV1().Events("argocd").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"develop-backend", "develop-frontend"} {
		if !slices.ContainsFunc(evs.Items, func(ev corev1.Event) bool {
			return ev.InvolvedObject.Name == app && ev.Reason == argocd.ReasonRolledBack
		}) {
			t.Errorf("no RolledBack Event on %s", app)
		}
	}
}
