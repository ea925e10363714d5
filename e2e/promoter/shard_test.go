package promoter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// Sharding on the real kube-apiserver: 40 stages (Applications in a namespace Argo CD does not
// reconcile, so nothing but the promoter touches them) spread over 16 shards and four
// `promoter controller --shards=16` replicas with the install's Role. New tags for half the
// images are pushed and, at the first promotion commit, the two replicas holding the most
// shards are SIGKILLed; then the other half. The survivors take their shards over once the Leases expire (measured on the
// Leases' own timestamps), every stage gets exactly one promotion commit (none lost, none
// twice), and a survivor's API answers for every stage, passing a pause on to the other
// survivor when that one runs the stage.
func TestShards_FourReplicasTwoKilled_EveryStagePromotedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := &pipeline{t: t, ctx: ctx, srv: st.Git}
	p.installPromoterRBAC()
	s := &shardRun{pipeline: p, repo: shardRepo, appNS: shardAppNS, destNS: shardDestNS, stages: shardStages, images: shardImages}
	t.Cleanup(s.cleanup)
	seed := s.seed()

	token := randomHex(16)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	var reps []*promoter
	for i := range 4 {
		reps = append(reps, s.startReplica(fmt.Sprintf("promoter-shard-%d", i), tokenFile, shardCount))
	}
	holders := s.waitSpread(reps, shardCount)
	t.Logf("shards per replica: %v", count(holders))

	// Every replica answers for every stage, before anything moves.
	s.waitAll(reps[0], "up to date at 1.0.0", func(x listedStage) bool { return x.CurrentTag == "1.0.0" && x.Decision == "up-to-date" })
	if head := p.head(); head != seed {
		t.Fatalf("commits with nothing new in the registry:\n%s", p.log(seed))
	}

	// The two replicas running the most shards die at the first promotion commit.
	byLoad := append([]*promoter(nil), reps...)
	sort.SliceStable(byLoad, func(i, j int) bool { return count(holders)[byLoad[i].Name] > count(holders)[byLoad[j].Name] })
	victims, survivors := byLoad[:2], byLoad[2:]
	// Half the images first; the other half once the victims are dead, so their stages are
	// promoted by whoever took their shards over.
	for img := range shardImages / 2 {
		pushImage(t, st.RegistryAddr, s.image(img), "1.1.0")
	}
	p.poll("a first promotion commit", syncTimeout, func() (bool, string) {
		if err := p.co.Pull(ctx); err != nil {
			return false, err.Error()
		}
		return p.head() != seed, "none yet"
	})
	for _, v := range victims {
		v.Kill()
	}
	killed := time.Now()
	// The victims' last renewals, read after they died: nobody may take their shards before
	// these plus the lease duration.
	lastRenew := map[string]time.Time{}
	for name, l := range s.shardLeases() {
		for _, v := range victims {
			if strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), v.Name+"_") {
				lastRenew[name] = l.Spec.RenewTime.Time
			}
		}
	}
	t.Logf("killed %s and %s (%d shards) after %d commits", victims[0].Name, victims[1].Name, len(lastRenew), strings.Count(p.log(seed), "\n"))
	for img := shardImages / 2; img < shardImages; img++ {
		pushImage(t, st.RegistryAddr, s.image(img), "1.1.0")
	}

	// Takeover: every shard the victims held is held by a survivor.
	p.poll("the victims' shards held by the survivors", syncTimeout, func() (bool, string) {
		for name, l := range s.shardLeases() {
			holder := ptr.Deref(l.Spec.HolderIdentity, "")
			if !strings.HasPrefix(holder, survivors[0].Name+"_") && !strings.HasPrefix(holder, survivors[1].Name+"_") {
				return false, name + " held by " + holder
			}
		}
		return true, ""
	})
	t.Logf("survivors hold every shard %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	var longest time.Duration
	for name, l := range s.shardLeases() {
		renewed, ok := lastRenew[name]
		if !ok {
			continue
		}
		took := l.Spec.AcquireTime.Sub(renewed)
		longest = max(longest, took)
		// Fenced: not before the Lease expired; within one lease duration of it (the survivors
		// count it from when they saw the last renewal: a retry period to see it, one to
		// notice the expiry, and a second for a loaded machine).
		if took < shardLease {
			t.Errorf("%s taken over %s after the victim's last renewal, before the lease (%s) expired", name, took, shardLease)
		}
		if took > shardLease+2*shardRetry+time.Second {
			t.Errorf("%s taken over %s after the victim's last renewal; want within the lease duration %s (+ two retry periods)", name, took, shardLease)
		}
	}
	t.Logf("takeover: %s at most from a victim's last renewal to a survivor's acquisition (lease %s, retry %s)", longest.Round(time.Millisecond), shardLease, shardRetry)

	// Every stage promoted exactly once, whoever ran it.
	s.waitAll(survivors[0], "at 1.1.0", func(x listedStage) bool { return x.CurrentTag == "1.1.0" })
	s.wantOneCommitEach(seed)
	// A few more passes on the survivors: still one commit each.
	settled := time.Now()
	s.waitAll(survivors[1], "checked twice more", func(x listedStage) bool { return x.CheckedAt.After(settled.Add(2 * shardInterval)) })
	s.wantOneCommitEach(seed)

	// A survivor answers for a stage the other survivor runs, and passes an action on to it.
	other := s.stageOn(survivors[1], token)
	if code, body := p.get(survivors[0], "/api/v1/stages/"+other); code != http.StatusOK {
		t.Fatalf("GET %s on %s (it runs on %s): %d %s", other, survivors[0].Name, survivors[1].Name, code, body)
	}
	if code, body := p.do(http.MethodPost, survivors[0], "/api/v1/stages/"+other+"/pause", nil, token); code != http.StatusOK {
		t.Fatalf("pause %s through %s: %d %s", other, survivors[0].Name, code, body)
	}
	s.waitAll(survivors[1], "with "+other+" paused", func(x listedStage) bool { return x.Name != other || x.Paused })
	if code, body := p.do(http.MethodPost, survivors[0], "/api/v1/stages/"+other+"/resume", nil, token); code != http.StatusOK {
		t.Fatalf("resume %s through %s: %d %s", other, survivors[0].Name, code, body)
	}
	t.Logf("git push retries on the survivors (stages of one branch on several replicas): %s", s.pushRetries(survivors))
}

const (
	shardStages    = 40
	shardImages    = 8
	shardCount     = 16
	shardRepo      = "shards-gitops"
	shardAppNS     = "kropipe-shards"
	shardDestNS    = "kropipe-shards-dest"
	shardInterval  = 2 * time.Second
	shardLease     = 3 * time.Second
	shardRenew     = 2 * time.Second
	shardRetry     = 500 * time.Millisecond
	shardStateName = "kropipe-promoter-state"
)

// shardRun is one sharding test's stages and replicas: stages one-stage pipelines (stage i is
// Application shard-sNN in appNS, deploying folder sNN of repo to destNS; namespaces Argo CD
// does not reconcile) over images images.
type shardRun struct {
	*pipeline
	reps                []*promoter
	repo, appNS, destNS string
	stages, images      int
}

// image is the run's i-th image, named after its repository: runs sharing the package's stack
// (and its registry) must not see each other's tags.
func (s *shardRun) image(i int) string { return fmt.Sprintf("%s/img%d", s.repo, i) }

func shardStage(i int) string { return fmt.Sprintf("shard-s%02d", i) }

// seed writes one folder per stage, pushes the images' first tag, lets the promoter's
// ServiceAccount read and patch Applications in their namespace (the install's Role, bound
// there as the manifests' comment says), and creates the Applications.
func (s *shardRun) seed() string {
	t, ctx := s.t, s.ctx
	for _, ns := range []string{s.appNS, s.destNS} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	s.bindRole(s.appNS)
	if err := s.srv.CreateRepo(ctx, s.repo); err != nil {
		t.Fatal(err)
	}
	co, err := s.srv.Clone(ctx, s.repo, filepath.Join(t.TempDir(), s.repo))
	if err != nil {
		t.Fatal(err)
	}
	s.co = co
	image := func(i int) string { return s.image(i % s.images) }
	seed := seedStageFolders(t, ctx, co, s.stages, s.images, func(i int) string { return fmt.Sprintf("s%02d", i) }, image)
	for i := range s.stages {
		app := stageApplication(shardStage(i), s.appNS, s.srv.RepoURL(s.repo), fmt.Sprintf("s%02d", i), image(i), shardInterval.String(), s.destNS)
		if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(s.appNS).Create(ctx, app, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Application %s: %v", app.Name, err)
		}
	}
	return seed
}

// seedStageFolders writes n stage folders (dir(i)/instance.yaml) into co, each the example
// frontend app at image(i) tag 1.0.0, commits and pushes them, and pushes 1.0.0 of the first
// images images to the registry. It returns the seed commit.
func seedStageFolders(tb testing.TB, ctx context.Context, co *stack.Checkout, n, images int, dir, image func(int) string) string {
	tb.Helper()
	example, err := os.ReadFile(filepath.Join(repoRoot, "examples", "gitops", "develop", "frontend", "instance.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		b := strings.ReplaceAll(string(example), "registry.example.com/team/frontend", st.RegistryAddr+"/"+image(i))
		b = tagLine.ReplaceAllString(b, `${1}"1.0.0"`)
		if err := co.WriteFile(dir(i)+"/instance.yaml", []byte(b)); err != nil {
			tb.Fatal(err)
		}
	}
	seed, err := co.CommitAndPush(ctx, fmt.Sprintf("Seed %d stages", n))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range images {
		pushImage(tb, st.RegistryAddr, image(i), "1.0.0")
	}
	return seed
}

// stageApplication is a stage's Application in ns: path of repoURL deployed to destNS, its
// image promoted by kropipe by SemVer, automatically, checked every interval.
func stageApplication(name, ns, repoURL, path, image, interval, destNS string) *v1alpha1.Application {
	return &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{
			"kropipe.io/image":        st.RegistryAddr + "/" + image,
			"kropipe.io/strategy":     "semver",
			"kropipe.io/auto-promote": "true",
			"kropipe.io/interval":     interval,
		}},
		Spec: v1alpha1.ApplicationSpec{
			Project:     "default",
			Source:      &v1alpha1.ApplicationSource{RepoURL: repoURL, Path: path, TargetRevision: "main"},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: destNS},
		},
	}
}

// bindRole lets the promoter's ServiceAccount read and patch the Applications in ns: the
// install's Role, bound there as the manifests' comment says.
func (s *shardRun) bindRole(ns string) {
	t, ctx := s.t, s.ctx
	if err := st.ApplyFile(ctx, filepath.Join(repoRoot, "manifests", "promoter", "role.yaml"), ns); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kropipe-promoter", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kropipe-promoter"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kropipe-promoter", Namespace: stack.ArgoCDNamespace}},
	}
	if _, err := st.Kube.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// startReplica runs one replica with --shards shards as the install's Deployment does, on
// loopback ports, with short Leases.
func (s *shardRun) startReplica(name, tokenFile string, shards int) *promoter {
	t := s.t
	ports, err := stack.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	proc, err := st.Run(name, st.Binaries.Promoter, []string{
		"controller",
		"--kubeconfig=" + s.kubeconfig,
		"--leader-elect", "--namespace=" + stack.ArgoCDNamespace, "--watch-namespaces=" + s.appNS,
		"--insecure-registry=" + st.RegistryAddr,
		"--data-dir=" + filepath.Join(st.Dir, name),
		"--addr=" + addr, "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		"--token-file=" + tokenFile,
		"--shards=" + strconv.Itoa(shards),
		"--lease-duration=" + shardLease.String(), "--renew-deadline=" + shardRenew.String(), "--retry-period=" + shardRetry.String(),
		"--health-timeout=10m",
	}, []string{"POD_NAME=" + name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	pr := &promoter{Process: proc, addr: addr}
	s.waitHTTP(pr, "/healthz")
	s.reps = append(s.reps, pr)
	return pr
}

// shardLeases returns the shard Leases by name.
func (s *shardRun) shardLeases() map[string]coordinationv1.Lease {
	ls, err := st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace).List(s.ctx, metav1.ListOptions{LabelSelector: "kropipe.io/lease-kind=shard"})
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]coordinationv1.Lease{}
	for _, l := range ls.Items {
		out[l.Name] = l
	}
	return out
}

// waitSpread waits until all shards are held and every replica of reps holds its fair share
// (the bounded-load rendezvous assignment over its members); it returns shard → replica.
func (s *shardRun) waitSpread(reps []*promoter, shards int) map[string]string {
	holders := map[string]string{}
	s.poll(fmt.Sprintf("%d shards spread over the %d replicas", shards, len(reps)), syncTimeout, func() (bool, string) {
		holders = map[string]string{}
		for name, l := range s.shardLeases() {
			id := ptr.Deref(l.Spec.HolderIdentity, "")
			if i := strings.LastIndex(id, "_"); i > 0 {
				holders[name] = id[:i]
			}
		}
		per := count(holders)
		for _, n := range per {
			if n > shards/len(reps) {
				return false, fmt.Sprint(per) // still handing shards over to a newer replica
			}
		}
		return len(holders) == shards && len(per) == len(reps), fmt.Sprint(per)
	})
	return holders
}

func count(holders map[string]string) map[string]int {
	per := map[string]int{}
	for _, r := range holders {
		per[r]++
	}
	return per
}

type listedStage struct {
	Name string `json:"name"`
	stageStatus
	Paused bool `json:"paused"`
}

// waitAll waits until pr's API lists every stage and each meets cond.
func (s *shardRun) waitAll(pr *promoter, what string, cond func(listedStage) bool) {
	s.poll(fmt.Sprintf("%s lists all %d stages %s", pr.Name, s.stages, what), syncTimeout, func() (bool, string) {
		code, body := s.get(pr, "/api/v1/stages")
		if code != http.StatusOK {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		var list struct {
			Stages []listedStage `json:"stages"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		for _, st := range list.Stages {
			if !cond(st) {
				return false, fmt.Sprintf("%s: %s (%s)", st.Name, st.CurrentTag, st.Reason)
			}
			seen[st.Name] = true
		}
		return len(seen) == s.stages, fmt.Sprintf("%d stages listed", len(seen))
	})
}

// wantOneCommitEach checks that every stage's file has exactly one commit since seed, the
// promotion to 1.1.0, and that there are no others.
func (s *shardRun) wantOneCommitEach(seed string) {
	t := s.t
	if err := s.co.Pull(s.ctx); err != nil {
		t.Fatal(err)
	}
	for i := range s.stages {
		path := fmt.Sprintf("s%02d/instance.yaml", i)
		out := strings.TrimSpace(s.git("log", "--format=%s", seed+"..HEAD", "--", path))
		if out != "Promote image from 1.0.0 to 1.1.0" {
			t.Errorf("%s: commits since the seed:\n%s\nwant exactly one promotion to 1.1.0", path, out)
		}
	}
	if n := len(strings.Split(strings.TrimSpace(s.log(seed)), "\n")); n != s.stages {
		t.Errorf("%d commits since the seed, want %d (one per stage):\n%s", n, s.stages, s.log(seed))
	}
}

// stageOn returns a stage pr runs itself, asked as another replica asks: with the token.
func (s *shardRun) stageOn(pr *promoter, token string) string {
	code, body := s.do(http.MethodGet, pr, "/api/v1/shard/stages", nil, token)
	var list struct {
		Stages []listedStage `json:"stages"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Stages) == 0 {
		s.t.Fatalf("%s runs no stage: %d %s", pr.Name, code, body)
	}
	return list.Stages[0].Name
}

// pushRetries sums kropipe_git_push_retries_total over the replicas' metrics.
func (s *shardRun) pushRetries(reps []*promoter) string {
	var parts []string
	for _, pr := range reps {
		_, body := s.get(pr, "/metrics")
		total := 0.0
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "kropipe_git_push_retries_total") {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				total += v
			}
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", pr.Name, total))
	}
	return strings.Join(parts, ", ")
}

// cleanup removes what the test made in the shared namespaces, after its replicas stopped.
func (s *shardRun) cleanup() {
	for _, pr := range s.reps {
		pr.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []string{s.appNS, s.destNS} {
		if ns == "" || ns == stack.ArgoCDNamespace {
			continue // not the run's own: Applications Argo CD syncs live in its namespace
		}
		if err := st.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			s.t.Errorf("cleanup: delete namespace %s: %v", ns, err)
		}
	}
	leases := st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace)
	ls, err := leases.List(ctx, metav1.ListOptions{LabelSelector: "kropipe.io/shard-set"})
	if err == nil {
		for _, l := range ls.Items {
			_ = leases.Delete(ctx, l.Name, metav1.DeleteOptions{})
		}
	}
	// The stages' state: one ConfigMap per bucket of stage names.
	_ = st.Kube.CoreV1().ConfigMaps(stack.ArgoCDNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "kropipe.io/state-set=" + shardStateName})
}
