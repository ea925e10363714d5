package signature

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// BenchmarkCosign_Verify measures a first verification of a new digest (the registry read and
// sigstore-go's checks) and a cached one, with the registry requests each makes.
func BenchmarkCosign_Verify(b *testing.B) {
	e := newEnv(b, true)
	kinds := []struct {
		name   string
		sign   func(testing.TB, name.Digest)
		policy Policy
	}{{
		name: "keyless-bundle",
		sign: func(tb testing.TB, ref name.Digest) {
			attach(tb, ref, bundleV03, e.auth.KeylessBundle(tb, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy: e.keyless(nil),
	}, {
		name:   "key-legacy",
		sign:   func(tb testing.TB, ref name.Digest) { e.ecdsa.SignLegacy(tb, ref, ref.DigestStr()) },
		policy: keyPolicy(e.ecdsa),
	}}
	for _, k := range kinds {
		b.Run(k.name+"/first", func(b *testing.B) {
			refs := make([]name.Digest, b.N)
			for i := range refs {
				refs[i] = e.reg.pushImage(b, "bench", fmt.Sprintf("%s-%d", k.name, i))
				k.sign(b, refs[i])
			}
			c, _ := NewCosign()
			before := e.reg.requests.Load()
			b.ResetTimer()
			for i := range refs {
				if _, err := c.Verify(context.Background(), refs[i], k.policy, e.reg.opts()...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(e.reg.requests.Load()-before)/float64(b.N), "requests/op")
		})
		b.Run(k.name+"/cached", func(b *testing.B) {
			ref := e.reg.pushImage(b, "bench", k.name+"-cached")
			k.sign(b, ref)
			c, _ := NewCosign()
			if _, err := c.Verify(context.Background(), ref, k.policy, e.reg.opts()...); err != nil {
				b.Fatal(err)
			}
			before := e.reg.requests.Load()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Verify(context.Background(), ref, k.policy, e.reg.opts()...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(e.reg.requests.Load()-before)/float64(b.N), "requests/op")
		})
	}
}
