package promoter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// The promoter on Argo CD v3 with the Source Hydrator: the example ApplicationSet as hydrator
// Applications (e2e/plugin/testdata/services-hydrated.yaml, shown in docs/hydrator.md), the kro
// plugin rendering each dry commit of main into environments/<env>. A pushed tag becomes one dry
// commit (`Promote image from 1.2.1 to 1.2.2`), Argo CD hydrates it into one hydrated commit whose
// manifest.yaml holds the new image, and the leader is SIGKILLed at its sync request; the standby
// syncs only develop-frontend, once, to that hydrated commit and verifies it there, without a
// second dry commit. Staging waits for the soak, then takes 1.2.2 the same way: one dry commit,
// one hydrated commit on environments/staging, only staging-frontend synced, verified. A
// rollback of develop goes the same way, and staging keeps 1.2.2. A broken instance fails
// hydration, and with it the stage, with Argo CD's message; nothing is synced.
func TestHydratorController_PromotesThroughTheSourceHydrator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	argo := st.ArgoCDV3()
	if argo == nil || !argo.Hydrator {
		t.Fatal("the stack runs no Argo CD with the Source Hydrator (stack.WithArgoCDV3 in TestMain)")
	}
	h := newHydratorPipeline(t, ctx, argo)
	seed := h.seed()

	// Argo CD hydrates the seed into each environment's branch; every Application is synced to
	// its hydrated seed by hand, as a team would before handing promotions to kropipe.
	seeded := map[string]string{} // environment → its hydrated seed
	for _, app := range h.apps {
		env, _, _ := strings.Cut(app, "-")
		op := h.waitHydrated(app, seed)
		if other, ok := seeded[env]; ok && op.HydratedSHA != other {
			t.Fatalf("the %s Applications share environments/%s, yet were hydrated into %.8s and %.8s", env, env, other, op.HydratedSHA)
		}
		seeded[env] = op.HydratedSHA
	}
	h0, hs0 := seeded["develop"], seeded["staging"]
	for _, ns := range []string{hydratorDevelop, hydratorStaging} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range h.apps {
		env, _, _ := strings.Cut(app, "-")
		h.syncByHand(app, seeded[env])
	}
	// staging/frontend has an Ingress; no ingress controller runs here, so play its part.
	h.admitIngress(hydratorStaging, "frontend")
	for _, app := range h.apps {
		env, _, _ := strings.Cut(app, "-")
		h.waitApp(app, "Synced and Healthy at the hydrated seed", syncedHealthyAt(seeded[env]))
	}
	before := map[string]*v1alpha1.Application{}
	for _, app := range h.apps {
		before[app] = h.app(app)
	}

	// The first leader kills itself at its first sync request (KROPIPE_CRASH_AT=during-sync):
	// after its dry commit, once Argo CD hydrated it. The standby takes over.
	a := h.startPromoter("promoter-hydrator-a", "KROPIPE_CRASH_AT=during-sync")
	h.waitLeader("promoter-hydrator-a")
	h.waitStage(a, "develop-frontend", "verified 1.2.1 (running before kropipe started)", func(s stageStatus) bool {
		return s.Decision == "up-to-date" && s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1"
	})
	pr := h.startPromoter("promoter-hydrator-b")

	// A new tag: one dry commit, one hydrated commit holding the new image, one sync.
	pushed := time.Now()
	pushImage(t, st.RegistryAddr, "hydrator/frontend", "1.2.2")
	promo := h.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	committed := time.Now()
	h1 := h.waitHydrated("develop-frontend", promo).HydratedSHA
	hydrated := time.Now()
	h.poll("promoter-hydrator-a killed at its sync request", syncTimeout, func() (bool, string) {
		exited, _ := a.Exited()
		return exited, "still running"
	})
	if logs, err := os.ReadFile(a.LogPath); err != nil || !strings.Contains(string(logs), "crashpoint: killing the process at during-sync") {
		t.Fatalf("promoter-hydrator-a died (%v) without the crash point's line:\n%s", err, a.Tail(30))
	}
	if now := h.app("develop-frontend"); now.Operation != nil || !sameOperation(before["develop-frontend"], now) {
		t.Fatalf("develop-frontend got an operation before the standby took over: %s", stack.DescribeApplication(now))
	}
	died := time.Now()
	h.waitLeader("promoter-hydrator-b")
	if n := strings.TrimSpace(h.git("rev-list", "--count", h0+".."+h1)); n != "1" {
		t.Errorf("hydrated commits on environments/develop for the promotion: %s, want 1", n)
	}
	if m := h.git("show", h1+":develop/frontend/manifest.yaml"); !strings.Contains(m, hydratorImage("frontend", "1.2.2")) {
		t.Errorf("environments/develop:develop/frontend/manifest.yaml at %.8s lacks image %s:\n%s", h1, hydratorImage("frontend", "1.2.2"), m)
	}
	h.waitApp("develop-frontend", "Synced and Healthy at the hydrated commit, synced by kropipe", func(a *v1alpha1.Application) bool {
		return syncedHealthyAt(h1)(a) && syncedBy(a, "kropipe", h1)
	})
	synced := time.Now()
	h.waitDeployment(hydratorDevelop, "frontend", hydratorImage("frontend", "1.2.2"))
	v := h.waitHydratorStage(pr, "develop-frontend", "verified 1.2.2 at its dry commit", func(s hydratorStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	})
	if v.VerifiedFreight.Commit != promo || v.LastCommit != promo || v.Sync.Revision != h1 || v.Sync.Hydration == nil ||
		v.Sync.Hydration.DryCommit != promo || v.Sync.Hydration.HydratedCommit != h1 {
		t.Errorf("status after the promotion: verified at %s, lastCommit %s, sync %+v; want dry %s, hydrated %s", v.VerifiedFreight.Commit, v.LastCommit, v.Sync, promo, h1)
	}
	t.Logf("push → dry commit %s, → hydrated %s (the hydrator's share: %s); leader killed at its sync request; standby: → Synced and Healthy %s after the kill",
		committed.Sub(pushed).Round(10*time.Millisecond), hydrated.Sub(pushed).Round(10*time.Millisecond), hydrated.Sub(committed).Round(10*time.Millisecond), synced.Sub(died).Round(10*time.Millisecond))
	// One dry commit, one sync, only of develop-frontend.
	v = h.waitHydratorStage(pr, "develop-frontend", "two more passes", func(s hydratorStatus) bool {
		return s.CheckedAt.After(v.CheckedAt.Add(2 * hydratorInterval))
	})
	if head := h.head(); head != promo {
		t.Errorf("dry commits since the seed:\n%s\nwant the one promotion %.8s", h.log(seed), promo)
	}
	syncs := 0
	for _, r := range h.app("develop-frontend").Status.History {
		if r.Revision == h1 {
			syncs++
		}
	}
	if syncs != 1 {
		t.Errorf("develop-frontend synced to %.8s %d times, want once", h1, syncs)
	}
	h.onlySynced(before, "develop-frontend")

	// Staging: held by its 10m soak, which is then shortened (the ApplicationSet's templatePatch,
	// as a team would edit it); it takes 1.2.2 no earlier than develop's verification plus the
	// soak: one dry commit, one hydrated commit on environments/staging, only staging-frontend
	// synced, to that commit.
	h.waitHydratorStage(pr, "staging-frontend", "held by develop-frontend's 10m soak", func(s hydratorStatus) bool {
		return s.Decision == "wait" && strings.Contains(s.Reason, "develop-frontend soak")
	})
	before = map[string]*v1alpha1.Application{}
	for _, app := range h.apps {
		before[app] = h.app(app)
	}
	h.setStagingSoak(hydratorSoak)
	staging := h.waitCommit("staging/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", promo)
	if at := h.commitTime(staging); at.Before(v.VerifiedFreight.VerifiedAt.Add(hydratorSoak).Truncate(time.Second)) {
		t.Errorf("staging-frontend promoted at %s, before develop's verification %s + soak %s", at, v.VerifiedFreight.VerifiedAt, hydratorSoak)
	}
	if got := strings.TrimSpace(h.git("log", "--format=%H", promo+".."+staging)); got != staging {
		t.Errorf("dry commits between develop's promotion and staging's:\n%s\nwant only staging's %.8s", h.log(promo), staging)
	}
	if files := strings.Fields(h.git("show", "--format=", "--name-only", staging)); len(files) != 1 || files[0] != "staging/frontend/instance.yaml" {
		t.Errorf("staging's dry commit %.8s changes %q, want only staging/frontend/instance.yaml", staging, files)
	}
	hs1 := h.waitHydrated("staging-frontend", staging).HydratedSHA
	if n := strings.TrimSpace(h.git("rev-list", "--count", hs0+".."+hs1)); n != "1" {
		t.Errorf("hydrated commits on environments/staging since its seed: %s, want 1 (staging's promotion)", n)
	}
	if m := h.git("show", hs1+":staging/frontend/manifest.yaml"); !strings.Contains(m, hydratorImage("frontend", "1.2.2")) {
		t.Errorf("environments/staging:staging/frontend/manifest.yaml at %.8s lacks image %s:\n%s", hs1, hydratorImage("frontend", "1.2.2"), m)
	}
	if d := h.git("diff", "--stat", hs0, hs1, "--", "staging/backend/manifest.yaml"); d != "" {
		t.Errorf("staging's promotion changed staging/backend/manifest.yaml:\n%s", d)
	}
	h.waitApp("staging-frontend", "Synced and Healthy at its hydrated commit, synced by kropipe", func(a *v1alpha1.Application) bool {
		return syncedHealthyAt(hs1)(a) && syncedBy(a, "kropipe", hs1)
	})
	h.waitDeployment(hydratorStaging, "frontend", hydratorImage("frontend", "1.2.2"))
	sv := h.waitHydratorStage(pr, "staging-frontend", "verified 1.2.2 at its dry commit", func(s hydratorStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	})
	if sv.VerifiedFreight.Commit != staging || sv.LastCommit != staging || sv.Sync.Revision != hs1 || sv.Sync.Hydration == nil ||
		sv.Sync.Hydration.DryCommit != staging || sv.Sync.Hydration.HydratedCommit != hs1 {
		t.Errorf("staging-frontend after its promotion: verified at %s, lastCommit %s, sync %+v; want dry %s, hydrated %s", sv.VerifiedFreight.Commit, sv.LastCommit, sv.Sync, staging, hs1)
	}
	t.Logf("staging-frontend: develop verified → staging's dry commit %s (soak %s, shortened from 10m during the wait), → verified %s",
		h.commitTime(staging).Sub(v.VerifiedFreight.VerifiedAt).Round(time.Second), hydratorSoak, sv.VerifiedFreight.VerifiedAt.Sub(h.commitTime(staging)).Round(time.Second))
	sv = h.waitHydratorStage(pr, "staging-frontend", "two more passes", func(s hydratorStatus) bool {
		return s.CheckedAt.After(sv.CheckedAt.Add(2 * hydratorInterval))
	})
	if head := h.head(); head != staging {
		t.Errorf("dry commits since staging's promotion:\n%s\nwant none", h.log(staging))
	}
	syncs = 0
	for _, r := range h.app("staging-frontend").Status.History {
		if r.Revision == hs1 {
			syncs++
		}
	}
	if syncs != 1 {
		t.Errorf("staging-frontend synced to %.8s %d times, want once", hs1, syncs)
	}
	h.onlySynced(before, "staging-frontend")
	afterStaging := h.app("staging-frontend")

	// Rollback: a dry commit, hydrated, synced.
	code, body := h.post(pr, "/api/v1/stages/develop-frontend/rollback", map[string]string{})
	var out struct{ Kind, Old, New, Commit string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil || out.Kind != "rollback" || out.New != "1.2.1" || out.Commit == "" {
		t.Fatalf("POST rollback: %d %s", code, body)
	}
	h2 := h.waitHydrated("develop-frontend", out.Commit).HydratedSHA
	if m := h.git("show", h2+":develop/frontend/manifest.yaml"); !strings.Contains(m, hydratorImage("frontend", "1.2.1")) {
		t.Errorf("manifest.yaml of the rollback's hydrated commit %.8s lacks %s", h2, hydratorImage("frontend", "1.2.1"))
	}
	h.waitApp("develop-frontend", "Synced and Healthy at the rollback's hydrated commit", func(a *v1alpha1.Application) bool {
		return syncedHealthyAt(h2)(a) && syncedBy(a, "kropipe", h2)
	})
	h.waitDeployment(hydratorDevelop, "frontend", hydratorImage("frontend", "1.2.1"))
	h.waitHydratorStage(pr, "develop-frontend", "verified 1.2.1 at the rollback's dry commit", func(s hydratorStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1" && s.VerifiedFreight.Commit == out.Commit
	})
	if head := h.head(); head != out.Commit {
		t.Errorf("commits after the rollback:\n%s", h.log(out.Commit))
	}
	// Staging keeps 1.2.2: develop's 1.2.1 is older, and it is not sent back by itself.
	h.waitHydratorStage(pr, "staging-frontend", "holding 1.2.2 (develop's 1.2.1 is older)", func(s hydratorStatus) bool {
		return s.Decision == "hold" && s.CurrentTag == "1.2.2" && strings.Contains(s.Reason, "1.2.1 is older than the current 1.2.2")
	})
	if now := h.app("staging-frontend"); now.Operation != nil || !sameOperation(afterStaging, now) {
		t.Errorf("staging-frontend got an operation after develop's rollback: %s", stack.DescribeApplication(now))
	}
	h.waitDeployment(hydratorStaging, "frontend", hydratorImage("frontend", "1.2.2"))

	// A broken instance (someone removed the backend's image) fails hydration: the promotion of
	// backend 2.1.0 fails with Argo CD's message, and nothing is synced.
	backendBefore := h.app("develop-backend")
	if err := h.co.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	inst, err := h.co.ReadFile("develop/backend/instance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	broken := imageLine.ReplaceAllString(string(inst), "")
	if broken == string(inst) {
		t.Fatal("examples/gitops/develop/backend/instance.yaml: no image line to remove")
	}
	if err := h.co.WriteFile("develop/backend/instance.yaml", []byte(broken)); err != nil {
		t.Fatal(err)
	}
	brokenAt, err := h.co.CommitAndPush(ctx, "Drop the backend image by mistake")
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, st.RegistryAddr, "hydrator/backend", "2.1.0")
	h.waitCommit("develop/backend/instance.yaml", "Promote image from 2.0.0 to 2.1.0", brokenAt)
	f := h.waitHydratorStage(pr, "develop-backend", "failed by its hydration", func(s hydratorStatus) bool {
		return s.Decision == "failed" && strings.Contains(s.Error, "hydration failed")
	})
	t.Logf("develop-backend after its broken instance: %s", f.Error)
	if !strings.Contains(f.Error, "instance.yaml") || !strings.Contains(f.Error, "nothing was synced") {
		t.Errorf("develop-backend's error does not carry Argo CD's message naming the file: %s", f.Error)
	}
	if now := h.app("develop-backend"); now.Operation != nil || !sameOperation(backendBefore, now) {
		t.Errorf("develop-backend got an operation after a failed hydration: %s", stack.DescribeApplication(now))
	}
}

// imageLine is an instance's image line, which the kro RGD requires.
var imageLine = regexp.MustCompile(`(?m)^\s+image:.*\n`)

// hydratorRepo is the test's dry repository on the stack's Git server.
const hydratorRepo = "hydrator-gitops"

// hydratorInterval is the stages' kropipe.io/interval.
const hydratorInterval = 3 * time.Second

// hydratorDevelop and hydratorStaging are where the Applications deploy, apart from the other
// tests'.
const hydratorDevelop, hydratorStaging = "develop-hyd", "staging-hyd"

// hydratorSoak replaces staging's 10m soak once the test saw it hold staging.
const hydratorSoak = 15 * time.Second

// applicationSetGVR is Argo CD's ApplicationSet resource.
var applicationSetGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applicationsets"}

func hydratorImage(service, tag string) string {
	return fmt.Sprintf("%s/hydrator/%s:%s", st.RegistryAddr, service, tag)
}

// hydratorPipeline is the pipeline's machinery in the Source Hydrator's Argo CD (its namespace
// holds the Applications, the promoter's Lease and state).
type hydratorPipeline struct {
	*pipeline
	argo *stack.ArgoCDInstall
}

func newHydratorPipeline(t *testing.T, ctx context.Context, argo *stack.ArgoCDInstall) *hydratorPipeline {
	// The stack's anonymous Git server: argocd-commit-server pushes there with the stack's
	// repo-write-creds Secret, the promoter without credentials.
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, apps: []string{"develop-frontend", "develop-backend", "staging-frontend", "staging-backend"}}
	h := &hydratorPipeline{pipeline: p, argo: argo}
	h.installPromoterRBAC()
	return h
}

// seed serves examples/gitops with the images under hydrator/ in the stack's registry, pushes
// the tags the instances name and applies the hydrator ApplicationSet; it returns the seed.
func (h *hydratorPipeline) seed() string {
	t := h.t
	if err := h.srv.CreateRepo(h.ctx, hydratorRepo); err != nil {
		t.Fatal(err)
	}
	co, err := h.srv.Clone(h.ctx, hydratorRepo, filepath.Join(t.TempDir(), hydratorRepo))
	if err != nil {
		t.Fatal(err)
	}
	h.co = co
	examples := filepath.Join(repoRoot, "examples", "gitops")
	for _, dir := range []string{"rgds", "develop", "staging"} {
		if err := co.CopyTree(filepath.Join(examples, dir), dir); err != nil {
			t.Fatal(err)
		}
	}
	for path, tag := range map[string]string{
		"develop/frontend/instance.yaml": "1.2.1", "staging/frontend/instance.yaml": "1.2.1",
		"develop/backend/instance.yaml": "2.0.0", "staging/backend/instance.yaml": "2.0.0",
	} {
		b, err := co.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "registry.example.com/team/", st.RegistryAddr+"/hydrator/")
		if !tagLine.MatchString(s) {
			t.Fatalf("examples/gitops/%s: no deployment tag line", path)
		}
		if err := co.WriteFile(path, []byte(tagLine.ReplaceAllString(s, `${1}"`+tag+`"`))); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := co.CommitAndPush(h.ctx, "Seed from examples/gitops")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []struct{ repo, tag string }{{"hydrator/frontend", "1.2.1"}, {"hydrator/backend", "2.0.0"}} {
		pushImage(t, st.RegistryAddr, img.repo, img.tag)
	}
	h.applyAppSet()
	for _, app := range h.apps {
		h.waitApp(app, "generated by the ApplicationSet", func(*v1alpha1.Application) bool { return true })
	}
	return seed
}

// applyAppSet applies the hydrator version of the example ApplicationSet as a user of this stack
// would edit it: this stack's repository, cluster, registry and Argo CD namespace, passes every
// 3s instead of 5m, namespaces apart from the other tests'. Everything else is the example.
func (h *hydratorPipeline) applyAppSet() {
	t := h.t
	const path = "../plugin/testdata/services-hydrated.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range []struct{ old, new string }{
		{"https://git.example.com/platform/gitops.git", h.srv.RepoURL(hydratorRepo)},
		{"https://kubernetes.default.svc", st.APIServerURL},
		{"namespace: argocd\n", "namespace: " + h.argo.Namespace + "\n"},
		{"kropipe.io/interval: 5m", "kropipe.io/interval: " + hydratorInterval.String()},
		{"registry.example.com/team/{{ .service }}", st.RegistryAddr + "/hydrator/{{ .service }}"},
		{`namespace: "{{ .env }}"`, `namespace: "{{ .env }}-hyd"`},
	} {
		if !strings.Contains(s, r.old) {
			t.Fatalf("%s: %q not found; update this test's substitutions", path, r.old)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	f := filepath.Join(t.TempDir(), "appset.yaml")
	if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyFile(h.ctx, f, h.argo.Namespace); err != nil {
		t.Fatalf("apply %s: %v", path, err)
	}
}

// setStagingSoak edits kropipe.io/soak in the ApplicationSet's templatePatch (the staging
// stages'), as a team shortening its soak would, and waits until the applicationset controller
// wrote it onto staging-frontend.
func (h *hydratorPipeline) setStagingSoak(soak time.Duration) {
	t := h.t
	sets := st.Dynamic.Resource(applicationSetGVR).Namespace(h.argo.Namespace)
	u, err := sets.Get(h.ctx, "services-hydrated", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ApplicationSet %s/services-hydrated: %v", h.argo.Namespace, err)
	}
	patch, _, _ := unstructured.NestedString(u.Object, "spec", "templatePatch")
	re := regexp.MustCompile(`kropipe.io/soak: \S+`)
	if !re.MatchString(patch) {
		t.Fatalf("ApplicationSet services-hydrated: templatePatch sets no kropipe.io/soak:\n%s", patch)
	}
	b, err := json.Marshal(map[string]any{"spec": map[string]any{"templatePatch": re.ReplaceAllString(patch, "kropipe.io/soak: "+soak.String())}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sets.Patch(h.ctx, "services-hydrated", types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch ApplicationSet services-hydrated: %v", err)
	}
	h.waitApp("staging-frontend", "annotated kropipe.io/soak: "+soak.String(), func(a *v1alpha1.Application) bool {
		return a.Annotations["kropipe.io/soak"] == soak.String()
	})
}

// installPromoterRBAC is the pipeline's, in the hydrator Argo CD's namespace.
func (h *hydratorPipeline) installPromoterRBAC() {
	t, ns := h.t, h.argo.Namespace
	for _, f := range []string{"serviceaccount.yaml", "role.yaml", "rolebinding.yaml"} {
		if err := st.ApplyFile(h.ctx, filepath.Join(repoRoot, "manifests", "promoter", f), ns); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := st.Kube.CoreV1().ServiceAccounts(ns).CreateToken(h.ctx, "kropipe-promoter",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s/kropipe-promoter: %v", ns, err)
	}
	if h.kubeconfig, err = st.KubeconfigFor("kropipe-promoter-"+ns, tr.Status.Token, ns); err != nil {
		t.Fatal(err)
	}
}

// startPromoter runs one replica watching the hydrator Argo CD's namespace; env is added to its
// environment (a crash point).
func (h *hydratorPipeline) startPromoter(name string, env ...string) *promoter {
	t, ns := h.t, h.argo.Namespace
	ports, err := stack.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	proc, err := st.Run(name, st.Binaries.Promoter, []string{
		"controller",
		"--kubeconfig=" + h.kubeconfig,
		"--leader-elect", "--namespace=" + ns, "--watch-namespaces=" + ns, "--argocd-namespace=" + ns,
		"--insecure-registry=" + st.RegistryAddr,
		"--data-dir=" + filepath.Join(st.Dir, name),
		"--addr=" + addr, "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
	}, append([]string{"POD_NAME=" + name}, env...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	pr := &promoter{Process: proc, addr: addr}
	h.waitHTTP(pr, "/healthz")
	return pr
}

func (h *hydratorPipeline) waitLeader(name string) {
	h.poll("the Lease held by "+name, 2*time.Minute, func() (bool, string) {
		l, err := st.Kube.CoordinationV1().Leases(h.argo.Namespace).Get(h.ctx, "kropipe-promoter", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		holder := ptr.Deref(l.Spec.HolderIdentity, "")
		return strings.HasPrefix(holder, name+"_"), "holder " + holder
	})
}

// app reads an Application through Argo CD v2.14's typed client: the status fields the test
// reads are the same in v3; the hydrator's are read through the dynamic client.
func (h *hydratorPipeline) app(name string) *v1alpha1.Application {
	a, err := st.ArgoCD.ArgoprojV1alpha1().Applications(h.argo.Namespace).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatalf("Application %s/%s: %v", h.argo.Namespace, name, err)
	}
	return a
}

func (h *hydratorPipeline) waitApp(name, what string, cond func(*v1alpha1.Application) bool) {
	h.poll("Application "+name+" "+what, syncTimeout, func() (bool, string) {
		a, err := st.ArgoCD.ArgoprojV1alpha1().Applications(h.argo.Namespace).Get(h.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cond(a), stack.DescribeApplication(a)
	})
}

func (h *hydratorPipeline) syncByHand(app, revision string) {
	patch := fmt.Sprintf(`{"operation":{"initiatedBy":{"username":"e2e"},"sync":{"revision":%q,"syncOptions":["CreateNamespace=true"]}}}`, revision)
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(h.argo.Namespace).Patch(h.ctx, app, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		h.t.Fatalf("sync %s: %v", app, err)
	}
}

// hydration is status.sourceHydrator.currentOperation (Argo CD v3).
type hydration struct {
	Phase       string `json:"phase"`
	Message     string `json:"message"`
	DrySHA      string `json:"drySHA"`
	HydratedSHA string `json:"hydratedSHA"`
}

// waitHydrated waits until Argo CD hydrated dry commit dry for Application app, and returns the
// operation. It fetches the hydrated branch into the test's checkout.
func (h *hydratorPipeline) waitHydrated(app, dry string) hydration {
	var op hydration
	h.poll(fmt.Sprintf("Application %s hydrated at dry commit %.8s", app, dry), syncTimeout, func() (bool, string) {
		u, err := st.Dynamic.Resource(stack.ApplicationGVR).Namespace(h.argo.Namespace).Get(h.ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		op = hydration{}
		m, _, _ := unstructured.NestedMap(u.Object, "status", "sourceHydrator", "currentOperation")
		b, _ := json.Marshal(m)
		_ = json.Unmarshal(b, &op)
		return op.Phase == "Hydrated" && op.DrySHA == dry && op.HydratedSHA != "", string(b)
	})
	h.git("fetch", "--quiet", "origin", "+refs/heads/environments/*:refs/remotes/origin/environments/*")
	return op
}

// hydratorStatus is GET /api/v1/stages/{name} with what a hydrator stage adds.
type hydratorStatus struct {
	stageStatus
	LastCommit string `json:"lastCommit"`
	Sync       struct {
		Revision  string `json:"revision"`
		Hydration *struct {
			DryCommit      string `json:"dryCommit"`
			HydratedCommit string `json:"hydratedCommit"`
			Phase          string `json:"phase"`
		} `json:"hydration"`
	} `json:"sync"`
}

func (h *hydratorPipeline) waitHydratorStage(pr *promoter, name, what string, cond func(hydratorStatus) bool) hydratorStatus {
	return waitStageAs(h.pipeline, pr, name, what, cond)
}

// onlySynced checks that no Application but app got an operation since before.
func (h *hydratorPipeline) onlySynced(before map[string]*v1alpha1.Application, app string) {
	for _, name := range h.apps {
		if name == app {
			continue
		}
		if now := h.app(name); now.Operation != nil || (before[name].Status.OperationState != nil && !sameOperation(before[name], now)) ||
			(before[name].Status.OperationState == nil && now.Status.OperationState != nil) {
			h.t.Errorf("%s got an operation: %s", name, stack.DescribeApplication(now))
		}
	}
}
