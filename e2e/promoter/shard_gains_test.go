package promoter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kropipe/kropipe/e2e/stack"
)

// The reproduction, on the real kube-apiserver with Argo CD syncing: develop → staging
// (staging takes only what is approved) run by two `promoter controller --shards=4` replicas.
// staging is paused and 1.2.3 approved for it; then a stage gains-alpha is added in front of
// gains-develop through the Applications' annotations, which moves the pipeline's shard key
// (the smallest stage name) from gains-develop to gains-alpha. A new tag 1.2.3 flows alpha →
// develop, and staging, still paused, holds it ("paused; 1.2.3 is waiting") with no commit;
// resumed, it takes 1.2.3 at once — the approval given before the key moved — exactly once.
//
// About a minute: three Argo CD syncs through the kro plugin (alpha, develop, staging) and
// the seconds-long Leases of the shard tests.
func TestShards_PausedApprovedPipelineGainsAFirstStageAndKeepsBoth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const (
		repo                    = "gains-gitops"
		alpha, develop, staging = "gains-alpha", "gains-develop", "gains-staging"
	)
	// The pipeline's shard is FNV-1a of its key modulo --shards (README, Sharding): these names
	// move it from shard 3 to shard 2.
	if shardOf(develop, 4) == shardOf(alpha, 4) {
		t.Fatalf("%s and %s fall in one shard of 4: pick names that move the pipeline", develop, alpha)
	}
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, apps: []string{alpha, develop, staging}}
	p.installPromoterRBAC()
	// Registered before the replicas start, so it runs after they stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	v := &verifyPipeline{p}
	s := &shardRun{pipeline: p, appNS: stack.ArgoCDNamespace}
	t.Cleanup(s.cleanup)

	v.seedRepo(repo, "gains", nil)
	instance, err := v.co.ReadFile("develop/frontend/instance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.co.WriteFile("alpha/frontend/instance.yaml", instance); err != nil {
		t.Fatal(err)
	}
	seed, err := v.co.CommitAndPush(ctx, "The alpha environment, not yet a stage")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range p.apps {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	v.createAppIn(repo, develop, "develop/frontend", "gains/frontend", nil)
	v.createAppIn(repo, staging, "staging/frontend", "gains/frontend", map[string]string{
		"kropipe.io/upstream":     develop,
		"kropipe.io/auto-promote": "false",
	})
	for _, app := range []string{develop, staging} {
		p.syncByHand(app, seed)
	}
	for _, app := range []string{develop, staging} {
		p.waitApp(app, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	}

	token := randomHex(16)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := s.startReplica("promoter-gains-0", tokenFile, 4), s.startReplica("promoter-gains-1", tokenFile, 4)
	p.waitStage(a, develop, "verified at 1.2.1", func(x stageStatus) bool {
		return x.VerifiedFreight != nil && x.VerifiedFreight.Value == "1.2.1"
	})

	// Pause staging and approve 1.2.3 for it, through either replica.
	if code, body := p.do(http.MethodPost, a, "/api/v1/stages/"+staging+"/pause", nil, token); code != http.StatusOK {
		t.Fatalf("pause %s: %d %s", staging, code, body)
	}
	if code, body := p.do(http.MethodPost, b, "/api/v1/stages/"+staging+"/approve", map[string]string{"tag": "1.2.3"}, token); code != http.StatusOK {
		t.Fatalf("approve 1.2.3 for %s: %d %s", staging, code, body)
	}
	if before := status(t, p, b, staging); !before.Paused {
		t.Fatalf("%s after the pause: %+v; want it paused", staging, before)
	}
	ranOn := s.runner(staging, token, a, b)

	// alpha joins in front of develop: a new Application, deployed by hand, and develop's
	// upstream annotation.
	v.createAppIn(repo, alpha, "alpha/frontend", "gains/frontend", nil)
	p.syncByHand(alpha, seed)
	p.waitApp(alpha, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"kropipe.io/upstream":%q}}}`, alpha)
	joined := time.Now()
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(stack.ArgoCDNamespace).Patch(ctx, develop, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p.poll(develop+" downstream of "+alpha+" on both replicas", syncTimeout, func() (bool, string) {
		for _, pr := range []*promoter{a, b} {
			_, body := p.get(pr, "/api/v1/stages/"+develop)
			var x struct{ Upstream string }
			if json.Unmarshal([]byte(body), &x) != nil || x.Upstream != alpha {
				return false, pr.Name + ": " + body
			}
		}
		return true, ""
	})
	t.Logf("the pipeline ran on %s (key %s, shard %d); it runs on %s now (key %s, shard %d)",
		ranOn, develop, shardOf(develop, 4), s.runner(staging, token, a, b), alpha, shardOf(alpha, 4))
	// Once its owner checked it since (a stage that just moved reads "not checked yet", not
	// paused, until its new owner's first pass), on both replicas.
	p.waitStage(a, staging, "checked since "+alpha+" joined", func(x stageStatus) bool { return x.CheckedAt.After(joined) })
	for _, pr := range []*promoter{a, b} {
		if after := status(t, p, pr, staging); !after.Paused {
			t.Fatalf("%s on %s after %s joined: %+v; want it still paused", staging, pr.Name, alpha, after)
		}
	}

	// A new tag flows alpha → develop, and stops at the paused staging.
	pushImage(t, st.RegistryAddr, "gains/frontend", "1.2.3")
	v.waitCommit("alpha/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.3", seed)
	v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.3", seed)
	p.waitStage(a, develop, "verified at 1.2.3", func(x stageStatus) bool {
		return x.VerifiedFreight != nil && x.VerifiedFreight.Value == "1.2.3"
	})
	held := p.waitStage(b, staging, "holding 1.2.3 while paused", func(x stageStatus) bool {
		return x.Reason == "paused; 1.2.3 is waiting"
	})
	if held.CurrentTag != "1.2.1" {
		t.Errorf("%s while paused runs %s, want 1.2.1", staging, held.CurrentTag)
	}
	settled := time.Now()
	p.waitStage(a, staging, "checked twice more", func(x stageStatus) bool { return x.CheckedAt.After(settled.Add(2 * shardInterval)) })
	if out := strings.TrimSpace(p.git("log", "--format=%s", seed+"..HEAD", "--", "staging/frontend/instance.yaml")); out != "" {
		t.Fatalf("commits to the paused %s:\n%s", staging, out)
	}

	// Resumed, staging takes 1.2.3 by itself: approved before alpha joined.
	if code, body := p.do(http.MethodPost, b, "/api/v1/stages/"+staging+"/resume", nil, token); code != http.StatusOK {
		t.Fatalf("resume %s: %d %s", staging, code, body)
	}
	v.waitCommit("staging/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.3", seed)
	promoted := p.waitStage(a, staging, "at 1.2.3", func(x stageStatus) bool { return x.CurrentTag == "1.2.3" })
	p.waitStage(b, staging, "checked twice more", func(x stageStatus) bool { return x.CheckedAt.After(promoted.CheckedAt.Add(2 * shardInterval)) })
	if out := strings.TrimSpace(p.git("log", "--format=%s", seed+"..HEAD", "--", "staging/frontend/instance.yaml")); out != "Promote image from 1.2.1 to 1.2.3" {
		t.Errorf("commits to %s since the seed:\n%s\nwant one promotion to 1.2.3", staging, out)
	}
}

// status is stage's status as pr's API answers it (a stage moving between replicas is
// answered 503 for a moment: asked again then).
func status(t *testing.T, p *pipeline, pr *promoter, stage string) listedStage {
	t.Helper()
	var x listedStage
	p.poll(stage+" on "+pr.Name, syncTimeout, func() (bool, string) {
		code, body := p.get(pr, "/api/v1/stages/"+stage)
		x = listedStage{}
		return code == http.StatusOK && json.Unmarshal([]byte(body), &x) == nil, fmt.Sprintf("%d %s", code, body)
	})
	return x
}

// runner is the name of the replica of reps running stage, asked as the replicas ask each other.
func (s *shardRun) runner(stage, token string, reps ...*promoter) string {
	var name string
	s.poll("the replica running "+stage, syncTimeout, func() (bool, string) {
		for _, pr := range reps {
			code, body := s.do(http.MethodGet, pr, "/api/v1/shard/stages", nil, token)
			var list struct {
				Stages []listedStage `json:"stages"`
			}
			if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
				return false, fmt.Sprintf("%s: %d %s", pr.Name, code, body)
			}
			for _, x := range list.Stages {
				if x.Name == stage {
					name = pr.Name
					return true, ""
				}
			}
		}
		return false, "no replica runs it"
	})
	return name
}

// shardOf is the shard of a pipeline key among n.
func shardOf(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
