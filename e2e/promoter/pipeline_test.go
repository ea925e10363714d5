package promoter_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/e2e/stack"
)

// The pipeline of examples/gitops/appsets/services.yaml on the real stack: Argo CD's
// applicationset controller generates develop/staging × frontend/backend, the promoter
// (two replicas, the install's ServiceAccount and Role, Git credentials from Argo CD's repository
// Secret) promotes a pushed frontend tag through develop and, after the soak, staging, syncing
// only the Application it promoted; the leader is killed right after its commit; a rollback
// through the HTTP API puts the old image back.
func TestPipeline_PushedTagFlowsThroughDevelopThenStaging(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx)

	// The pipeline at rest: every Application deployed by hand (`argocd app sync`), staging
	// already running what develop runs, the registry holding nothing newer. Every operation and
	// commit after this point is the promoter's.
	seed := p.seed()
	// develop and staging each hold two Applications: with CreateNamespace=true, two first syncs
	// at once race to create the namespace and the loser fails ("namespaces \"develop\" already
	// exists"), as crash_test.go found; the namespaces exist before anything is synced.
	for _, ns := range []string{"develop", "staging", "prod"} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range p.apps {
		p.syncByHand(app, seed)
	}
	// staging/frontend has an Ingress; no ingress controller runs here, so play its part.
	p.admitIngress("staging", "frontend")
	for _, app := range p.apps {
		p.waitApp(app, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	}
	before := map[string]*v1alpha1.Application{}
	for _, app := range p.apps {
		before[app] = p.app(app)
	}
	for _, d := range []struct{ ns, name, tag string }{{"develop", "frontend", "1.2.1"}, {"staging", "frontend", "1.2.1"}, {"develop", "backend", "2.0.0"}, {"staging", "backend", "2.0.0"}, {"prod", "frontend", "1.2.1"}} {
		p.waitDeployment(d.ns, d.name, p.image(d.name, d.tag))
	}

	a := p.startPromoter("promoter-a")
	p.waitLeader("promoter-a")
	p.waitStage(a, "develop-frontend", "verified 1.2.1 (running before kropipe started)", func(s stageStatus) bool {
		return s.Decision == "up-to-date" && s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1"
	})
	b := p.startPromoter("promoter-b")
	p.waitHTTP(b, "/healthz")
	if head := p.head(); head != seed {
		t.Fatalf("the promoter committed %s with nothing new in the registry:\n%s", head, p.log(seed))
	}
	// A standby refuses to act and names the leader.
	if code, body := p.post(b, "/api/v1/stages/develop-frontend/promote", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "promoter-a") {
		t.Errorf("promote on the standby: %d %s; want 503 naming the leader promoter-a", code, body)
	}

	// A CI pipeline pushes frontend:1.2.2.
	pushed := time.Now()
	pushImage(t, st.RegistryAddr, "team/frontend", "1.2.2")
	develop := p.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	committed := time.Now()
	// Restart mid-flow: the leader dies the moment its commit is on the server, before or
	// after its sync patch. The standby must finish the promotion without a second commit.
	operationAtKill := p.app("develop-frontend").Operation != nil
	a.Kill()
	t.Logf("push → commit %s in %s; leader killed (sync already requested: %v)", develop[:8], committed.Sub(pushed).Round(10*time.Millisecond), operationAtKill)

	p.waitLeader("promoter-b")
	tookOver := time.Now()
	p.waitApp("develop-frontend", "Synced and Healthy at the promotion commit, synced by kropipe", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(develop)(app) && syncedBy(app, "kropipe", develop)
	})
	synced := time.Now()
	p.waitDeployment("develop", "frontend", p.image("frontend", "1.2.2"))
	dv := p.waitStage(b, "develop-frontend", "verified 1.2.2", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	}).VerifiedFreight
	if dv.Commit != develop {
		t.Errorf("develop-frontend verified 1.2.2 at %s, want the promotion commit %s", dv.Commit, develop)
	}
	t.Logf("standby leads %s after the kill; develop-frontend synced %s after the commit, verified %s after it",
		tookOver.Sub(committed).Round(10*time.Millisecond), synced.Sub(committed).Round(10*time.Millisecond), dv.VerifiedAt.Sub(committed).Round(10*time.Millisecond))

	// Staging takes 1.2.2 only after develop verified it plus the 20s soak.
	staging := p.waitCommit("staging/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", develop)
	if at := p.commitTime(staging); at.Before(dv.VerifiedAt.Add(p.soak).Truncate(time.Second)) {
		t.Errorf("staging-frontend promoted at %s, before develop's verification %s + soak %s", at, dv.VerifiedAt, p.soak)
	}
	p.waitApp("staging-frontend", "Synced and Healthy at its promotion commit", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(staging)(app) && syncedBy(app, "kropipe", staging)
	})
	p.waitDeployment("staging", "frontend", p.image("frontend", "1.2.2"))
	p.waitStage(b, "staging-frontend", "verified 1.2.2", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2" && s.Decision == "up-to-date"
	})

	// Production takes nothing without a human.
	p.waitStage(b, "prod-frontend", "waiting for approval of 1.2.2", func(s stageStatus) bool {
		return s.Decision == "wait" && s.Reason == "waiting for approval of 1.2.2"
	})
	if got := p.git("log", "--format=%h %s", seed+"..HEAD", "--", "prod/frontend"); got != "" {
		t.Fatalf("production was promoted without approval:\n%s", got)
	}
	if code, body := p.post(b, "/api/v1/stages/prod-frontend/approve", map[string]string{}); code != http.StatusOK || !strings.Contains(body, "1.2.2") {
		t.Fatalf("POST approve: %d %s", code, body)
	}
	approved := time.Now()
	prod := p.waitCommit("prod/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", staging)
	p.waitApp("prod-frontend", "Synced and Healthy at its promotion commit", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(prod)(app) && syncedBy(app, "kropipe", prod)
	})
	p.waitDeployment("prod", "frontend", p.image("frontend", "1.2.2"))
	t.Logf("approval → prod-frontend Synced and Healthy in %s", time.Since(approved).Round(10*time.Millisecond))

	// Exactly three commits since the seed: one per stage, none repeated by the new leader.
	if got := p.log(seed); len(strings.Split(strings.TrimSpace(got), "\n")) != 3 {
		t.Errorf("commits since the seed:\n%s\nwant exactly develop's, staging's and prod's promotion", got)
	}
	// Siblings: the backend Applications were never touched, nor their Deployments.
	for _, app := range []string{"develop-backend", "staging-backend"} {
		now := p.app(app)
		if now.Operation != nil || !sameOperation(before[app], now) {
			t.Errorf("%s got an operation it should not have: %s", app, stack.DescribeApplication(now))
		}
	}
	p.waitDeployment("develop", "backend", p.image("backend", "2.0.0"))
	p.waitDeployment("staging", "backend", p.image("backend", "2.0.0"))

	// Rollback through the debug API: a commit, synced, and the old image live again.
	var out struct{ Stage, Kind, Old, New, Commit string }
	if code, body := p.post(b, "/api/v1/stages/develop-frontend/rollback", map[string]string{}); code != http.StatusOK {
		t.Fatalf("POST rollback: %d %s", code, body)
	} else if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("rollback answer %s: %v", body, err)
	}
	if out.Kind != "rollback" || out.Old != "1.2.2" || out.New != "1.2.1" || out.Commit == "" {
		t.Fatalf("rollback answered %+v, want rollback 1.2.2 → 1.2.1 with a commit", out)
	}
	rolledBack := p.waitCommit("develop/frontend/instance.yaml", "Roll back image from 1.2.2 to 1.2.1", prod)
	if rolledBack != out.Commit {
		t.Errorf("rollback answered commit %s, the branch has %s", out.Commit, rolledBack)
	}
	if rejected := strings.TrimSpace(p.git("log", "-1", "--format=%(trailers:key=Kropipe-Rejected,valueonly)", rolledBack)); rejected != "1.2.2" {
		t.Errorf("rollback commit trailer Kropipe-Rejected = %q, want 1.2.2", rejected)
	}
	p.waitApp("develop-frontend", "Synced and Healthy at the rollback commit", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(rolledBack)(app) && syncedBy(app, "kropipe", rolledBack)
	})
	p.waitDeployment("develop", "frontend", p.image("frontend", "1.2.1"))
	// The rejected tag stays out: passes go on without a new commit, and staging (which already
	// runs 1.2.2) is not sent back by itself.
	rb := p.waitStage(b, "develop-frontend", "verified 1.2.1 again", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1" && s.VerifiedFreight.Commit == rolledBack
	})
	p.waitStage(b, "develop-frontend", "two more passes", func(s stageStatus) bool { return s.CheckedAt.After(rb.CheckedAt.Add(5 * time.Second)) })
	if head := p.head(); head != rolledBack {
		t.Errorf("after the rollback the promoter committed again:\n%s", p.log(rolledBack))
	}
	p.waitDeployment("staging", "frontend", p.image("frontend", "1.2.2"))
	p.waitStage(b, "staging-frontend", "holding 1.2.2 (develop's 1.2.1 is older)", func(s stageStatus) bool {
		return s.Decision == "hold" && s.CurrentTag == "1.2.2" && strings.Contains(s.Reason, "1.2.1 is older than the current 1.2.2")
	})

	// Events on the Applications tell the story.
	p.wantEvent("develop-frontend", "Promoted", "1.2.2")
	p.wantEvent("develop-frontend", "RolledBack", "Roll back image from 1.2.2 to 1.2.1")
	p.wantEvent("staging-frontend", "Promoted", "1.2.2")

	// The Git password (from Argo CD's Secret) never reaches a log or the API.
	for _, pr := range []*promoter{a, b} {
		if logs, err := os.ReadFile(pr.LogPath); err != nil || bytes.Contains(logs, []byte(p.password)) {
			t.Errorf("%s log (%v) contains the Git password", pr.Name, err)
		}
	}
	if _, body := p.get(b, "/api/v1/stages"); strings.Contains(body, p.password) {
		t.Error("GET /api/v1/stages contains the Git password")
	}

	// What a user sees through kubectl port-forward.
	status := exec.CommandContext(ctx, st.Binaries.Promoter, "status", "--addr", b.addr)
	table, err := status.CombinedOutput()
	if err != nil || !bytes.Contains(table, []byte("develop-frontend")) || !bytes.Contains(table, []byte("staging-frontend")) {
		t.Errorf("promoter status --addr %s: %v\n%s", b.addr, err, table)
	}
	t.Logf("promoter status:\n%s", table)

	// The pipeline page at the same address: a card per stage with its Argo CD sync state.
	code, page := p.get(b, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / on the leader's API address: %d\n%s", code, page)
	}
	for _, app := range p.apps {
		card, ok := cardOf(page, app)
		if !ok {
			t.Errorf("the pipeline page has no card for %s", app)
			continue
		}
		sync := p.app(app).Status.Sync.Status
		if want := fmt.Sprintf(`<dt>Argo CD</dt><dd><span class="sync s-%s">%s</span>`, strings.ToLower(string(sync)), sync); !strings.Contains(card, want) {
			t.Errorf("the card of %s does not show its Application %s:\n%s", app, sync, card)
		}
	}
}

// cardOf is the HTML of stage's card on the pipeline page.
func cardOf(page, stage string) (string, bool) {
	_, rest, ok := strings.Cut(page, `id="stage-`+stage+`"`)
	if !ok {
		return "", false
	}
	card, _, _ := strings.Cut(rest, "</article>")
	return card, true
}

// pipeline is one run of the example ApplicationSet on the stack.
type pipeline struct {
	t    testing.TB
	ctx  context.Context
	srv  *stack.GitServer
	co   *stack.Checkout
	apps []string
	soak time.Duration

	kubeconfig string
	password   string // of the private Git server
	// promoterArgs are added to every replica's command line (e.g. a shorter --health-timeout).
	promoterArgs []string
}

// promoter is one running `promoter controller` replica.
type promoter struct {
	*stack.Process
	addr string // its debug API
}

const repo = "gitops"

func newPipeline(t *testing.T, ctx context.Context) *pipeline {
	p := &pipeline{t: t, ctx: ctx, soak: 20 * time.Second,
		apps: []string{"develop-frontend", "develop-backend", "staging-frontend", "staging-backend", "prod-frontend"}}
	var err error
	// A private Git server: nobody gets in without the credentials in Argo CD's Secret.
	if p.srv, err = stack.StartGitServer(filepath.Join(st.Dir, "git-private")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.srv.Close() })
	p.password = randomHex(16)
	p.srv.RequireBasicAuth("kropipe-e2e", p.password)
	p.apply(&corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "repo-gitops", Namespace: stack.ArgoCDNamespace,
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "repository"}},
		StringData: map[string]string{"type": "git", "url": p.srv.RepoURL(repo), "username": "kropipe-e2e", "password": p.password},
	})
	p.installPromoterRBAC()
	return p
}

// seed serves examples/gitops with the images in the stack's registry and staging caught up
// with develop, pushes the tags the instances name, applies the example ApplicationSet pointed
// at this stack, and returns the seed commit once its four Applications exist.
func (p *pipeline) seed() string {
	t := p.t
	if err := p.srv.CreateRepo(p.ctx, repo); err != nil {
		t.Fatal(err)
	}
	co, err := p.srv.Clone(p.ctx, repo, filepath.Join(t.TempDir(), repo))
	if err != nil {
		t.Fatal(err)
	}
	p.co = co
	examples := filepath.Join(repoRoot, "examples", "gitops")
	if err := co.CopyTree(examples, "."); err != nil {
		t.Fatal(err)
	}
	// Production: develop's frontend instance in its own folder.
	prod, err := co.ReadFile("develop/frontend/instance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := co.WriteFile("prod/frontend/instance.yaml", prod); err != nil {
		t.Fatal(err)
	}
	for path, tag := range map[string]string{
		"develop/frontend/instance.yaml": "1.2.1", "staging/frontend/instance.yaml": "1.2.1",
		"develop/backend/instance.yaml": "2.0.0", "staging/backend/instance.yaml": "2.0.0",
		"prod/frontend/instance.yaml": "1.2.1",
	} {
		b, err := co.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("registry.example.com/"), []byte(st.RegistryAddr+"/"))
		if !tagLine.Match(b) {
			t.Fatalf("examples/gitops/%s: no deployment tag line", path)
		}
		b = tagLine.ReplaceAll(b, []byte(`${1}"`+tag+`"`))
		if err := co.WriteFile(path, b); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := co.CommitAndPush(p.ctx, "Seed from examples/gitops")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []struct{ repo, tag string }{{"team/frontend", "1.2.0"}, {"team/frontend", "1.2.1"}, {"team/backend", "1.9.3"}, {"team/backend", "2.0.0"}} {
		pushImage(t, st.RegistryAddr, img.repo, img.tag)
	}
	p.applyAppSet(filepath.Join(examples, "appsets", "services.yaml"))
	p.createProdApp()
	for _, app := range p.apps {
		p.waitApp(app, "generated by the ApplicationSet", func(*v1alpha1.Application) bool { return true })
	}
	return seed
}

// applyAppSet applies the example ApplicationSet as a user of this stack would edit it: the
// repository, cluster and registry are this stack's, passes every 3s instead of 5m and a 20s
// soak instead of 10m. Everything else, the kropipe.io annotations included, is the example.
func (p *pipeline) applyAppSet(path string) {
	t := p.t
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	set := func(v any, fields ...string) {
		if _, found, err := unstructured.NestedFieldNoCopy(u.Object, fields...); err != nil || !found {
			t.Fatalf("%s: %s not found; the test edits it", path, strings.Join(fields, "."))
		}
		if err := unstructured.SetNestedField(u.Object, v, fields...); err != nil {
			t.Fatal(err)
		}
	}
	set("3s", "metadata", "annotations", "kropipe.io/interval")
	set(st.RegistryAddr+"/team/{{ .service }}", "spec", "template", "metadata", "annotations", "kropipe.io/image")
	set(p.srv.RepoURL(repo), "spec", "template", "spec", "source", "repoURL")
	set(st.APIServerURL, "spec", "template", "spec", "destination", "server")
	patch, _, _ := unstructured.NestedString(u.Object, "spec", "templatePatch")
	soak := regexp.MustCompile(`kropipe.io/soak: \S+`)
	if !soak.MatchString(patch) {
		t.Fatalf("%s: templatePatch sets no kropipe.io/soak", path)
	}
	set(soak.ReplaceAllString(patch, "kropipe.io/soak: "+p.soak.String()), "spec", "templatePatch")
	if err := st.Apply(p.ctx, u); err != nil {
		t.Fatal(err)
	}
}

// createProdApp adds production outside the ApplicationSet, as teams often keep it: an
// Application of its own whose annotations make it the stage after staging-frontend, taking
// only what a human approved.
func (p *pipeline) createProdApp() {
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: "prod-frontend", Namespace: stack.ArgoCDNamespace, Annotations: map[string]string{
			"argocd.argoproj.io/manifest-generate-paths": ".;/rgds",
			"kropipe.io/image":                           st.RegistryAddr + "/team/frontend",
			"kropipe.io/strategy":                        "semver",
			"kropipe.io/constraint":                      "^1.2",
			"kropipe.io/upstream":                        "staging-frontend",
			"kropipe.io/auto-promote":                    "false",
			"kropipe.io/interval":                        "3s",
		}},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL: p.srv.RepoURL(repo), Path: "prod/frontend", TargetRevision: "main",
				Plugin: &v1alpha1.ApplicationSourcePlugin{Name: "kro", Parameters: v1alpha1.ApplicationSourcePluginParameters{{Name: "rgd-paths", String_: ptr.To("rgds")}}},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: "prod"},
			SyncPolicy:  &v1alpha1.SyncPolicy{SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"}},
		},
	}
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Create(p.ctx, app, metav1.CreateOptions{}); err != nil {
		p.t.Fatalf("create Application prod-frontend: %v", err)
	}
}

// installPromoterRBAC applies the install's ServiceAccount, Role and RoleBinding from
// manifests/promoter into argocd and writes a kubeconfig with a token of that ServiceAccount:
// the promoter runs with exactly the permissions the install grants.
func (p *pipeline) installPromoterRBAC() {
	t := p.t
	for _, f := range []string{"serviceaccount.yaml", "role.yaml", "rolebinding.yaml"} {
		if err := st.ApplyFile(p.ctx, filepath.Join(repoRoot, "manifests", "promoter", f), stack.ArgoCDNamespace); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := st.Kube.CoreV1().ServiceAccounts(stack.ArgoCDNamespace).CreateToken(p.ctx, "kropipe-promoter",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount kropipe-promoter: %v", err)
	}
	if p.kubeconfig, err = st.KubeconfigFor("kropipe-promoter", tr.Status.Token, stack.ArgoCDNamespace); err != nil {
		t.Fatal(err)
	}
}

// startPromoter runs one replica as the install's Deployment does, on loopback ports.
// env is added to its environment (a crash point).
func (p *pipeline) startPromoter(name string, env ...string) *promoter {
	t := p.t
	ports, err := stack.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	proc, err := st.Run(name, st.Binaries.Promoter, append([]string{
		"controller",
		"--kubeconfig=" + p.kubeconfig,
		"--leader-elect", "--namespace=" + stack.ArgoCDNamespace, "--watch-namespaces=" + stack.ArgoCDNamespace,
		"--insecure-registry=" + st.RegistryAddr,
		"--data-dir=" + filepath.Join(st.Dir, name),
		"--addr=" + addr, "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
	}, p.promoterArgs...), append([]string{"POD_NAME=" + name}, env...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	pr := &promoter{Process: proc, addr: addr}
	p.waitHTTP(pr, "/healthz")
	return pr
}

// waitLeader waits until the promoter Lease names replica name.
func (p *pipeline) waitLeader(name string) {
	p.poll("the Lease held by "+name, 2*time.Minute, func() (bool, string) {
		l, err := st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace).Get(p.ctx, "kropipe-promoter", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		holder := ptr.Deref(l.Spec.HolderIdentity, "")
		return strings.HasPrefix(holder, name+"_"), "holder " + holder
	})
}

// stageStatus is the part of GET /api/v1/stages/{name} the test reads.
type stageStatus struct {
	Decision        string    `json:"decision"`
	Reason          string    `json:"reason"`
	Error           string    `json:"error"`
	CurrentTag      string    `json:"currentTag"`
	CheckedAt       time.Time `json:"checkedAt"`
	VerifiedFreight *struct {
		Value      string    `json:"value"`
		Commit     string    `json:"commit"`
		VerifiedAt time.Time `json:"verifiedAt"`
	} `json:"verifiedFreight"`
	Verification *struct {
		Value, Phase, Message, Log string
	} `json:"verification"`
	// Owed are the automatic rollbacks the promoter owes the stage.
	Owed []struct {
		Kind, From, Reason, LastError string
		Attempts                      int
	} `json:"owed"`
	// Skipped are the tags ranked above the candidate that the stage's signature policies
	// refused, each with why ("1.2.3: no signature by …").
	Skipped []string `json:"skipped"`
}

func (p *pipeline) waitStage(pr *promoter, name, what string, cond func(stageStatus) bool) stageStatus {
	return waitStageAs(p, pr, name, what, cond)
}

// waitStageAs polls the stage's status from pr's API, decoded as T (each test's view of the
// fields it checks), until cond holds.
func waitStageAs[T any](p *pipeline, pr *promoter, name, what string, cond func(T) bool) T {
	var s T
	p.poll("stage "+name+" "+what, syncTimeout, func() (bool, string) {
		code, body := p.get(pr, "/api/v1/stages/"+name)
		if code != http.StatusOK {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		var zero T
		s = zero
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return false, err.Error()
		}
		return cond(s), body
	})
	return s
}

func (p *pipeline) waitHTTP(pr *promoter, path string) {
	p.poll(pr.Name+" "+path, time.Minute, func() (bool, string) {
		if exited, err := pr.Exited(); exited {
			p.t.Fatalf("%s exited: %v\n%s", pr.Name, err, pr.Tail(30))
		}
		code, body := p.get(pr, path)
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
}

func (p *pipeline) get(pr *promoter, path string) (int, string) {
	return p.call(http.MethodGet, pr, path, nil)
}

func (p *pipeline) post(pr *promoter, path string, body any) (int, string) {
	return p.call(http.MethodPost, pr, path, body)
}

func (p *pipeline) call(method string, pr *promoter, path string, body any) (int, string) {
	return p.do(method, pr, path, body, "")
}

// do sends body as JSON (none when nil) with a bearer token (none when ""), and returns the
// status and body; a request that never got an answer is status 0 with the error.
func (p *pipeline) do(method string, pr *promoter, path string, body any, token string) (int, string) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(p.ctx, method, "http://"+pr.addr+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// syncByHand starts a sync of app at revision as `argocd app sync` does.
func (p *pipeline) syncByHand(app, revision string) {
	patch := fmt.Sprintf(`{"operation":{"initiatedBy":{"username":"e2e"},"sync":{"revision":%q,"syncOptions":["CreateNamespace=true"]}}}`, revision)
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Patch(p.ctx, app, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		p.t.Fatalf("sync %s: %v", app, err)
	}
}

func (p *pipeline) app(name string) *v1alpha1.Application {
	a, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Get(p.ctx, name, metav1.GetOptions{})
	if err != nil {
		p.t.Fatalf("Application %s: %v", name, err)
	}
	return a
}

func (p *pipeline) waitApp(name, what string, cond func(*v1alpha1.Application) bool) {
	p.poll("Application "+name+" "+what, syncTimeout, func() (bool, string) {
		a, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Get(p.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cond(a), stack.DescribeApplication(a)
	})
}

func syncedHealthyAt(revision string) func(*v1alpha1.Application) bool {
	return func(a *v1alpha1.Application) bool {
		s := a.Status
		return s.Sync.Revision == revision && s.Sync.Status == v1alpha1.SyncStatusCodeSynced && s.Health.Status == "Healthy" &&
			a.Operation == nil && s.OperationState != nil && s.OperationState.Phase == "Succeeded"
	}
}

// syncedBy reports whether the Application's last operation was user's sync to revision.
func syncedBy(a *v1alpha1.Application, user, revision string) bool {
	op := a.Status.OperationState
	return op != nil && op.Operation.InitiatedBy.Username == user && op.Operation.Sync != nil && op.Operation.Sync.Revision == revision
}

func sameOperation(a, b *v1alpha1.Application) bool {
	x, y := a.Status.OperationState, b.Status.OperationState
	return x != nil && y != nil && x.StartedAt.Equal(&y.StartedAt) && x.Operation.InitiatedBy.Username == y.Operation.InitiatedBy.Username
}

// waitDeployment waits until the Deployment runs image with every replica Ready (kwok's pods).
func (p *pipeline) waitDeployment(ns, name, image string) {
	p.poll(fmt.Sprintf("Deployment %s/%s on %s, all replicas ready", ns, name, image), syncTimeout, func() (bool, string) {
		d, err := st.Kube.AppsV1().Deployments(ns).Get(p.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got := d.Spec.Template.Spec.Containers[0].Image
		want := ptr.Deref(d.Spec.Replicas, 1)
		return got == image && d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == want && d.Status.ReadyReplicas == want && d.Status.Replicas == want,
			fmt.Sprintf("image %s, replicas %d updated %d ready %d of %d", got, d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, want)
	})
}

// admitIngress does what an ingress controller does once it serves an Ingress: it writes the
// load balancer address into the status, which is what Argo CD's health check waits for.
func (p *pipeline) admitIngress(ns, name string) {
	p.poll("Ingress "+ns+"/"+name+" admitted", syncTimeout, func() (bool, string) {
		ing, err := st.Kube.NetworkingV1().Ingresses(ns).Get(p.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "127.0.0.1"}}
		if _, err := st.Kube.NetworkingV1().Ingresses(ns).UpdateStatus(p.ctx, ing, metav1.UpdateOptions{}); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

func (p *pipeline) image(service, tag string) string {
	return st.RegistryAddr + "/team/" + service + ":" + tag
}

// waitCommit waits for a commit after since touching path with subject, and returns it.
func (p *pipeline) waitCommit(path, subject, since string) string {
	var sha string
	p.poll(fmt.Sprintf("commit %q on %s", subject, path), syncTimeout, func() (bool, string) {
		if err := p.co.Pull(p.ctx); err != nil {
			return false, err.Error()
		}
		out := p.git("log", "--format=%H %s", since+"..HEAD", "--", path)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if h, s, _ := strings.Cut(line, " "); s == subject {
				sha = h
				return true, ""
			}
		}
		return false, "commits: " + out
	})
	return sha
}

func (p *pipeline) head() string {
	if err := p.co.Pull(p.ctx); err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimSpace(p.git("rev-parse", "HEAD"))
}

// log lists the commits after since, one line each.
func (p *pipeline) log(since string) string {
	return p.git("log", "--format=%h %s", since+"..HEAD")
}

func (p *pipeline) commitTime(sha string) time.Time {
	sec, err := strconv.ParseInt(strings.TrimSpace(p.git("log", "-1", "--format=%ct", sha)), 10, 64)
	if err != nil {
		p.t.Fatal(err)
	}
	return time.Unix(sec, 0)
}

func (p *pipeline) git(args ...string) string {
	out, err := p.co.Git(p.ctx, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *pipeline) wantEvent(app, reason, text string) {
	p.poll(fmt.Sprintf("Event %s on %s mentioning %q", reason, app, text), time.Minute, func() (bool, string) {
		evs, err := st.Kube.CoreV1().Events(stack.ArgoCDNamespace).List(p.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + app})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, text) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "\n")
	})
}

func (p *pipeline) apply(obj any) {
	if err := st.ApplyObject(p.ctx, obj); err != nil {
		p.t.Fatal(err)
	}
}

// poll calls f every 300ms until it returns true; on timeout the test fails with what f last
// said and the promoters' log tails.
func (p *pipeline) poll(what string, timeout time.Duration, f func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) || p.ctx.Err() != nil {
			var tails strings.Builder
			for _, pr := range st.Processes() {
				if strings.HasPrefix(pr.Name, "promoter-") {
					fmt.Fprintf(&tails, "----- %s -----\n%s\n", pr.Name, pr.Tail(30))
				}
			}
			p.t.Fatalf("waited %s for %s; last: %s\n%s", timeout, what, last, tails.String())
		}
		select {
		case <-p.ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// syncTimeout bounds each wait for Argo CD or the promoter: seconds here, a loaded 2-core CI
// machine can stretch that a lot.
const syncTimeout = 4 * time.Minute

var tagLine = regexp.MustCompile(`(?m)^(\s+tag:\s*)"?([A-Za-z0-9_][A-Za-z0-9._-]*)"?`)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
