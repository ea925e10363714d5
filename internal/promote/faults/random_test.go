package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestRandomKills_NothingLostNothingDoubled SIGKILLs a running promoter at random
// moments while new versions keep arriving, over stages chained develop → staging →
// prod, then lets it finish. Git must hold each promotion once, in chain order, and
// every head it ever had.
func TestRandomKills_NothingLostNothingDoubled(t *testing.T) {
	kills := envInt("FAULTS_KILLS", 50)
	services := envInt("FAULTS_SERVICES", 7)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (FAULTS_SEED to repeat)", seed)
	if v, err := strconv.ParseUint(os.Getenv("FAULTS_SEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	w := newWorld(t, chains(services, "develop", "staging", "prod"), "")
	latest := map[string]int{} // service → minor version pushed last
	for _, svc := range w.services() {
		latest[svc] = 0
	}
	start := time.Now()
	heads := []string{w.head()}
	killedMidPass := 0
	for i := range kills {
		if i%3 == 0 {
			svc := w.services()[rng.IntN(services)]
			latest[svc]++
			w.push(svc, fmt.Sprintf("1.%d.0", latest[svc]))
		}
		p := w.start(nil, "run", "--interval", "50ms", "--addr", "127.0.0.1:0", "--log-level", "debug")
		select {
		case <-time.After(time.Duration(rng.IntN(1000)) * time.Millisecond):
		case <-p.done:
			t.Fatalf("promoter exited by itself: %v\n%s", p.err, p.stderr)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		if strings.Contains(p.stderr.String(), "msg=\"pass done\"") {
			killedMidPass++
		}
		heads = append(heads, w.head())
	}
	killPhase := time.Since(start)
	want := map[string]string{}
	for _, s := range w.stages {
		want[s.name] = fmt.Sprintf("1.%d.0", latest[s.service])
		if latest[s.service] == 0 {
			want[s.name] = "1.0.0"
		}
	}
	w.converge(want, 6)
	n := w.checkHistory(heads)
	w.checkStateReadable()
	reqs, _ := w.proxy.counts()
	t.Logf("%d kills (%d after at least one pass) over %d stages in %s; %d promotions in Git; registry requests %v; total %s",
		kills, killedMidPass, len(w.stages), killPhase.Round(time.Millisecond), n, reqs, time.Since(start).Round(time.Millisecond))
}
