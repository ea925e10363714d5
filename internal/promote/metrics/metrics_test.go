package metrics_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kropipe/kropipe/internal/promote/metrics"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

func TestRegistryRequest_CountsByRegistryAndCode(t *testing.T) {
	m := metrics.New()
	// The way the controller wires it: the warehouse calls back on every response.
	if _, err := warehouse.New(warehouse.WithMetrics(m.RegistryRequest)); err != nil {
		t.Fatal(err)
	}
	m.RegistryRequest("ghcr.io", 200)
	m.RegistryRequest("ghcr.io", 200)
	m.RegistryRequest("ghcr.io", 429)
	m.RegistryRequest("127.0.0.1:5000", 0)

	want := `
# HELP kropipe_registry_requests_total HTTP requests to image registries by registry host and status code (0: no response).
# TYPE kropipe_registry_requests_total counter
kropipe_registry_requests_total{code="0",registry="127.0.0.1:5000"} 1
kropipe_registry_requests_total{code="200",registry="ghcr.io"} 2
kropipe_registry_requests_total{code="429",registry="ghcr.io"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "kropipe_registry_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestPass_CountsEachPromotionAndFailureOnce(t *testing.T) {
	m := metrics.New()
	start := []stage.Status{
		{Name: "develop-frontend"},
		{Name: "staging-frontend"},
		{Name: "develop-backend"},
	}
	// First pass: history gives every stage a LastCommit; develop-frontend promotes, the
	// backend's registry fails.
	first := []stage.Status{
		{Name: "develop-frontend", LastCommit: "c2", Decision: stage.DecisionPromote},
		{Name: "staging-frontend", LastCommit: "c1", Decision: stage.DecisionWait},
		{Name: "develop-backend", LastCommit: "c0", Decision: stage.DecisionFailed, Error: "registry down"},
	}
	m.Pass(start, first, 3*time.Second)
	// A quiet pass repeats the same statuses: nothing new.
	m.Pass(first, first, time.Second)
	// Then staging promotes after its soak, the backend fails differently.
	second := []stage.Status{
		{Name: "develop-frontend", LastCommit: "c2", Decision: stage.DecisionUpToDate},
		{Name: "staging-frontend", LastCommit: "c3", Decision: stage.DecisionPromote},
		{Name: "develop-backend", LastCommit: "c0", Decision: stage.DecisionFailed, Error: "no credentials"},
	}
	m.Pass(first, second, 500*time.Millisecond)

	want := `
# HELP kropipe_promotions_total Promotions and rollbacks written to Git, and failed attempts, by stage and result (promoted, rolled-back, failed).
# TYPE kropipe_promotions_total counter
kropipe_promotions_total{result="failed",stage="develop-backend"} 2
kropipe_promotions_total{result="promoted",stage="develop-frontend"} 1
kropipe_promotions_total{result="promoted",stage="staging-frontend"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "kropipe_promotions_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "kropipe_promotion_duration_seconds"); n != 2 {
		t.Errorf("duration histograms = %d, want 2 (one per promoted stage)", n)
	}
}

func TestOutcome_CountsAPIActions(t *testing.T) {
	tests := []struct {
		name   string
		out    stage.Outcome
		err    error
		result string
		want   float64
	}{
		{name: "promotion", out: stage.Outcome{Stage: "s", Kind: "promote", Commit: "c"}, result: metrics.ResultPromoted, want: 1},
		{name: "rollback", out: stage.Outcome{Stage: "s", Kind: "rollback", Commit: "c"}, result: metrics.ResultRolledBack, want: 1},
		{name: "already there", out: stage.Outcome{Stage: "s", Kind: "promote", Skipped: true}, result: metrics.ResultPromoted, want: 0},
		{name: "refused", out: stage.Outcome{Stage: "s"}, err: errors.New("tag not found"), result: metrics.ResultFailed, want: 1},
		{name: "landed but verification failed", out: stage.Outcome{Stage: "s", Kind: "promote", Commit: "c"}, err: errors.New("degraded"), result: metrics.ResultFailed, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			m.Outcome(tt.out, tt.err, time.Second)
			if got := value(t, m, "kropipe_promotions_total", "result", tt.result); got != tt.want {
				t.Errorf("promotions{result=%s} = %v, want %v", tt.result, got, tt.want)
			}
		})
	}
}

// gitwrite reports each re-applied push through gitwrite.WithPushRetries(m.PushRetry);
// gitwrite's TestApply_RebasesOnMovedBranch checks that it does.
func TestPushRetry_CountsByRepo(t *testing.T) {
	m := metrics.New()
	m.PushRetry("https://git.example.com/platform/gitops.git")
	m.PushRetry("https://git.example.com/platform/gitops.git")
	m.PushRetry("https://git.example.com/other.git")
	if got := value(t, m, "kropipe_git_push_retries_total", "repo", "https://git.example.com/platform/gitops.git"); got != 2 {
		t.Errorf("push retries = %v, want 2", got)
	}
}

func TestHandler_ServesPrometheusText(t *testing.T) {
	m := metrics.New()
	m.Promotion("develop-frontend", metrics.ResultPromoted, 2*time.Second)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`kropipe_promotions_total{result="promoted",stage="develop-frontend"} 1`,
		`kropipe_promotion_duration_seconds_bucket{stage="develop-frontend",le="2.5"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if lint, err := testutil.GatherAndLint(m.Registry()); err != nil || len(lint) > 0 {
		t.Errorf("promlint: %v %v", lint, err)
	}
}

// value is the counter named name whose label has val, 0 when there is none.
func value(t *testing.T, m *metrics.Metrics, name, label, val string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == label && l.GetValue() == val {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// BenchmarkRegistryRequest is the cost the warehouse pays per registry response.
func BenchmarkRegistryRequest(b *testing.B) {
	m := metrics.New()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RegistryRequest("ghcr.io", 200)
		}
	})
}

// BenchmarkPass is the bookkeeping after each engine pass.
func BenchmarkPass(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			m := metrics.New()
			before := make([]stage.Status, n)
			after := make([]stage.Status, n)
			for i := range n {
				name := "stage-" + strconv.Itoa(i)
				before[i] = stage.Status{Name: name, LastCommit: "a"}
				after[i] = stage.Status{Name: name, LastCommit: "b", Decision: stage.DecisionPromote}
			}
			for b.Loop() {
				m.Pass(before, after, time.Second)
			}
		})
	}
}

func TestSignatureCheck_CountsByResult(t *testing.T) {
	m := metrics.New()
	m.SignatureCheck(stage.SignatureVerified)
	m.SignatureCheck(stage.SignatureVerified)
	m.SignatureCheck(stage.SignatureError)
	want := `
# HELP kropipe_signature_checks_total Image digests checked against a stage's signature policies, by result (verified, unverified, error: the registry failed and the stage holds); answers from the verifiers' cache count too.
# TYPE kropipe_signature_checks_total counter
kropipe_signature_checks_total{result="error"} 1
kropipe_signature_checks_total{result="unverified"} 0
kropipe_signature_checks_total{result="verified"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "kropipe_signature_checks_total"); err != nil {
		t.Fatal(err)
	}
}
