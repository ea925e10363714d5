package argocd

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// flow is the in-cluster promotion chain on real Git and registry servers on
// 127.0.0.1, with Argo CD played by the test through a fake dynamic client.
type flow struct {
	t       *testing.T
	bare    string
	seed    string
	regHost string
	dataDir string
	store   stage.Store
	client  *dynamicfake.FakeDynamicClient
	cfg     Config
	clock   *clocktesting.FakeClock
	gf      *gateFixture
	down    atomic.Bool // the API server refuses patches
}

func newFlow(t *testing.T) *flow {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	registrytest.Push(t, host, "team/backend", "2.0.0")
	seed, err := gitserver.GitOutput(context.Background(), bare, "rev-parse", "main")
	if err != nil {
		t.Fatal(err)
	}
	seed = strings.TrimSpace(seed)
	var objs []runtime.Object
	var apps []*unstructured.Unstructured
	for svc, c := range map[string]string{"frontend": "^1.2", "backend": "^2.0"} {
		a := app("develop-"+svc, "develop/"+svc, map[string]string{AnnImage: host + "/team/" + svc, AnnConstraint: c, AnnAutoRollback: "true"})
		_ = unstructured.SetNestedField(a.Object, srv.URL("gitops.git"), "spec", "source", "repoURL")
		a.SetResourceVersion("1")
		a.Object["status"] = argoStatus(seed, "Synced", "Healthy", "Succeeded", "")
		objs, apps = append(objs, a), append(apps, a)
	}
	f := &flow{t: t, bare: bare, seed: seed, regHost: host, dataDir: t.TempDir(), store: &stage.MemoryStore{}, clock: clocktesting.NewFakeClock(tStart)}
	f.client = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), ListKinds, objs...)
	f.client.PrependReactor("patch", "applications", func(clienttesting.Action) (bool, runtime.Object, error) {
		if f.down.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	f.cfg = Derive(apps, nil)
	if len(f.cfg.Problems) != 0 || len(f.cfg.Specs) != 2 {
		t.Fatalf("config %+v", f.cfg)
	}
	f.gf = &gateFixture{t: t, client: f.client, clock: f.clock}
	return f
}

// start is a promoter process: a fresh engine and gate over the same Git data
// directory and state store.
func (f *flow) start() (*stage.Engine, *HealthGate) {
	f.t.Helper()
	wh, err := warehouse.New(warehouse.WithRegistry(f.regHost, warehouse.RegistryConfig{Insecure: true, RateLimit: -1}), warehouse.WithLogger(quiet()))
	if err != nil {
		f.t.Fatal(err)
	}
	gate := NewHealthGate(f.client, f.cfg, WithGateClock(f.clock), WithGateLogger(quiet()))
	e, err := stage.New(f.cfg.Specs, stage.WithWarehouse(wh), stage.WithGit(f.dataDir, gitwrite.WithLogger(quiet())),
		stage.WithStore(f.store), stage.WithVerifier(gate), stage.WithClock(f.clock), stage.WithLogger(quiet()))
	if err != nil {
		f.t.Fatal(err)
	}
	return e, gate
}

func (f *flow) log() []string {
	f.t.Helper()
	out, err := gitserver.GitOutput(context.Background(), f.bare, "log", "--format=%H %s", "main")
	if err != nil {
		f.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[:len(lines)-1]
}

// syncedTo returns the revisions of the sync patches per Application.
func (f *flow) syncedTo() map[string][]string {
	out := map[string][]string{}
	for _, a := range f.client.Actions() {
		if p, ok := a.(clienttesting.PatchAction); ok {
			rev := patchField(p.GetPatch(), "revision")
			out[p.GetName()] = append(out[p.GetName()], rev)
		}
	}
	return out
}

// patchField pulls a string field (the sync revision) out of a patch body.
func patchField(body []byte, key string) string {
	s := string(body)
	i := strings.Index(s, `"`+key+`":"`)
	if i < 0 {
		return ""
	}
	s = s[i+len(key)+4:]
	return s[:strings.Index(s, `"`)]
}

func TestFlow_KilledBetweenPushAndSyncPatch(t *testing.T) {
	f := newFlow(t)
	ctx := context.Background()

	// First process: pushes, then cannot patch (the API server is away, or the
	// process dies right there).
	f.down.Store(true)
	e1, _ := f.start()
	err := e1.Reconcile(ctx)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("first pass: %v", err)
	}
	commits := f.log()
	if len(commits) != 1 || !strings.HasSuffix(commits[0], " Promote image from 1.2.1 to 1.2.2") {
		t.Fatalf("commits %q", commits)
	}
	promo := strings.Fields(commits[0])[0]
	f.client.ClearActions()

	// Restarted process: no second commit, the sync is asked for exactly once.
	f.down.Store(false)
	e2, gate := f.start()
	for i := range 2 {
		if err := e2.Reconcile(ctx); err != nil {
			t.Fatalf("pass %d after the restart: %v", i+1, err)
		}
	}
	if got := f.log(); len(got) != 1 {
		t.Fatalf("commits after restart %q, want still one", got)
	}
	synced := f.syncedTo()
	if len(synced) != 1 || len(synced["develop-frontend"]) != 1 || synced["develop-frontend"][0] != promo {
		t.Fatalf("sync patches %v, want one on develop-frontend to %s", synced, promo)
	}
	if w := gate.Waiting("develop-frontend"); !strings.HasPrefix(w, "waiting: develop-frontend is syncing") {
		t.Fatalf("waiting reason %q", w)
	}

	f.gf.argo("develop-frontend", argoStatus(promo, "Synced", "Healthy", "Succeeded", ""))
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := e2.StatusOf("develop-frontend")
	if st.VerifiedFreight == nil || st.VerifiedFreight.Value != "1.2.2" || st.VerifiedFreight.Commit != promo {
		t.Fatalf("not verified at the promotion commit: %+v", st)
	}
	if st, _ := e2.StatusOf("develop-backend"); st.VerifiedFreight == nil || st.VerifiedFreight.Value != "2.0.0" {
		t.Fatalf("develop-backend, Synced and Healthy at the seed, not verified: %+v", st)
	}
}

func TestFlow_UnhealthyPromotionRollsBackThroughTakeFailures(t *testing.T) {
	f := newFlow(t)
	ctx := context.Background()
	e, gate := f.start()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatalf("promoting pass: %v", err)
	}
	promo := strings.Fields(f.log()[0])[0]
	f.gf.argo("develop-frontend", argoStatus(promo, "Synced", "Degraded", "Succeeded", "Back-off restarting failed container"))
	// Degraded, but not yet for --health-timeout: waiting is no failure.
	if err := e.Reconcile(ctx); err != nil {
		t.Fatalf("pass within the health timeout: %v", err)
	}
	f.clock.Step(DefaultGateTimeout)
	err := e.Reconcile(ctx)
	if err == nil || !strings.Contains(err.Error(), "develop-frontend is Degraded at "+promo[:7]+" for 5m0s: Back-off restarting failed container") {
		t.Fatalf("pass after the timeout: %v", err)
	}
	// What the controller does after each pass.
	for _, fl := range gate.TakeFailures() {
		if !fl.AutoRollback {
			t.Fatalf("failure without auto-rollback: %+v", fl)
		}
		if _, err := e.Rollback(ctx, fl.Stage, ""); err != nil && !errors.Is(err, stage.ErrPending) {
			t.Fatalf("rollback: %v", err)
		}
	}
	commits := f.log()
	if len(commits) != 2 || !strings.HasSuffix(commits[0], " Roll back image from 1.2.2 to 1.2.1") {
		t.Fatalf("commits %q", commits)
	}
	back := strings.Fields(commits[0])[0]
	synced := f.syncedTo()
	if len(synced) != 1 || strings.Join(synced["develop-frontend"], ",") != promo+","+back {
		t.Fatalf("sync patches %v, want develop-frontend to %s then %s", synced, promo[:7], back[:7])
	}
	// 1.2.2 is rejected there now: the next passes do not promote it again.
	f.gf.argo("develop-frontend", argoStatus(back, "Synced", "Healthy", "Succeeded", ""))
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.log(); len(got) != 2 {
		t.Fatalf("commits %q", got)
	}
}
