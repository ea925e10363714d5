package stage

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/signature"
)

// signedStages is a fixture with n stages develop-svcNNN, each in its own folder of one
// repository and reading its own image team/svcNNN at 1.2.2, signed with a key; with
// policy set every stage requires that key's signature. A first pass has promoted them all.
func signedStages(t testing.TB, n int, policy bool) (*fixture, *Engine, *signing) {
	t.Helper()
	seed := t.TempDir()
	for i := 0; i < n; i++ {
		dir := filepath.Join(seed, "develop", fmt.Sprintf("svc%03d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "spec:\n  values:\n    deployment:\n      # bumped by the promoter\n      tag: \"1.2.1\"\n"
		if err := os.WriteFile(filepath.Join(dir, "instance.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t)
	if _, err := f.git.NewBareRepo(context.Background(), "signed.git", seed); err != nil {
		t.Fatal(err)
	}
	f.url = f.git.URL("signed.git")
	s := newSigning(t)
	specs := make([]Spec, n)
	for i := range specs {
		svc := fmt.Sprintf("svc%03d", i)
		f.reg.push(t, "team/"+svc, "1.2.2")
		s.signKey(t, f.reg, "team/"+svc, "1.2.2")
		specs[i] = f.spec("develop-"+svc, "develop/"+svc, svc)
		if policy {
			specs[i].Signatures = []signature.Policy{s.keyed()}
		}
	}
	e := f.engine(specs)
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.StatusOf("develop-svc000"); st.CurrentTag != "1.2.2" {
		t.Fatalf("develop-svc000 at %q after the first pass (%s)", st.CurrentTag, st.Reason)
	}
	return f, e, s
}

// An idle pass over stages requiring a signature asks the registry exactly what it asks
// without the requirement (one tag list per repository): the verified digests are answered
// from the verifier's cache.
func TestReconcile_IdlePassWithASignaturePolicyCostsNoMoreRequests(t *testing.T) {
	requests := map[bool]map[string]int{}
	for _, policy := range []bool{false, true} {
		f, e, _ := signedStages(t, 20, policy)
		f.reg.requests()
		for pass := 0; pass < 2; pass++ {
			if err := e.Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		requests[policy] = f.reg.requests()
	}
	if want := map[string]int{"tags/list": 40}; !maps.Equal(requests[false], want) || !maps.Equal(requests[true], want) {
		t.Fatalf("two idle passes over 20 stages: requests %v with a policy, %v without; want %v each", requests[true], requests[false], want)
	}
}

// BenchmarkIdlePassSignatures measures an idle pass over n stages (100; KROPIPE_BENCH_LARGE=1:
// 1,000) each requiring a cosign key signature of its image, against the same stages without
// the requirement, reporting the registry requests a pass makes.
func BenchmarkIdlePassSignatures(b *testing.B) {
	n := 100
	if os.Getenv("KROPIPE_BENCH_LARGE") != "" {
		n = 1000
	}
	for _, policy := range []bool{false, true} {
		name := "policy=none"
		if policy {
			name = "policy=cosign-key"
		}
		b.Run(fmt.Sprintf("%s/stages=%d", name, n), func(b *testing.B) {
			f, e, _ := signedStages(b, n, policy)
			f.reg.requests()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := e.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			total := 0
			for _, c := range f.reg.requests() {
				total += c
			}
			b.ReportMetric(float64(total)/float64(b.N), "requests/pass")
		})
	}
}

// BenchmarkFirstVerification measures the first check of a new tag's digest (nothing
// cached): a cosign key signature in the .sig tag format, and a keyless one (certificate,
// Rekor entry and signed timestamp verified against the trusted root), on the loopback
// registry through the warehouse's transport; it reports the registry requests each costs.
func BenchmarkFirstVerification(b *testing.B) {
	for _, kind := range []string{"key", "keyless"} {
		b.Run(kind, func(b *testing.B) {
			f, e, s := signedStages(b, 1, false)
			policy := s.keyed()
			if kind == "keyless" {
				policy = s.keyless()
			}
			ctx := context.Background()
			f.reg.requests()
			requests := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tag := fmt.Sprintf("1.3.%d", i)
				f.reg.push(b, "team/svc000", tag)
				if kind == "keyless" {
					s.signKeyless(b, f.reg, "team/svc000", tag, releaseIdentity)
				} else {
					s.signKey(b, f.reg, "team/svc000", tag)
				}
				fr, err := e.wh.Resolve(ctx, f.reg.image("team/svc000"), tag)
				if err != nil {
					b.Fatal(err)
				}
				f.reg.requests()
				b.StartTimer()
				_, why, err := e.checkSigned(ctx, []signature.Policy{policy}, fr)
				b.StopTimer()
				if err != nil || why != "" {
					b.Fatalf("%s: %v %s", tag, err, why)
				}
				for _, c := range f.reg.requests() {
					requests += c
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
		})
	}
}
