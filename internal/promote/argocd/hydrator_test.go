package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// Hydrated commits on environments/develop: nothing reads them from Git, Argo CD names them.
const (
	hydrated0 = "0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d" // of the seed
	hydrated1 = "1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d"
	hydrated2 = "2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d"
)

// hydratorApps reads testdata/hydrator/applications.yaml with the dry repository and the
// registry host filled in.
func hydratorApps(t *testing.T, repo, registry string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "hydrator", "applications.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("REPO", repo, "REGISTRY", registry).Replace(string(data))
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(text, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// hyd is what status.sourceHydrator says, as the hydrator writes it.
type hyd struct {
	phase, message, dry, hydrated string // currentOperation
	lastDry, lastHydrated         string // lastSuccessfulOperation
	compared                      string // lastComparedDryRevision
	started                       time.Time
}

func (h hyd) status() map[string]any {
	st := map[string]any{}
	if h.phase != "" {
		started := h.started
		if started.IsZero() {
			started = tStart
		}
		op := map[string]any{"phase": h.phase, "message": h.message, "startedAt": started.Format(time.RFC3339)}
		if h.dry != "" {
			op["drySHA"] = h.dry
		}
		if h.hydrated != "" {
			op["hydratedSHA"] = h.hydrated
		}
		st["currentOperation"] = op
	}
	if h.lastDry != "" {
		st["lastSuccessfulOperation"] = map[string]any{"drySHA": h.lastDry, "hydratedSHA": h.lastHydrated}
	}
	if h.compared != "" {
		st["lastComparedDryRevision"] = h.compared
	}
	return st
}

// hydrated is a hydration of dry into hydratedSHA that succeeded.
func hydrated(dry, hydratedSHA string) hyd {
	return hyd{phase: HydrationHydrated, dry: dry, hydrated: hydratedSHA, lastDry: dry, lastHydrated: hydratedSHA, compared: dry}
}

// withHydration adds status.sourceHydrator to an Application status.
func withHydration(st map[string]any, h hyd) map[string]any {
	st["sourceHydrator"] = h.status()
	return st
}

func TestDerive_HydratorApplicationWritesItsDrySource(t *testing.T) {
	cfg := Derive(hydratorApps(t, testRepo, "registry.example.com"), nil)
	if len(cfg.Problems) != 0 || len(cfg.Warnings) != 0 {
		t.Fatalf("problems %v warnings %v", cfg.Problems, cfg.Warnings)
	}
	var df stage.Spec
	for _, s := range cfg.Specs {
		if s.Name == "develop-frontend" {
			df = s
		}
	}
	if df.RepoURL != testRepo || df.Branch != "main" || df.File != "develop/frontend/instance.yaml" || df.Key != "spec.values.deployment.tag" || df.Constraint != "^1.2" {
		t.Fatalf("develop-frontend %+v, want the instance file of the dry source on its dry branch", df)
	}
	b := cfg.Bindings["develop-frontend"]
	want := &Hydrator{SyncRepoURL: testRepo, SyncBranch: "environments/develop", SyncPath: "develop/frontend"}
	if !reflect.DeepEqual(b.Hydrator, want) || b.SourceIndex != -1 || !b.AutoRollback {
		t.Fatalf("binding %+v hydrator %+v", b, b.Hydrator)
	}
	if len(cfg.Specs) != 2 || cfg.Bindings["develop-backend"].Hydrator == nil {
		t.Fatalf("stages %+v", cfg.Specs)
	}
}

func TestDerive_HydratorProblemsBlockOnlyTheirStage(t *testing.T) {
	change := func(fn func(u *unstructured.Unstructured)) []*unstructured.Unstructured {
		apps := hydratorApps(t, testRepo, "registry.example.com")
		fn(apps[0]) // develop-frontend
		return apps
	}
	annotate := func(u *unstructured.Unstructured, k, v string) {
		a := u.GetAnnotations()
		a[k] = v
		u.SetAnnotations(a)
	}
	hydrator := []string{"spec", "sourceHydrator"}
	at := func(p ...string) []string { return append(append([]string(nil), hydrator...), p...) }
	tests := []struct {
		name    string
		apps    []*unstructured.Unstructured
		field   string
		message string // substring; "" for no problem
		file    string // the stage's file when there is no problem
		sets    []*unstructured.Unstructured
	}{
		{
			name: "dry source without plugin and without kropipe.io/file",
			apps: change(func(u *unstructured.Unstructured) {
				unstructured.RemoveNestedField(u.Object, at("drySource", "plugin")...)
			}),
			field: AnnFile, message: "is missing, and spec.sourceHydrator.drySource names no plugin: kropipe assumes the kro plugin's develop/frontend/instance.yaml only for a dry source the kro plugin renders; set kropipe.io/file",
		},
		{
			name: "dry source without plugin, with kropipe.io/file",
			apps: change(func(u *unstructured.Unstructured) {
				unstructured.RemoveNestedField(u.Object, at("drySource", "plugin")...)
				annotate(u, AnnFile, "develop/frontend/values.yaml")
			}),
			file: "develop/frontend/values.yaml",
		},
		{
			name: "hydrateTo",
			apps: change(func(u *unstructured.Unstructured) {
				_ = unstructured.SetNestedField(u.Object, "environments/develop-next", at("hydrateTo", "targetBranch")...)
			}),
			field: fieldHydrateTo, message: `is set: Argo CD pushes the hydrated manifests to "environments/develop-next" for another process to move to "environments/develop"`,
		},
		{
			name: "no sync branch",
			apps: change(func(u *unstructured.Unstructured) {
				unstructured.RemoveNestedField(u.Object, at("syncSource", "targetBranch")...)
			}),
			field: fieldSyncBranch, message: "is empty; Argo CD pushes the hydrated manifests to that branch",
		},
		{
			name:  "kropipe.io/source",
			apps:  change(func(u *unstructured.Unstructured) { annotate(u, AnnSource, "0") }),
			field: AnnSource, message: "the Application renders through spec.sourceHydrator",
		},
		{
			name: "kropipe.io/source of the ApplicationSet, for its multi-source members",
			apps: func() []*unstructured.Unstructured {
				apps := hydratorApps(t, testRepo, "registry.example.com")
				for _, a := range apps {
					ownedBy(a, "services")
				}
				return apps
			}(),
			sets: []*unstructured.Unstructured{appset("services", map[string]string{AnnSource: "gitops"})},
			file: "develop/frontend/instance.yaml",
		},
		{
			name: "dry source without repoURL",
			apps: change(func(u *unstructured.Unstructured) {
				unstructured.RemoveNestedField(u.Object, at("drySource", "repoURL")...)
			}),
			field: fieldDryRepoURL, message: "is empty; kropipe needs the Git repository",
		},
		{
			name: "OCI dry source",
			apps: change(func(u *unstructured.Unstructured) {
				_ = unstructured.SetNestedField(u.Object, "oci://registry.example.com/gitops", at("drySource", "repoURL")...)
			}),
			field: fieldDryRepoURL, message: "is the OCI artifact oci://registry.example.com/gitops, not a Git repository",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Derive(tt.apps, tt.sets)
			if _, ok := cfg.Bindings["develop-backend"]; !ok {
				t.Fatalf("develop-backend blocked too: %+v", cfg.Problems)
			}
			if tt.message == "" {
				if len(cfg.Problems) != 0 {
					t.Fatalf("problems %v", cfg.Problems)
				}
				for _, s := range cfg.Specs {
					if s.Name == "develop-frontend" && s.File != tt.file {
						t.Fatalf("file %q, want %q", s.File, tt.file)
					}
				}
				return
			}
			if len(cfg.Problems) != 1 {
				t.Fatalf("problems %v, want one", cfg.Problems)
			}
			p := cfg.Problems[0]
			if p.Stage != "develop-frontend" || p.Field != tt.field || !strings.Contains(p.Message, tt.message) {
				t.Fatalf("problem %+v\nwant field %s, message containing %q", p, tt.field, tt.message)
			}
			if _, ok := cfg.Bindings["develop-frontend"]; ok {
				t.Fatal("develop-frontend runs despite its problem")
			}
		})
	}
}

func TestDecideHydration(t *testing.T) {
	const promo, after, before = "p000000", "d000000", "o000000"
	pushed := tStart.Add(-time.Minute) // hyd's operations start at tStart
	covers := func(dry string) bool { return dry == promo || dry == after }
	tests := []struct {
		name    string
		h       hyd
		syncTo  string
		targets []string
		failed  string
		wait    string // substring
		ask     bool
	}{
		{name: "never hydrated", h: hyd{}, wait: "has not hydrated dry commit p000000 of develop-frontend yet (it has hydrated nothing yet: is the Source Hydrator enabled (hydrator.enabled: \"true\" in argocd-cmd-params-cm) and argocd-commit-server running?)", ask: true},
		{name: "hydrating", h: hyd{phase: HydrationHydrating, lastDry: before, lastHydrated: hydrated0}, wait: "Argo CD is hydrating develop-frontend"},
		{name: "hydrated an older dry commit", h: hydrated(before, hydrated0), wait: "(last hydrated dry commit o000000)", ask: true},
		{name: "hydrated the promotion", h: hydrated(promo, hydrated1), syncTo: hydrated1, targets: []string{hydrated1}},
		{name: "hydrated a descendant", h: hydrated(after, hydrated2), syncTo: hydrated2, targets: []string{hydrated2}},
		{
			name:   "last success holds the promotion while a newer commit hydrates",
			h:      hyd{phase: HydrationHydrating, lastDry: promo, lastHydrated: hydrated1, compared: after},
			syncTo: hydrated1, targets: []string{hydrated1},
		},
		{
			name:   "hydrated a descendant after the promotion's own",
			h:      hyd{phase: HydrationHydrated, dry: after, hydrated: hydrated2, lastDry: after, lastHydrated: hydrated2},
			syncTo: hydrated2, targets: []string{hydrated2},
		},
		{
			name:   "failed at the promotion",
			h:      hyd{phase: HydrationFailed, dry: promo, message: "Failed to hydrate: failed to get manifests: rpc error", lastDry: before, lastHydrated: hydrated0},
			failed: "Failed to hydrate: failed to get manifests: rpc error",
		},
		{
			name:   "failed before resolving its dry commit, which was the promotion",
			h:      hyd{phase: HydrationFailed, message: "Failed to hydrate: develop/frontend/instance.yaml: bad", compared: promo},
			failed: "Failed to hydrate: develop/frontend/instance.yaml: bad",
		},
		{
			name:   "failed before resolving its dry commit, in an attempt started after the push",
			h:      hyd{phase: HydrationFailed, message: "Failed to hydrate: develop/frontend/instance.yaml: bad", compared: before},
			failed: "Failed to hydrate: develop/frontend/instance.yaml: bad",
		},
		{
			name: "failed before resolving its dry commit, in an attempt started before the push",
			h:    hyd{phase: HydrationFailed, message: "Failed to hydrate: boom", compared: before, started: pushed.Add(-time.Second)},
			wait: "its hydration of o000000 failed: Failed to hydrate: boom", ask: true,
		},
		{
			name: "failed at an older commit",
			h:    hyd{phase: HydrationFailed, dry: before, message: "Failed to hydrate: boom", compared: before},
			wait: "its hydration of o000000 failed: Failed to hydrate: boom", ask: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"sourceHydrator": tt.h.status()}}}
			got := decideHydration(readHydration(u.Object), "develop-frontend", promo, pushed, covers)
			if got.syncTo != tt.syncTo || !reflect.DeepEqual(got.targets, tt.targets) || got.failed != tt.failed || got.ask != tt.ask || !strings.Contains(got.wait, tt.wait) {
				t.Fatalf("got %+v\nwant syncTo %q targets %v failed %q wait %q ask %v", got, tt.syncTo, tt.targets, tt.failed, tt.wait, tt.ask)
			}
		})
	}
}

func TestSyncStatusOf_ShowsTheDryAndTheHydratedCommit(t *testing.T) {
	const dry = "5e6f7a8eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee2"
	u := hydratorApps(t, testRepo, "registry.example.com")[0]
	data, err := os.ReadFile(filepath.Join("testdata", "hydrator", "status-hydrated.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := yaml.Unmarshal([]byte(strings.NewReplacer("HYDRATED", hydrated1, "DRY", dry, "REPO", testRepo).Replace(string(data))), &st); err != nil {
		t.Fatal(err)
	}
	u.Object["status"] = st
	s := SyncStatusOf(u, -1)
	if s.Revision != hydrated1 || s.Status != "Synced" || s.Hydration == nil {
		t.Fatalf("sync status %+v", s)
	}
	h := s.Hydration
	if h.DryCommit != dry || h.HydratedCommit != hydrated1 || h.Phase != "Hydrated" || h.DryBranch != "main" || h.SyncBranch != "environments/develop" || h.LastDryCommit != dry {
		t.Fatalf("hydration %+v", h)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"hydration":{`, `"dryCommit":"` + dry, `"hydratedCommit":"` + hydrated1, `"syncBranch":"environments/develop"`} {
		if !strings.Contains(string(out), k) {
			t.Fatalf("JSON %s lacks %s", out, k)
		}
	}
	if s := SyncStatusOf(app("plain", "develop/frontend", nil), -1); s.Hydration != nil {
		t.Fatalf("an Application without a source hydrator has a hydration: %+v", s.Hydration)
	}
}

// hydratorFlow is the flow on hydrator Applications: the engine writes the dry branch main
// of a real Git server, Argo CD (hydrator included) is played by the test.
type hydratorFlow struct {
	*flow
	srv *gitserver.Server
}

func newHydratorFlow(t *testing.T, group string, tags map[string][]string) *hydratorFlow {
	t.Helper()
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", "testdata/seed")
	if err != nil {
		t.Fatal(err)
	}
	host := registrytest.Start(t)
	for repo, ts := range tags {
		registrytest.Push(t, host, "team/"+repo, ts...)
	}
	seed, err := gitserver.GitOutput(context.Background(), bare, "rev-parse", "main")
	if err != nil {
		t.Fatal(err)
	}
	seed = strings.TrimSpace(seed)
	apps := hydratorApps(t, srv.URL("gitops.git"), host)
	var objs []runtime.Object
	for _, a := range apps {
		if group != "" {
			ann := a.GetAnnotations()
			ann[AnnGroup] = group
			a.SetAnnotations(ann)
		}
		a.Object["status"] = withHydration(argoStatus(hydrated0, "Synced", "Healthy", "Succeeded", ""), hydrated(seed, hydrated0))
		objs = append(objs, a)
	}
	f := &flow{t: t, bare: bare, seed: seed, regHost: host, dataDir: t.TempDir(), store: &stage.MemoryStore{}, clock: clocktesting.NewFakeClock(tStart)}
	f.client = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), ListKinds, objs...)
	f.cfg = Derive(apps, nil)
	if len(f.cfg.Problems) != 0 || len(f.cfg.Specs) != 2 {
		t.Fatalf("config %+v", f.cfg)
	}
	f.gf = &gateFixture{t: t, client: f.client, clock: f.clock}
	return &hydratorFlow{flow: f, srv: srv}
}

// start is a promoter process, as the controller wires it: the gate asks the engine's clone
// whether a dry commit descends from the promotion.
func (f *hydratorFlow) start() (*stage.Engine, *HealthGate) {
	f.t.Helper()
	wh, err := warehouse.New(warehouse.WithRegistry(f.regHost, warehouse.RegistryConfig{Insecure: true, RateLimit: -1}), warehouse.WithLogger(quiet()))
	if err != nil {
		f.t.Fatal(err)
	}
	var e *stage.Engine
	contains := func(ctx context.Context, spec stage.Spec, ancestor, descendant string) bool {
		repo, err := e.Repo(ctx, spec.RepoURL)
		if err != nil {
			return false
		}
		ok, err := repo.Contains(ancestor, descendant)
		return err == nil && ok
	}
	gate := NewHealthGate(f.client, f.cfg, WithGateClock(f.clock), WithGateLogger(quiet()), WithContains(contains))
	e, err = stage.New(f.cfg.Specs, stage.WithWarehouse(wh), stage.WithGit(f.dataDir, gitwrite.WithLogger(quiet())),
		stage.WithStore(f.store), stage.WithVerifier(gate), stage.WithClock(f.clock), stage.WithLogger(quiet()))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := e.SetSpecs(f.cfg.Specs, f.cfg.Groups...); err != nil {
		f.t.Fatal(err)
	}
	return e, gate
}

// argo plays Argo CD for app: its operation is done, it is status at the hydrated commit rev
// and its hydration is h.
func (f *hydratorFlow) argo(app string, status map[string]any, h hyd) {
	f.t.Helper()
	f.gf.argo(app, withHydration(status, h))
}

// hydrating plays Argo CD's hydrator starting on app: the Application is as it was, its
// current hydration Hydrating.
func (f *hydratorFlow) hydrating(app string) {
	f.t.Helper()
	u, err := f.client.Resource(ApplicationGVR).Namespace("argocd").Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, HydrationHydrating, "status", "sourceHydrator", "currentOperation", "phase")
	unstructured.RemoveNestedField(u.Object, "status", "sourceHydrator", "currentOperation", "drySHA")
	unstructured.RemoveNestedField(u.Object, "status", "sourceHydrator", "currentOperation", "hydratedSHA")
	if _, err := f.client.Resource(ApplicationGVR).Namespace("argocd").Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// requests returns, per Application, the sync revisions asked for and the hydrations asked for.
func (f *hydratorFlow) requests() (syncs map[string][]string, hydrations map[string]int) {
	syncs, hydrations = map[string][]string{}, map[string]int{}
	for _, a := range f.client.Actions() {
		p, ok := a.(clienttesting.PatchAction)
		if !ok {
			continue
		}
		var body struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Operation *struct {
				Sync struct {
					Revision string `json:"revision"`
				} `json:"sync"`
			} `json:"operation"`
		}
		if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
			f.t.Fatal(err)
		}
		if body.Operation != nil {
			syncs[p.GetName()] = append(syncs[p.GetName()], body.Operation.Sync.Revision)
		}
		if body.Metadata.Annotations[HydrateAnnotation] == "normal" {
			hydrations[p.GetName()]++
		}
	}
	return syncs, hydrations
}

// commitElsewhere pushes someone else's commit to main, outside the stages' folders.
func (f *hydratorFlow) commitElsewhere() string {
	f.t.Helper()
	ctx := context.Background()
	dir := f.t.TempDir()
	for _, args := range [][]string{
		{"clone", "--quiet", f.bare, dir},
		{"-C", dir, "-c", "user.name=someone", "-c", "user.email=someone@example.com", "commit", "--quiet", "--allow-empty", "-m", "Add notes"},
		{"-C", dir, "push", "--quiet", "origin", "main"},
	} {
		if err := gitserver.Git(ctx, "", args...); err != nil {
			f.t.Fatal(err)
		}
	}
	out, err := gitserver.GitOutput(ctx, f.bare, "rev-parse", "main")
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (f *hydratorFlow) pass(e *stage.Engine, what string) {
	f.t.Helper()
	if err := e.Reconcile(context.Background()); err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
}

func TestHydrator_PromotesThroughTheHydratedCommitOfItsDryCommit(t *testing.T) {
	f := newHydratorFlow(t, "", map[string][]string{"frontend": {"1.2.1", "1.2.2"}, "backend": {"2.0.0"}})
	e, gate := f.start()

	f.pass(e, "promoting pass")
	commits := f.log()
	if len(commits) != 1 || !strings.HasSuffix(commits[0], " Promote image from 1.2.1 to 1.2.2") {
		t.Fatalf("dry commits %q, want one promotion", commits)
	}
	promo := strings.Fields(commits[0])[0]
	syncs, hydrations := f.requests()
	if len(syncs) != 0 || len(hydrations) != 1 || hydrations["develop-frontend"] != 1 {
		t.Fatalf("syncs %v hydrations %v: want only develop-frontend asked to hydrate, nothing synced", syncs, hydrations)
	}
	if w := gate.Waiting("develop-frontend"); !strings.Contains(w, "Argo CD has not hydrated dry commit "+promo[:7]) {
		t.Fatalf("waiting %q", w)
	}
	if st, _ := e.StatusOf("develop-backend"); st.VerifiedFreight == nil || st.VerifiedFreight.Value != "2.0.0" {
		t.Fatalf("develop-backend, synced at the hydrated commit of the seed, not verified: %+v", st)
	}

	// Hydrating: wait.
	f.hydrating("develop-frontend")
	f.pass(e, "while hydrating")
	if w := gate.Waiting("develop-frontend"); !strings.Contains(w, "Argo CD is hydrating develop-frontend") {
		t.Fatalf("waiting %q", w)
	}
	// Hydrated, but a dry commit before the promotion: wait, and never sync that.
	f.argo("develop-frontend", argoStatus(hydrated0, "Synced", "Healthy", "Succeeded", ""), hydrated(f.seed, hydrated0))
	f.pass(e, "hydrated before the promotion")
	if w := gate.Waiting("develop-frontend"); !strings.Contains(w, "has not hydrated dry commit "+promo[:7]) {
		t.Fatalf("waiting %q", w)
	}
	// Someone else's commit lands after the promotion; Argo CD hydrates that one: it holds
	// the promotion, so its hydrated commit is synced, on develop-frontend only.
	after := f.commitElsewhere()
	f.argo("develop-frontend", argoStatus(hydrated0, "OutOfSync", "Healthy", "Succeeded", ""), hydrated(after, hydrated1))
	f.pass(e, "hydrated after the promotion")
	syncs, hydrations = f.requests()
	if !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1}}) || hydrations["develop-frontend"] != 1 || len(hydrations) != 1 {
		t.Fatalf("syncs %v hydrations %v, want one sync of develop-frontend to %s", syncs, hydrations, hydrated1[:7])
	}
	if w := gate.Waiting("develop-frontend"); !strings.Contains(w, "asked develop-frontend to sync to hydrated commit "+hydrated1[:7]+" (dry commit "+after[:7]+")") {
		t.Fatalf("waiting %q", w)
	}

	f.argo("develop-frontend", argoStatus(hydrated1, "Synced", "Healthy", "Succeeded", ""), hydrated(after, hydrated1))
	f.pass(e, "synced")
	st, _ := e.StatusOf("develop-frontend")
	if st.VerifiedFreight == nil || st.VerifiedFreight.Value != "1.2.2" || st.VerifiedFreight.Commit != promo {
		t.Fatalf("not verified at the dry promotion commit: %+v", st)
	}
	u, _ := f.client.Resource(ApplicationGVR).Namespace("argocd").Get(context.Background(), "develop-frontend", metav1.GetOptions{})
	if s := SyncStatusOf(u, -1); s.Revision != hydrated1 || s.Hydration.DryCommit != after || s.Hydration.HydratedCommit != hydrated1 {
		t.Fatalf("sync status %+v hydration %+v", s, s.Hydration)
	}
	if syncs, _ := f.requests(); len(syncs["develop-frontend"]) != 1 || len(syncs["develop-backend"]) != 0 {
		t.Fatalf("syncs %v", syncs)
	}
}

func TestHydrator_FailedHydrationFailsTheStageAndSyncsNothing(t *testing.T) {
	f := newHydratorFlow(t, "", map[string][]string{"frontend": {"1.2.1", "1.2.2"}, "backend": {"2.0.0"}})
	e, gate := f.start()
	f.pass(e, "promoting pass")
	promo := strings.Fields(f.log()[0])[0]

	// Rendering the instance failed before Argo CD recorded the dry SHA of the operation: it
	// resolved the promotion just before (lastComparedDryRevision).
	const msg = "Failed to hydrate: failed to get manifests: develop/frontend/instance.yaml: spec.values.deployment.replicas: expected integer"
	f.argo("develop-frontend", argoStatus(hydrated0, "Synced", "Healthy", "Succeeded", ""),
		hyd{phase: HydrationFailed, message: msg, compared: promo, lastDry: f.seed, lastHydrated: hydrated0})
	err := e.Reconcile(context.Background())
	// The pass's error says it; ErrHydrationFailed is the gate's (errors.Is on Verify).
	if err == nil || !strings.Contains(err.Error(), "hydration failed: Argo CD could not hydrate dry commit "+promo[:7]+" of Application argocd/develop-frontend into environments/develop, so nothing was synced: "+msg) {
		t.Fatalf("pass: %v", err)
	}
	st, _ := e.StatusOf("develop-frontend")
	if !st.Failed() || !strings.Contains(st.Error, msg) {
		t.Fatalf("status %+v", st)
	}
	var df stage.Spec
	for _, s := range f.cfg.Specs {
		if s.Name == "develop-frontend" {
			df = s
		}
	}
	if err := gate.Verify(context.Background(), df, *st.Candidate, promo); !errors.Is(err, ErrHydrationFailed) || errors.Is(err, stage.ErrPending) {
		t.Fatalf("gate: %v, want ErrHydrationFailed", err)
	}
	if fails := gate.TakeFailures(); len(fails) != 0 {
		t.Fatalf("a hydration failure handed over for rollback: %+v", fails)
	}
	if syncs, _ := f.requests(); len(syncs) != 0 {
		t.Fatalf("synced %v after a failed hydration", syncs)
	}
	// The dry source is fixed by a later commit, which Argo CD hydrates: the stage goes on.
	fixed := f.commitElsewhere()
	f.argo("develop-frontend", argoStatus(hydrated0, "OutOfSync", "Healthy", "Succeeded", ""), hydrated(fixed, hydrated1))
	f.pass(e, "after the fix hydrated")
	if syncs, _ := f.requests(); !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1}}) {
		t.Fatalf("syncs %v", syncs)
	}
}

func TestHydrator_RollbackIsADryCommitHydratedAndSynced(t *testing.T) {
	f := newHydratorFlow(t, "", map[string][]string{"frontend": {"1.2.1", "1.2.2"}, "backend": {"2.0.0"}})
	ctx := context.Background()
	e, gate := f.start()
	f.pass(e, "promoting pass")
	promo := strings.Fields(f.log()[0])[0]
	f.argo("develop-frontend", argoStatus(hydrated0, "OutOfSync", "Healthy", "Succeeded", ""), hydrated(promo, hydrated1))
	f.pass(e, "hydrated")
	f.argo("develop-frontend", argoStatus(hydrated1, "Synced", "Degraded", "Succeeded", "Back-off restarting failed container"), hydrated(promo, hydrated1))
	f.pass(e, "degraded within the timeout")
	f.clock.Step(DefaultGateTimeout)
	if err := e.Reconcile(ctx); err == nil || !strings.Contains(err.Error(), "develop-frontend is Degraded at "+hydrated1[:7]+" for 5m0s") {
		t.Fatalf("pass after the timeout: %v", err)
	}
	for _, fl := range gate.TakeFailures() {
		if _, err := e.Rollback(ctx, fl.Stage, ""); err != nil && !errors.Is(err, stage.ErrPending) {
			t.Fatalf("rollback: %v", err)
		}
	}
	commits := f.log()
	if len(commits) != 2 || !strings.HasSuffix(commits[0], " Roll back image from 1.2.2 to 1.2.1") {
		t.Fatalf("dry commits %q", commits)
	}
	back := strings.Fields(commits[0])[0]
	// The rollback's dry commit must be hydrated before anything is synced.
	if syncs, hydrations := f.requests(); !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1}}) || hydrations["develop-frontend"] != 2 {
		t.Fatalf("syncs %v hydrations %v, want the rollback's hydration asked for, no new sync", syncs, hydrations)
	}
	f.argo("develop-frontend", argoStatus(hydrated1, "OutOfSync", "Degraded", "Succeeded", ""), hydrated(back, hydrated2))
	f.pass(e, "rollback hydrated")
	if syncs, _ := f.requests(); !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1, hydrated2}}) {
		t.Fatalf("syncs %v, want develop-frontend to %s then %s", syncs, hydrated1[:7], hydrated2[:7])
	}
	f.argo("develop-frontend", argoStatus(hydrated2, "Synced", "Healthy", "Succeeded", ""), hydrated(back, hydrated2))
	f.pass(e, "rollback synced")
	if st, _ := e.StatusOf("develop-frontend"); st.CurrentTag != "1.2.1" || st.VerifiedFreight == nil || st.VerifiedFreight.Commit != back {
		t.Fatalf("status %+v", st)
	}
	if got := f.log(); len(got) != 2 {
		t.Fatalf("1.2.2 promoted again after its rollback: %q", got)
	}
}

func TestHydrator_ReleaseGroupSharesOneDryCommitEachMemberItsHydratedCommit(t *testing.T) {
	f := newHydratorFlow(t, "develop/shop", map[string][]string{"frontend": {"1.2.1", "1.2.2"}, "backend": {"2.0.0", "2.1.0"}})
	e, _ := f.start()
	f.pass(e, "promoting pass")
	commits := f.log()
	if len(commits) != 1 || !strings.Contains(commits[0], " Promote shop: backend 2.0.0 → 2.1.0, frontend 1.2.1 → 1.2.2") {
		t.Fatalf("dry commits %q, want one for the group", commits)
	}
	promo := strings.Fields(commits[0])[0]
	if _, hydrations := f.requests(); hydrations["develop-frontend"] != 1 || hydrations["develop-backend"] != 1 {
		t.Fatalf("hydrations %v, want each member asked once", hydrations)
	}
	// frontend's hydrated commit is there, backend still hydrating: each is synced when its
	// own hydrated commit is.
	f.argo("develop-frontend", argoStatus(hydrated0, "OutOfSync", "Healthy", "Succeeded", ""), hydrated(promo, hydrated1))
	f.hydrating("develop-backend")
	f.pass(e, "frontend hydrated")
	if syncs, _ := f.requests(); !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1}}) {
		t.Fatalf("syncs %v", syncs)
	}
	f.argo("develop-frontend", argoStatus(hydrated1, "Synced", "Healthy", "Succeeded", ""), hydrated(promo, hydrated1))
	f.argo("develop-backend", argoStatus(hydrated0, "OutOfSync", "Healthy", "Succeeded", ""), hydrated(promo, hydrated2))
	f.pass(e, "backend hydrated")
	if syncs, _ := f.requests(); !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1}, "develop-backend": {hydrated2}}) {
		t.Fatalf("syncs %v", syncs)
	}
	if st, _ := e.StatusOf("develop/shop"); st.VerifiedFreight != nil && strings.Contains(st.VerifiedFreight.Value, "2.1.0") {
		t.Fatalf("set verified before backend synced: %+v", st.VerifiedFreight)
	}
	f.argo("develop-backend", argoStatus(hydrated2, "Synced", "Healthy", "Succeeded", ""), hydrated(promo, hydrated2))
	f.pass(e, "both synced")
	st, _ := e.StatusOf("develop/shop")
	if st.VerifiedFreight == nil || !strings.Contains(st.VerifiedFreight.Value, "1.2.2") || !strings.Contains(st.VerifiedFreight.Value, "2.1.0") || st.VerifiedFreight.Commit != promo {
		t.Fatalf("set not verified at its dry commit: %+v", st.VerifiedFreight)
	}
}

func TestHydrator_RestartBetweenDryCommitAndSyncSyncsOnce(t *testing.T) {
	f := newHydratorFlow(t, "", map[string][]string{"frontend": {"1.2.1", "1.2.2"}, "backend": {"2.0.0"}})
	e1, _ := f.start()
	f.pass(e1, "first process")
	promo := strings.Fields(f.log()[0])[0]
	f.client.ClearActions()

	// The first process is gone; Argo CD hydrates meanwhile.
	e2, gate := f.start()
	f.hydrating("develop-frontend")
	f.pass(e2, "restarted, while hydrating")
	if w := gate.Waiting("develop-frontend"); !strings.Contains(w, "hydrating") {
		t.Fatalf("waiting %q", w)
	}
	f.argo("develop-frontend", argoStatus(hydrated0, "OutOfSync", "Healthy", "Succeeded", ""), hydrated(promo, hydrated1))
	for i := range 2 {
		f.pass(e2, "restarted, hydrated")
		_ = i // the second pass sees the operation requested, not yet picked up
	}
	if got := f.log(); len(got) != 1 {
		t.Fatalf("dry commits after the restart %q, want still one", got)
	}
	if syncs, _ := f.requests(); !reflect.DeepEqual(syncs, map[string][]string{"develop-frontend": {hydrated1}}) {
		t.Fatalf("syncs %v, want one of develop-frontend to %s", syncs, hydrated1[:7])
	}
	f.argo("develop-frontend", argoStatus(hydrated1, "Synced", "Healthy", "Succeeded", ""), hydrated(promo, hydrated1))
	f.pass(e2, "synced")
	if st, _ := e2.StatusOf("develop-frontend"); st.VerifiedFreight == nil || st.VerifiedFreight.Commit != promo {
		t.Fatalf("status %+v", st)
	}
}
