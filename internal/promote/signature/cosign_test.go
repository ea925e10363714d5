package signature

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	clocktesting "k8s.io/utils/clock/testing"
)

// env is one registry, one virtual Sigstore and a few keys shared by a test's cases.
type env struct {
	reg      *testRegistry
	auth     signaturetest.Authority
	ecdsa    signaturetest.Key
	ed25519  signaturetest.Key
	otherKey signaturetest.Key
}

func newEnv(t testing.TB, referrers bool) *env {
	return &env{
		reg:      startRegistry(t, referrers),
		auth:     signaturetest.NewAuthority(t),
		ecdsa:    newKey(t, "ecdsa"),
		ed25519:  newKey(t, "ed25519"),
		otherKey: newKey(t, "ecdsa"),
	}
}

func (e *env) keyless(mod func(*CosignPolicy)) Policy {
	cp := &CosignPolicy{Identity: testIdentity, Issuer: testIssuer, TrustedRoot: e.auth.TrustedRoot, TrustedRootRef: "virtual-root.json"}
	if mod != nil {
		mod(cp)
	}
	return Policy{Name: "release", Cosign: cp}
}

func keyPolicy(k signaturetest.Key) Policy {
	return Policy{Name: "release", Cosign: &CosignPolicy{PublicKey: k.PEM, KeyRef: "cosign.pub"}}
}

func keyIDOf(t testing.TB, k signaturetest.Key) string {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(k.PEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := keyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return "key " + id
}

func TestCosign_VerifiesOnlyWhatThePolicyTrusts(t *testing.T) {
	e := newEnv(t, true)
	otherImage := e.reg.pushImage(t, "app", "other")
	cases := []struct {
		name   string
		sign   func(t *testing.T, ref name.Digest)
		policy Policy
		// wantSignedBy is the trailer on success; wantErr a part of the ErrUnverified message.
		wantSignedBy string
		wantErr      string
	}{{
		name: "keyless bundle referrer by the right identity",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy:       e.keyless(nil),
		wantSignedBy: testIdentity + " (issuer " + testIssuer + ")",
	}, {
		name: "keyless identity and issuer as regular expressions",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy: e.keyless(func(cp *CosignPolicy) {
			cp.Identity, cp.IdentityRegexp = "", `^https://github\.com/org/repo/\.github/workflows/release\.yml@refs/tags/.*$`
			cp.Issuer, cp.IssuerRegexp = "", `^https://token\.actions\.githubusercontent\.com$`
		}),
		wantSignedBy: testIdentity + " (issuer " + testIssuer + ")",
	}, {
		name:    "unsigned",
		sign:    func(*testing.T, name.Digest) {},
		policy:  e.keyless(nil),
		wantErr: "no signature by " + testIdentity + " (issuer " + testIssuer + ") (the image has no cosign signature)",
	}, {
		name: "keyless signature by another identity",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, "https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/main", testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy:  e.keyless(nil),
		wantErr: "no signature by " + testIdentity + " (issuer " + testIssuer + "): signed by another identity: https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/main (issuer " + testIssuer + ")",
	}, {
		name: "keyless signature by the identity from another issuer",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, "https://accounts.example.com", cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy:  e.keyless(nil),
		wantErr: "signed by another identity: " + testIdentity + " (issuer https://accounts.example.com)",
	}, {
		name: "keyless signature over another digest (a tag pushed again)",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, otherImage.DigestStr()), bundleOpts{}))
		},
		policy:  e.keyless(nil),
		wantErr: "is over another image (digest " + otherImage.DigestStr() + ")",
	}, {
		name: "certificate outside its validity when logged, no signed timestamp",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()),
				bundleOpts{NoTimestamps: true, LoggedAt: time.Now().Add(time.Hour)}))
		},
		policy:  e.keyless(nil),
		wantErr: "certificate expired and no signed timestamp",
	}, {
		// As cosign --insecure-ignore-tlog: with nothing to date the signature, the certificate
		// must be valid now (a virtual Fulcio certificate is, for ten minutes).
		name: "no log and no signed timestamp when the log is not required: checked at the current time",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()),
				bundleOpts{NoTimestamps: true, NoTlog: true}))
		},
		policy:       e.keyless(func(cp *CosignPolicy) { cp.IgnoreTlog = true }),
		wantSignedBy: testIdentity + " (issuer " + testIssuer + ")",
	}, {
		name: "bundle without a transparency log entry",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{NoTlog: true}))
		},
		policy:  e.keyless(nil),
		wantErr: "no transparency log entry",
	}, {
		name: "bundle without a log entry, policy ignores the log: its signed timestamp dates it",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{NoTlog: true}))
		},
		policy:       e.keyless(func(cp *CosignPolicy) { cp.IgnoreTlog = true }),
		wantSignedBy: testIdentity + " (issuer " + testIssuer + ")",
	}, {
		name: "keyless signature from another Sigstore",
		sign: func(t *testing.T, ref name.Digest) {
			other := signaturetest.NewAuthority(t)
			attach(t, ref, bundleV03, other.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy:  e.keyless(func(cp *CosignPolicy) { cp.IgnoreTlog, cp.IgnoreTimestamps = true, true }),
		wantErr: "certificate not issued by virtual-root.json",
	}, {
		name: "keyless signature from another Sigstore, logged in its own Rekor",
		sign: func(t *testing.T, ref name.Digest) {
			other := signaturetest.NewAuthority(t)
			attach(t, ref, bundleV03, other.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy:  e.keyless(nil),
		wantErr: "transparency log entry is not from a log virtual-root.json trusts",
	}, {
		name:         "keyless signature in the legacy .sig tag",
		sign:         func(t *testing.T, ref name.Digest) { e.auth.SignKeylessLegacy(t, ref, testIdentity, testIssuer) },
		policy:       e.keyless(nil),
		wantSignedBy: testIdentity + " (issuer " + testIssuer + ")",
	}, {
		name:         "ECDSA key signature in the legacy .sig tag",
		sign:         func(t *testing.T, ref name.Digest) { e.ecdsa.SignLegacy(t, ref, ref.DigestStr()) },
		policy:       keyPolicy(e.ecdsa),
		wantSignedBy: keyIDOf(t, e.ecdsa),
	}, {
		name:         "Ed25519 key signature in the legacy .sig tag",
		sign:         func(t *testing.T, ref name.Digest) { e.ed25519.SignLegacy(t, ref, ref.DigestStr()) },
		policy:       keyPolicy(e.ed25519),
		wantSignedBy: keyIDOf(t, e.ed25519),
	}, {
		name: "ECDSA key bundle referrer",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.ecdsa.Bundle(t, cosignSig(ref, ref.DigestStr())))
		},
		policy:       keyPolicy(e.ecdsa),
		wantSignedBy: keyIDOf(t, e.ecdsa),
	}, {
		name: "Ed25519 key bundle referrer",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.ed25519.Bundle(t, cosignSig(ref, ref.DigestStr())))
		},
		policy:       keyPolicy(e.ed25519),
		wantSignedBy: keyIDOf(t, e.ed25519),
	}, {
		name:    "signed by another key",
		sign:    func(t *testing.T, ref name.Digest) { e.otherKey.SignLegacy(t, ref, ref.DigestStr()) },
		policy:  keyPolicy(e.ecdsa),
		wantErr: "no signature by " + keyIDOf(t, e.ecdsa) + ": signed by another key",
	}, {
		name: "key bundle by another key",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.otherKey.Bundle(t, cosignSig(ref, ref.DigestStr())))
		},
		policy:  keyPolicy(e.ecdsa),
		wantErr: "signed by another key",
	}, {
		name:    "legacy signature whose payload names another digest (a tag pushed again)",
		sign:    func(t *testing.T, ref name.Digest) { e.ecdsa.SignLegacy(t, ref, otherImage.DigestStr()) },
		policy:  keyPolicy(e.ecdsa),
		wantErr: "is over another image (digest " + otherImage.DigestStr() + ")",
	}, {
		name: "legacy payload edited to name this digest: its signature no longer verifies",
		sign: func(t *testing.T, ref name.Digest) {
			sig, _ := e.ecdsa.Signer.SignMessage(strings.NewReader(string(signaturetest.SimpleSigningPayload(ref, otherImage.DigestStr()))))
			legacyPush(t, ref, ".sig", []mutate.Addendum{{
				Layer:       static.NewLayer(signaturetest.SimpleSigningPayload(ref, ref.DigestStr()), "application/vnd.dev.cosign.simplesigning.v1+json"),
				Annotations: map[string]string{annSignature: base64.StdEncoding.EncodeToString(sig)},
			}})
		},
		policy:  keyPolicy(e.ecdsa),
		wantErr: "signed by another key",
	}, {
		name:    "key policy, keyless signature",
		sign:    func(t *testing.T, ref name.Digest) { e.auth.SignKeylessLegacy(t, ref, testIdentity, testIssuer) },
		policy:  keyPolicy(e.ecdsa),
		wantErr: "signed keyless by " + testIdentity,
	}, {
		name: "key policy requiring the log, signature made offline",
		sign: func(t *testing.T, ref name.Digest) { e.ecdsa.SignLegacy(t, ref, ref.DigestStr()) },
		policy: func() Policy {
			p := keyPolicy(e.ecdsa)
			p.Cosign.RequireTlog = true
			return p
		}(),
		wantErr: "no transparency log entry",
	}}
	c, err := NewCosign()
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := e.reg.pushImage(t, "app", "v"+string(rune('a'+i)))
			tc.sign(t, ref)
			res, err := c.Verify(context.Background(), ref, tc.policy, e.reg.opts()...)
			if tc.wantErr != "" {
				t.Logf("Verify: %v", err)
				if !errors.Is(err, ErrUnverified) {
					t.Fatalf("Verify = %+v, %v; want ErrUnverified %q", res, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not say %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.SignedBy != tc.wantSignedBy {
				t.Fatalf("SignedBy = %q, want %q", res.SignedBy, tc.wantSignedBy)
			}
		})
	}
}

func TestCosign_RegistryWithoutReferrersUsesTheTagSchema(t *testing.T) {
	e := newEnv(t, false)
	ref := e.reg.pushImage(t, "app", "v1")
	attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
	c, _ := NewCosign()
	res, err := c.Verify(context.Background(), ref, e.keyless(nil), e.reg.opts()...)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if want := testIdentity + " (issuer " + testIssuer + ")"; res.SignedBy != want {
		t.Fatalf("SignedBy = %q, want %q", res.SignedBy, want)
	}
}

func TestCosign_RegistryFailureIsNotUnverifiedAndNotCached(t *testing.T) {
	e := newEnv(t, true)
	ref := e.reg.pushImage(t, "app", "v1")
	e.ecdsa.SignLegacy(t, ref, ref.DigestStr())
	c, _ := NewCosign()
	e.reg.failSigs.Store(true)
	_, err := c.Verify(context.Background(), ref, keyPolicy(e.ecdsa), e.reg.opts()...)
	if err == nil || errors.Is(err, ErrUnverified) {
		t.Fatalf("Verify with a failing registry = %v; want an error that is not ErrUnverified", err)
	}
	e.reg.failSigs.Store(false)
	if _, err := c.Verify(context.Background(), ref, keyPolicy(e.ecdsa), e.reg.opts()...); err != nil {
		t.Fatalf("Verify once the registry answers: %v", err)
	}
}

func TestCosign_PolicyThatDoesNotParseIsNamed(t *testing.T) {
	e := newEnv(t, true)
	ref := e.reg.pushImage(t, "app", "v1")
	c, _ := NewCosign()
	cases := []struct {
		name   string
		policy Policy
		want   string
	}{
		{"public key not PEM", Policy{Name: "prod", Cosign: &CosignPolicy{PublicKey: []byte("nope"), KeyRef: "secret/cosign-pub"}}, `signature policy "prod": public key secret/cosign-pub`},
		{"trusted root not JSON", Policy{Name: "prod", Cosign: &CosignPolicy{Identity: "x", Issuer: "y", TrustedRoot: []byte("{"), TrustedRootRef: "root.json"}}, `signature policy "prod": trusted root root.json`},
		{"identity without issuer", Policy{Name: "prod", Cosign: &CosignPolicy{Identity: "x"}}, "needs both a certificate identity"},
		{"bad identity regexp", Policy{Name: "prod", Cosign: &CosignPolicy{IdentityRegexp: "(", Issuer: "y"}}, `signature policy "prod"`},
		{"bad builder regexp", Policy{Name: "prod", Cosign: &CosignPolicy{Identity: "x", Issuer: "y"}, Provenance: &ProvenancePolicy{BuilderID: "(", BuilderIDRegexp: true}}, "provenance builderID"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Verify(context.Background(), ref, tc.policy, e.reg.opts()...)
			if err == nil || errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v; want a policy error saying %q", err, tc.want)
			}
		})
	}
}

func TestCosign_PublicGoodRootIsEmbedded(t *testing.T) {
	e := newEnv(t, true)
	ref := e.reg.pushImage(t, "app", "v1")
	// Signed by the virtual Sigstore: the public-good root does not trust it.
	attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
	c, _ := NewCosign()
	_, err := c.Verify(context.Background(), ref, Policy{Cosign: &CosignPolicy{Identity: testIdentity, Issuer: testIssuer}}, e.reg.opts()...)
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("Verify = %v; want ErrUnverified", err)
	}
	tr, err := publicGood()
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 || len(tr.RekorLogs()) == 0 {
		t.Fatal("embedded public-good root has no Fulcio or Rekor")
	}
}

func TestCosign_CachedAnswersAskTheRegistryNothing(t *testing.T) {
	e := newEnv(t, true)
	signed := e.reg.pushImage(t, "app", "v1")
	attach(t, signed, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(signed, signed.DigestStr()), bundleOpts{}))
	unsigned := e.reg.pushImage(t, "app", "v2")
	clk := clocktesting.NewFakeClock(time.Now())
	c, err := NewCosign(WithCosignClock(clk), WithCosignUnverifiedTTL(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	p := e.keyless(nil)
	verifyCounting := func(ref name.Digest) (int64, error) {
		before := e.reg.requests.Load()
		_, err := c.Verify(context.Background(), ref, p, e.reg.opts()...)
		return e.reg.requests.Load() - before, err
	}
	for _, ref := range []name.Digest{signed, unsigned} {
		if n, _ := verifyCounting(ref); n == 0 {
			t.Fatalf("first Verify of %s made no registry request", ref)
		}
		if n, _ := verifyCounting(ref); n != 0 {
			t.Fatalf("second Verify of %s made %d registry requests, want 0", ref, n)
		}
	}
	// Stages sharing an image ask at once: the registry is read once.
	concurrent := e.reg.pushImage(t, "app", "v3")
	attach(t, concurrent, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(concurrent, concurrent.DigestStr()), bundleOpts{}))
	before := e.reg.requests.Load()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.Verify(context.Background(), concurrent, p, e.reg.opts()...); err != nil {
				t.Errorf("concurrent Verify: %v", err)
			}
		})
	}
	wg.Wait()
	if n := e.reg.requests.Load() - before; n != 4 {
		t.Fatalf("20 concurrent Verify calls made %d registry requests, want the 4 of one", n)
	}
	// A signature pushed after its image is found once the unverified answer expires.
	attach(t, unsigned, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(unsigned, unsigned.DigestStr()), bundleOpts{}))
	if _, err := verifyCounting(unsigned); !errors.Is(err, ErrUnverified) {
		t.Fatalf("Verify within the TTL = %v, want the cached ErrUnverified", err)
	}
	clk.Step(5 * time.Minute)
	if n, err := verifyCounting(unsigned); err != nil || n == 0 {
		t.Fatalf("Verify after the TTL = %v with %d requests; want verified after asking the registry", err, n)
	}
	if n, _ := verifyCounting(signed); n != 0 {
		t.Fatalf("a verified answer was asked again (%d requests)", n)
	}
	// Another policy is another answer.
	other := e.keyless(func(cp *CosignPolicy) {
		cp.Identity = "https://github.com/org/repo/.github/workflows/other.yml@refs/tags/v1"
	})
	before = e.reg.requests.Load()
	if _, err := c.Verify(context.Background(), signed, other, e.reg.opts()...); !errors.Is(err, ErrUnverified) {
		t.Fatalf("Verify under another identity = %v, want ErrUnverified", err)
	}
	if e.reg.requests.Load() == before {
		t.Fatal("another policy reused the first policy's answer")
	}
}

const (
	testBuilder = "https://github.com/actions/runner/github-hosted"
	testSource  = "https://github.com/org/repo"
)

func slsaV1(builder, source string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{
			"buildType":            "https://actions.github.io/buildtypes/workflow/v1",
			"externalParameters":   map[string]any{"workflow": map[string]any{"ref": "refs/tags/v1", "repository": source, "path": ".github/workflows/release.yml"}},
			"resolvedDependencies": []any{map[string]any{"uri": "git+" + source + "@refs/tags/v1", "digest": map[string]string{"gitCommit": "0123456789abcdef0123456789abcdef01234567"}}},
		},
		"runDetails": map[string]any{"builder": map[string]any{"id": builder}, "metadata": map[string]any{"invocationId": "https://github.com/org/repo/actions/runs/1/attempts/1"}},
	}
}

func slsaV02(builder, source string) map[string]any {
	return map[string]any{
		"builder":    map[string]any{"id": builder},
		"buildType":  "https://github.com/slsa-framework/slsa-github-generator/container@v1",
		"invocation": map[string]any{"configSource": map[string]any{"uri": "git+" + source + "@refs/tags/v1", "entryPoint": ".github/workflows/release.yml"}},
	}
}

func TestCosign_ProvenanceMustNameTheBuilderAndSource(t *testing.T) {
	e := newEnv(t, true)
	otherImage := e.reg.pushImage(t, "app", "other")
	keylessProv := func(predicateType string, pred map[string]any, digest func(name.Digest) string) func(*testing.T, name.Digest) {
		return func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, statement(ref, digest(ref), predicateType, pred), bundleOpts{}))
		}
	}
	self := func(ref name.Digest) string { return ref.DigestStr() }
	prov := func(builder, source string, re bool) *ProvenancePolicy {
		return &ProvenancePolicy{BuilderID: builder, SourceRepository: source, BuilderIDRegexp: re, SourceRepositoryRegexp: re}
	}
	keyless := func(pp *ProvenancePolicy) Policy {
		p := e.keyless(nil)
		p.Provenance = pp
		return p
	}
	cases := []struct {
		name    string
		sign    func(*testing.T, name.Digest)
		policy  Policy
		want    *Provenance // Digest filled in by the test
		wantErr string
	}{{
		name:   "SLSA v1 bundle from the right builder and source",
		sign:   keylessProv(slsaProvenanceV1, slsaV1(testBuilder, testSource), self),
		policy: keyless(prov(testBuilder, testSource, false)),
		want:   &Provenance{Builder: testBuilder, Source: testSource},
	}, {
		name:   "builder and source as regular expressions",
		sign:   keylessProv(slsaProvenanceV1, slsaV1(testBuilder, testSource), self),
		policy: keyless(prov(`^https://github\.com/actions/runner/`, `^https://github\.com/org/`, true)),
		want:   &Provenance{Builder: testBuilder, Source: testSource},
	}, {
		name:    "built by another builder",
		sign:    keylessProv(slsaProvenanceV1, slsaV1("https://ci.example.com/runner", testSource), self),
		policy:  keyless(prov(testBuilder, testSource, false)),
		wantErr: "no SLSA provenance by builder " + testBuilder + ", source " + testSource + " signed by " + testIdentity + " (issuer " + testIssuer + "): built by https://ci.example.com/runner",
	}, {
		name:    "built from another repository",
		sign:    keylessProv(slsaProvenanceV1, slsaV1(testBuilder, "https://github.com/evil/repo"), self),
		policy:  keyless(prov(testBuilder, testSource, false)),
		wantErr: "built from https://github.com/evil/repo",
	}, {
		name:    "provenance of another image",
		sign:    keylessProv(slsaProvenanceV1, slsaV1(testBuilder, testSource), func(name.Digest) string { return otherImage.DigestStr() }),
		policy:  keyless(prov(testBuilder, testSource, false)),
		wantErr: "is over another image",
	}, {
		name: "signed but no provenance",
		sign: func(t *testing.T, ref name.Digest) {
			attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
		},
		policy:  keyless(prov(testBuilder, testSource, false)),
		wantErr: "the image has no provenance attestation",
	}, {
		name: "SLSA v0.2 in the legacy .att tag signed with a key",
		sign: func(t *testing.T, ref name.Digest) {
			e.ecdsa.SignLegacy(t, ref, ref.DigestStr())
			env, _ := json.Marshal(e.ecdsa.Envelope(t, statement(ref, ref.DigestStr(), slsaProvenanceV02, slsaV02(testBuilder, testSource))))
			legacyPush(t, ref, ".att", []mutate.Addendum{{
				Layer:       static.NewLayer(env, "application/vnd.dsse.envelope.v1+json"),
				Annotations: map[string]string{annSignature: "", "predicateType": slsaProvenanceV02},
			}})
		},
		policy: func() Policy {
			p := keyPolicy(e.ecdsa)
			p.Provenance = prov(testBuilder, testSource, false)
			return p
		}(),
		want: &Provenance{Builder: testBuilder, Source: testSource},
	}, {
		name: "keyless SLSA v1 in the legacy .att tag",
		sign: func(t *testing.T, ref name.Digest) {
			e.auth.SignKeylessLegacy(t, ref, testIdentity, testIssuer)
			e.auth.AttestKeylessLegacy(t, ref, testIdentity, testIssuer, statement(ref, ref.DigestStr(), slsaProvenanceV1, slsaV1(testBuilder, testSource)))
		},
		policy: keyless(prov(testBuilder, testSource, false)),
		want:   &Provenance{Builder: testBuilder, Source: testSource},
	}, {
		name: "provenance signed by another key",
		sign: func(t *testing.T, ref name.Digest) {
			e.ecdsa.SignLegacy(t, ref, ref.DigestStr())
			attach(t, ref, bundleV03, e.otherKey.Bundle(t, statement(ref, ref.DigestStr(), slsaProvenanceV1, slsaV1(testBuilder, testSource))))
		},
		policy: func() Policy {
			p := keyPolicy(e.ecdsa)
			p.Provenance = prov(testBuilder, testSource, false)
			return p
		}(),
		wantErr: "signed by another key",
	}}
	c, _ := NewCosign()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := e.reg.pushImage(t, "app", "p"+string(rune('a'+i)))
			tc.sign(t, ref)
			res, err := c.Verify(context.Background(), ref, tc.policy, e.reg.opts()...)
			if tc.wantErr != "" {
				t.Logf("Verify: %v", err)
				if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Verify = %+v, %v; want ErrUnverified saying %q", res, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := *tc.want
			want.Digest = ref.DigestStr()
			if res.Provenance == nil || *res.Provenance != want {
				t.Fatalf("Provenance = %+v, want %+v", res.Provenance, want)
			}
		})
	}
}
