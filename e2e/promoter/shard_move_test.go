package promoter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

const (
	moveRepo   = "move-gitops"
	moveAppNS  = "kropipe-move"
	moveDestNS = "kropipe-move-dest"
	moveImage  = "move/app"
)

// TestShards_APausedApprovedPipelineGainsANewFirstStageAndKeepsItsPauseAndApproval: two
// replicas with the manifests' --shards 16 run move-develop → move-prod; move-prod is paused
// and 1.1.0 approved for it. A stage move-canary is then put in front: the pipeline's key (its
// alphabetically smallest stage) becomes move-canary, on another shard. After the move the
// replica running move-prod shows it paused, and its pause and approval are still kept.
func TestShards_APausedApprovedPipelineGainsANewFirstStageAndKeepsItsPauseAndApproval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const develop, prod, canary = "move-develop", "move-prod", "move-canary"
	if shardOf(develop) == shardOf(canary) {
		t.Fatalf("%s and %s are on one shard (%d): the test moves nothing", develop, canary, shardOf(develop))
	}
	p := &pipeline{t: t, ctx: ctx, srv: st.Git}
	p.installPromoterRBAC()
	s := &shardRun{pipeline: p}
	t.Cleanup(func() { moveCleanup(t, s) })
	for _, ns := range []string{moveAppNS, moveDestNS} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	s.bindRole(moveAppNS)
	if err := s.srv.CreateRepo(ctx, moveRepo); err != nil {
		t.Fatal(err)
	}
	co, err := s.srv.Clone(ctx, moveRepo, filepath.Join(t.TempDir(), moveRepo))
	if err != nil {
		t.Fatal(err)
	}
	s.co = co
	names := []string{develop, prod, canary}
	seedStageFolders(t, ctx, co, len(names), 1, func(i int) string { return names[i] }, func(int) string { return moveImage })
	apps := st.ArgoCD.ArgoprojV1alpha1().Applications(moveAppNS)
	create := func(name, upstream string, auto bool) {
		t.Helper()
		a := stageApplication(name, moveAppNS, s.srv.RepoURL(moveRepo), name, moveImage, shardInterval.String(), moveDestNS)
		a.Annotations["kropipe.io/auto-promote"] = strconv.FormatBool(auto)
		if upstream != "" {
			a.Annotations["kropipe.io/upstream"] = upstream
		}
		if _, err := apps.Create(ctx, a, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Application %s: %v", name, err)
		}
	}
	create(develop, "", true)
	create(prod, develop, false)

	token := randomHex(16)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	reps := []*promoter{moveReplica(s, "promoter-move-0", tokenFile), moveReplica(s, "promoter-move-1", tokenFile)}
	s.waitSpread(reps)

	stageOf := func(pr *promoter, name string) (listedStage, bool) {
		code, body := p.get(pr, "/api/v1/stages/"+name)
		var x listedStage
		if code != http.StatusOK || json.Unmarshal([]byte(body), &x) != nil {
			return x, false
		}
		return x, true
	}
	p.poll(prod+" listed", syncTimeout, func() (bool, string) {
		x, ok := stageOf(reps[0], prod)
		return ok && x.CurrentTag == "1.0.0", fmt.Sprintf("%+v", x)
	})
	if code, body := p.do(http.MethodPost, reps[0], "/api/v1/stages/"+prod+"/pause", nil, token); code != http.StatusOK {
		t.Fatalf("pause %s: %d %s", prod, code, body)
	}
	if code, body := p.do(http.MethodPost, reps[0], "/api/v1/stages/"+prod+"/approve", map[string]string{"tag": "1.1.0"}, token); code != http.StatusOK {
		t.Fatalf("approve 1.1.0 for %s: %d %s", prod, code, body)
	}
	kept := func() (paused, approved bool) {
		st := moveState(t, ctx, prod)
		return st.Paused[prod] != "", strings.Contains(string(st.Approvals[prod]), `"1.1.0"`)
	}
	if paused, approved := kept(); !paused || !approved {
		t.Fatalf("before the move: %s paused %v, approved %v in the state ConfigMaps; want both", prod, paused, approved)
	}
	var before *promoter
	p.poll(prod+" run by a replica", syncTimeout, func() (bool, string) {
		before = runsOn(p, reps, prod)
		return before != nil, "no replica lists it as its own"
	})

	// move-canary in front: move-develop follows it now.
	create(canary, "", true)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"kropipe.io/upstream":%q}}}`, canary)
	if _, err := apps.Patch(ctx, develop, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	wantHolder := holderOf(t, ctx, shardOf(canary))
	var after *promoter
	p.poll(prod+" run on "+canary+"'s shard", syncTimeout, func() (bool, string) {
		after = runsOn(p, reps, prod)
		if after == nil {
			return false, "no replica lists it as its own"
		}
		return after.Name == wantHolder, "runs on " + after.Name + ", want " + wantHolder
	})
	t.Logf("%s ran on %s (shard %d), now on %s (shard %d)", prod, before.Name, shardOf(develop), after.Name, shardOf(canary))
	// A few passes on its new replica: still paused there, pause and approval still kept.
	p.poll(prod+" checked twice since the move", syncTimeout, func() (bool, string) {
		x, ok := stageOf(after, prod)
		return ok && x.CheckedAt.After(moved.Add(2*shardInterval)), fmt.Sprintf("%+v", x)
	})
	if x, _ := stageOf(after, prod); !x.Paused {
		t.Errorf("after %s came first, %s on %s: paused %v (%s), want paused", canary, prod, after.Name, x.Paused, x.Reason)
	}
	if paused, approved := kept(); !paused || !approved {
		t.Errorf("after the move: %s paused %v, approved %v in the state ConfigMaps; want both", prod, paused, approved)
	}
}

// shardOf is the shard of a pipeline key among 16 (the promoter's shard.Of: FNV-1a).
func shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % shardCount)
}

// holderOf is the replica (pod name) holding shard n's Lease.
func holderOf(t *testing.T, ctx context.Context, n int) string {
	l, err := st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace).Get(ctx, fmt.Sprintf("kropipe-promoter-shard-%d", n), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := ptr.Deref(l.Spec.HolderIdentity, "")
	if i := strings.LastIndex(id, "_"); i > 0 {
		return id[:i]
	}
	return id
}

// runsOn is the replica whose own stages include name, nil when none lists it.
func runsOn(p *pipeline, reps []*promoter, name string) *promoter {
	for _, pr := range reps {
		code, body := p.get(pr, "/api/v1/shard/stages")
		var list struct {
			Stages []listedStage `json:"stages"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
			continue
		}
		for _, x := range list.Stages {
			if x.Name == name {
				return pr
			}
		}
	}
	return nil
}

// moveState is the state kept for stage, as raw entries by field, read from whichever state
// ConfigMap holds it (each stage's in one, by its name).
func moveState(t *testing.T, ctx context.Context, stage string) struct {
	Paused    map[string]string          `json:"paused"`
	Approvals map[string]json.RawMessage `json:"approvals"`
} {
	var out struct {
		Paused    map[string]string          `json:"paused"`
		Approvals map[string]json.RawMessage `json:"approvals"`
	}
	cms, err := st.Kube.CoreV1().ConfigMaps(stack.ArgoCDNamespace).List(ctx, metav1.ListOptions{LabelSelector: "kropipe.io/state-set=" + shardStateName})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		var st struct {
			Paused    map[string]string          `json:"paused"`
			Approvals map[string]json.RawMessage `json:"approvals"`
		}
		if json.Unmarshal([]byte(cm.Data["state.json"]), &st) != nil {
			continue
		}
		if _, ok := st.Paused[stage]; ok {
			out.Paused = st.Paused
		}
		if _, ok := st.Approvals[stage]; ok {
			out.Approvals = st.Approvals
		}
	}
	return out
}

// moveReplica is startReplica watching moveAppNS.
func moveReplica(s *shardRun, name, tokenFile string) *promoter {
	t := s.t
	ports, err := stack.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	proc, err := st.Run(name, st.Binaries.Promoter, []string{
		"controller",
		"--kubeconfig=" + s.kubeconfig,
		"--leader-elect", "--namespace=" + stack.ArgoCDNamespace, "--watch-namespaces=" + moveAppNS,
		"--insecure-registry=" + st.RegistryAddr,
		"--data-dir=" + filepath.Join(st.Dir, name),
		"--addr=" + addr, "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		"--token-file=" + tokenFile,
		"--shards=" + strconv.Itoa(shardCount),
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

// moveCleanup stops the replicas and removes what the test made.
func moveCleanup(t *testing.T, s *shardRun) {
	for _, pr := range s.reps {
		pr.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []string{moveAppNS, moveDestNS} {
		if err := st.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete namespace %s: %v", ns, err)
		}
	}
	leases := st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace)
	_ = leases.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "kropipe.io/shard-set"})
	_ = st.Kube.CoreV1().ConfigMaps(stack.ArgoCDNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "kropipe.io/state-set=" + shardStateName})
}
