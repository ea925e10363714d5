package promoter_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
)

// An automatic rollback Git refuses is owed, not forgotten. 1.2.2 is promoted into develop and
// fails its verification Job (kropipe.io/auto-rollback); the Git server declines every push
// from the moment the promotion landed (a pre-receive hook, as a frozen branch on a Git host),
// so the rollback's attempts fail: the stage still runs 1.2.2 and `promoter status` and the API
// show the rollback owed with Git's refusal, retried every --owed-backoff (1s, doubling). Once
// the server accepts pushes again the rollback lands — `Roll back image from 1.2.2 to 1.2.1`
// exactly once in Git, synced by Argo CD — and the owed entry is gone.
func TestController_AutoRollbackRefusedByGitLandsOnceLater(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, apps: []string{owedStage}, promoterArgs: []string{"--owed-backoff=1s"}}
	p.installPromoterRBAC()
	// Registered before the replica starts, so it runs after it stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	v := &verifyPipeline{p}
	seed := v.seedRepo(owedRepo, "owed", map[string]string{"develop/frontend/verify/smoke.yaml": smokeJob("1.2.2", smokeFailure, false)})
	v.createAppIn(owedRepo, owedStage, "develop/frontend", "owed/frontend", map[string]string{
		"kropipe.io/verify-job":     "verify",
		"kropipe.io/verify-timeout": "5m",
		"kropipe.io/auto-rollback":  "true",
	})
	if err := st.EnsureNamespace(ctx, owedStage); err != nil {
		t.Fatal(err)
	}
	v.bindVerifyRole(owedStage)
	v.syncByHand(owedStage, seed)
	v.waitApp(owedStage, "Synced and Healthy at the seed", syncedHealthyAt(seed))

	a := v.startPromoter("promoter-owed")
	v.waitLeader("promoter-owed")
	pushImage(t, st.RegistryAddr, "owed/frontend", "1.2.2")
	promoted := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	// Before Argo CD has synced it, so before its verification can fail: every rollback attempt
	// meets the refusal.
	if err := v.srv.RefusePushes(owedRepo, owedRefusal); err != nil {
		t.Fatal(err)
	}
	refused := time.Now()
	owing := v.waitStage(a, owedStage, "owing the rollback of 1.2.2, refused by Git twice", func(s stageStatus) bool {
		return len(s.Owed) == 1 && s.Owed[0].Kind == "rollback" && s.Owed[0].From == "1.2.2" && s.Owed[0].Attempts >= 2 &&
			strings.Contains(s.Owed[0].LastError, owedRefusal)
	})
	if owing.CurrentTag != "1.2.2" || !strings.Contains(owing.Owed[0].Reason, smokeFailure) {
		t.Errorf("while owing: current tag %q, owed because %q; want 1.2.2, owed because of the smoke test's %q", owing.CurrentTag, owing.Owed[0].Reason, smokeFailure)
	}
	table, err := exec.CommandContext(ctx, st.Binaries.Promoter, "status", "--addr", a.addr).CombinedOutput()
	if err != nil || !strings.Contains(string(table), "rollback from 1.2.2 owed") || !strings.Contains(string(table), owedRefusal) {
		t.Errorf("promoter status --addr %s: %v\n%s\nwant the rollback from 1.2.2 owed, with Git's %q", a.addr, err, table, owedRefusal)
	}
	t.Logf("promoter status while Git refuses pushes:\n%s", table)
	if head := v.head(); head != promoted {
		t.Fatalf("a commit landed while the server refused pushes:\n%s", v.log(promoted))
	}

	if err := v.srv.AcceptPushes(owedRepo); err != nil {
		t.Fatal(err)
	}
	accepted := time.Now()
	rolledBack := v.waitCommit("develop/frontend/instance.yaml", "Roll back image from 1.2.2 to 1.2.1", promoted)
	landed := time.Now()
	done := v.waitStage(a, owedStage, "back at 1.2.1, owing nothing", func(s stageStatus) bool {
		return s.CurrentTag == "1.2.1" && len(s.Owed) == 0
	})
	v.waitApp(owedStage, "Synced and Healthy at the rollback, synced by kropipe", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(rolledBack)(app) && syncedBy(app, "kropipe", rolledBack)
	})
	t.Logf("refused for %s (%d attempts seen); the rollback landed %s after pushes were accepted",
		accepted.Sub(refused).Round(100*time.Millisecond), owing.Owed[0].Attempts, landed.Sub(accepted).Round(100*time.Millisecond))

	// Two more passes (owed attempts included, were any left): still exactly one rollback.
	v.waitStage(a, owedStage, "two more passes", func(s stageStatus) bool { return s.CheckedAt.After(done.CheckedAt.Add(2 * crashInterval)) })
	want := "Roll back image from 1.2.2 to 1.2.1\nPromote image from 1.2.1 to 1.2.2"
	head := v.head()
	if got := strings.TrimSpace(v.git("log", "--format=%s", seed+"..HEAD")); head != rolledBack || got != want {
		t.Errorf("commits since the seed:\n%s\nwant the promotion and one rollback:\n%s", got, want)
	}
	v.wantEvent(owedStage, "RolledBack", "Roll back image from 1.2.2 to 1.2.1")
}

// The test's names: a repository, Application, image and namespace of its own.
const (
	owedRepo  = "owed-gitops"
	owedStage = "owed-develop"
	// owedRefusal is what the Git server answers every push while it refuses them.
	owedRefusal = "e2e: main is frozen, no pushes accepted"
)
