package promoter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// A rolling update of --shards 4 → 2 on the real kube-apiserver, as a Deployment performs it:
// two `promoter controller --shards=4` replicas run 12 stages (one-stage pipelines over four
// images); one stage is paused. Two --shards=2 replicas come up while the old ones live: they
// are ready but do not act. New tags are pushed (half before the first old replica gets
// SIGTERM, half before the second) and the old replicas are stopped one by one, as the
// kubelet does. Every stage gets exactly one promotion commit (none twice, none lost), each
// made by one replica only, never by replicas of both counts; the topology Lease ends up
// recording 2, held by a new replica, which holds the shards; the old replicas logged their
// shutdown and exited cleanly; and the pause, set under 4 shards, holds under 2 until it is
// resumed, when a new replica promotes that stage once.
//
// It takes about a minute on a warm stack: seconds-long Leases and a 2s interval, so every
// hand-over (a stopping replica's shards to the other old one, then the count's topology
// Lease to the new count) happens within a few retry periods.
func TestShards_RollingChangeFourToTwo_EveryStagePromotedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := &pipeline{t: t, ctx: ctx, srv: st.Git}
	p.installPromoterRBAC()
	s := &shardRun{pipeline: p, repo: "rolling-gitops", appNS: "kropipe-rolling", destNS: "kropipe-rolling-dest", stages: 12, images: 4}
	t.Cleanup(s.cleanup)
	seed := s.seed()
	token := randomHex(16)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}

	old := []*promoter{s.startReplica("promoter-four-0", tokenFile, 4), s.startReplica("promoter-four-1", tokenFile, 4)}
	s.waitSpread(old, 4)
	s.waitAll(old[0], "up to date at 1.0.0", func(x listedStage) bool { return x.CurrentTag == "1.0.0" && x.Decision == "up-to-date" })
	paused := shardStage(0)
	if code, body := p.do(http.MethodPost, old[0], "/api/v1/stages/"+paused+"/pause", nil, token); code != http.StatusOK {
		t.Fatalf("pause %s: %d %s", paused, code, body)
	}

	// The new pods come up while the old ones live: ready, not acting.
	nu := []*promoter{s.startReplica("promoter-two-0", tokenFile, 2), s.startReplica("promoter-two-1", tokenFile, 2)}
	for _, pr := range nu {
		p.poll(pr.Name+" registered, saying it does not act", syncTimeout, func() (bool, string) {
			return len(logged(t, pr, "not acting: waiting for replicas with another shard count to stop")) > 0, pr.Tail(5)
		})
		p.waitHTTP(pr, "/readyz")
	}
	if l := s.topology(); l.Annotations["kropipe.io/shards"] != "4" {
		t.Fatalf("with the new replicas up, the topology Lease records --shards %q, want 4 (the old count acts)", l.Annotations["kropipe.io/shards"])
	}

	// Half the images, then the first old replica stops; the other half, then the second.
	for img := range s.images / 2 {
		pushImage(t, st.RegistryAddr, s.image(img), "1.1.0")
	}
	p.poll("a first promotion commit", syncTimeout, func() (bool, string) {
		if err := p.co.Pull(ctx); err != nil {
			return false, err.Error()
		}
		return p.head() != seed, "none yet"
	})
	s.stopReplica(old[0])
	for img := s.images / 2; img < s.images; img++ {
		pushImage(t, st.RegistryAddr, s.image(img), "1.1.0")
	}
	s.stopReplica(old[1])
	stopped := time.Now()

	// The new count records itself and holds the shards.
	p.poll("the topology Lease recording --shards 2, held by a new replica, and both shards held by new replicas", syncTimeout, func() (bool, string) {
		l := s.topology()
		if c, h := l.Annotations["kropipe.io/shards"], ptr.Deref(l.Spec.HolderIdentity, ""); c != "2" || !heldBy(h, nu) {
			return false, fmt.Sprintf("topology: --shards %s held by %q", c, h)
		}
		for name, l := range s.shardLeases() {
			h := ptr.Deref(l.Spec.HolderIdentity, "")
			switch c := l.Annotations["kropipe.io/shards"]; {
			case c == "2" && !heldBy(h, nu):
				return false, name + " held by " + h
			case c != "2" && h != "":
				return false, fmt.Sprintf("%s (--shards %s) still held by %s", name, c, h)
			}
		}
		return true, ""
	})
	t.Logf("the new count acts %s after the last old replica stopped", time.Since(stopped).Round(10*time.Millisecond))

	// Every stage at 1.1.0 but the paused one, which kept its pause across the change.
	s.waitAll(nu[0], "at 1.1.0, "+paused+" paused at 1.0.0", func(x listedStage) bool {
		if x.Name == paused {
			return x.Paused && x.CurrentTag == "1.0.0"
		}
		return x.CurrentTag == "1.1.0"
	})
	// As the answer says while a shard moves between the new replicas: "try again in a few
	// seconds".
	p.poll("resuming "+paused, syncTimeout, func() (bool, string) {
		code, body := p.do(http.MethodPost, nu[1], "/api/v1/stages/"+paused+"/resume", nil, token)
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Fatalf("resume %s: %d %s", paused, code, body)
		}
		return code == http.StatusOK, body
	})
	s.waitAll(nu[0], "at 1.1.0", func(x listedStage) bool { return x.CurrentTag == "1.1.0" && !x.Paused })
	s.wantOneCommitEach(seed)
	settled := time.Now()
	s.waitAll(nu[1], "checked twice more", func(x listedStage) bool { return x.CheckedAt.After(settled.Add(2 * shardInterval)) })
	s.wantOneCommitEach(seed)

	// Who promoted what, from the replicas' own logs (the engine's record of a promotion
	// names its set): one replica per stage, so never both counts.
	by := map[string][]string{}
	for _, pr := range append(old, nu...) {
		for _, rec := range logged(t, pr, "promoted") {
			if _, ok := rec["set"]; ok {
				by[rec["stage"]] = append(by[rec["stage"]], pr.Name)
			}
		}
	}
	perReplica := map[string]int{}
	for i := range s.stages {
		name := shardStage(i)
		if len(by[name]) != 1 {
			t.Errorf("%s promoted by %v; want exactly one replica", name, by[name])
			continue
		}
		perReplica[by[name][0]]++
	}
	if len(by[paused]) == 1 && !heldBy(by[paused][0]+"_", nu) {
		t.Errorf("%s, resumed after the change, promoted by %s; want a --shards=2 replica", paused, by[paused][0])
	}
	t.Logf("promotions per replica: %v", perReplica)
}

// stopReplica stops pr as the kubelet does (SIGTERM, SIGKILL after the grace) and checks that
// it shut down by itself, releasing what it held, and said so.
func (s *shardRun) stopReplica(pr *promoter) {
	t := s.t
	start := time.Now()
	pr.Stop()
	if _, err := pr.Exited(); err != nil {
		t.Errorf("%s on SIGTERM: %v; want a clean exit\n%s", pr.Name, err, pr.Tail(20))
	}
	for _, msg := range []string{"stop signal received; letting the running pass finish", "shutting down"} {
		if len(logged(t, pr, msg)) == 0 {
			t.Errorf("%s did not log %q on SIGTERM:\n%s", pr.Name, msg, pr.Tail(20))
		}
	}
	t.Logf("%s stopped in %s", pr.Name, time.Since(start).Round(10*time.Millisecond))
}

// topology is the Lease recording which --shards acts.
func (s *shardRun) topology() *coordinationv1.Lease {
	l, err := st.Kube.CoordinationV1().Leases(stack.ArgoCDNamespace).Get(s.ctx, "kropipe-promoter-topology", metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return l
}

// heldBy says whether a Lease holder identity (POD_NAME_random) is one of reps.
func heldBy(holder string, reps []*promoter) bool {
	for _, pr := range reps {
		if strings.HasPrefix(holder, pr.Name+"_") {
			return true
		}
	}
	return false
}

// logged returns the string fields of pr's JSON log records whose message starts with msg.
func logged(t testing.TB, pr *promoter, msg string) []map[string]string {
	t.Helper()
	f, err := os.Open(pr.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if m, _ := rec["msg"].(string); !strings.HasPrefix(m, msg) {
			continue
		}
		fields := map[string]string{}
		for k, v := range rec {
			if s, ok := v.(string); ok {
				fields[k] = s
			}
		}
		out = append(out, fields)
	}
	return out
}
