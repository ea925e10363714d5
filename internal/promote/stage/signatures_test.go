package stage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
)

const (
	releaseIdentity = "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"
	githubIssuer    = "https://token.actions.githubusercontent.com"
	slsaBuilder     = "https://github.com/actions/runner/github-hosted"
	slsaSource      = "https://github.com/org/repo"
)

// signing is a virtual Sigstore and a key, and the policies a stage requires with them.
type signing struct {
	auth signaturetest.Authority
	key  signaturetest.Key
}

func newSigning(t testing.TB) *signing {
	return &signing{auth: signaturetest.NewAuthority(t), key: signaturetest.NewKey(t, "ecdsa")}
}

// keyless is a policy requiring a keyless signature by the release workflow.
func (s *signing) keyless() signature.Policy {
	return signature.Policy{Name: "release", Cosign: &signature.CosignPolicy{
		Identity: releaseIdentity, Issuer: githubIssuer, TrustedRoot: s.auth.TrustedRoot, TrustedRootRef: "trusted_root.json",
	}}
}

// keyed is a policy requiring a signature by the key.
func (s *signing) keyed() signature.Policy {
	return signature.Policy{Name: "ci-key", Cosign: &signature.CosignPolicy{PublicKey: s.key.PEM, KeyRef: "cosign.pub"}}
}

// digestOf is what repo:tag points to in the test registry, as repo@digest.
func (tr *testRegistry) digestOf(t testing.TB, repo, tag string) name.Digest {
	t.Helper()
	ref, err := name.NewTag(tr.image(repo)+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(desc.Digest.String())
}

// signKeyless signs repo:tag as identity, in cosign's .sig tag format (the stage tests'
// registry has no referrers API).
func (s *signing) signKeyless(t testing.TB, tr *testRegistry, repo, tag, identity string) {
	t.Helper()
	s.auth.SignKeylessLegacy(t, tr.digestOf(t, repo, tag), identity, githubIssuer)
}

func (s *signing) signKey(t testing.TB, tr *testRegistry, repo, tag string) {
	t.Helper()
	d := tr.digestOf(t, repo, tag)
	s.key.SignLegacy(t, d, d.DigestStr())
}

// attachKeyBundle attaches a sigstore bundle signed with the key as a referrer of repo:tag.
func (s *signing) attachKeyBundle(t testing.TB, tr *testRegistry, repo, tag string) {
	t.Helper()
	d := tr.digestOf(t, repo, tag)
	signaturetest.Attach(t, d, signaturetest.BundleV03, s.key.Bundle(t, signaturetest.SignatureStatement(d, d.DigestStr())))
}

func noSignatureBy(identity string) string {
	return "no signature by " + identity + " (issuer " + githubIssuer + ")"
}

// trailers are the values of one trailer key of main's newest commit, in order.
func (f *fixture) trailers(key string) []string {
	f.t.Helper()
	out, err := gitserverOutput(f.bare, "log", "-1", "--format=%(trailers:key="+key+",valueonly,separator=%x7C)", "main")
	if err != nil {
		f.t.Fatal(err)
	}
	if out = strings.TrimSpace(out); out == "" {
		return nil
	}
	return strings.Split(out, "|")
}

// checks counts the signature checks by result, as the metric does.
type checks struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *checks) observe(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[result]++
}

func (c *checks) get(result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[result]
}

func TestSignatures_OnlyASignedDigestIsPromoted(t *testing.T) {
	const other = "https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/main"
	cases := []struct {
		name string
		// push pushes and signs team/frontend's tags.
		push     func(t *testing.T, f *fixture, s *signing)
		policies func(s *signing) []signature.Policy
		// want is what develop runs after a pass; wantSigners the commit's Kropipe-Signed-By.
		want        string
		wantSigners []string
		// wantSkipped are the tags the status says were skipped, each with a part of why.
		wantSkipped []string
	}{{
		name: "signed keyless by the release workflow: promoted, the signer recorded",
		push: func(t *testing.T, f *fixture, s *signing) {
			f.reg.push(t, "team/frontend", "1.2.2")
			s.signKeyless(t, f.reg, "team/frontend", "1.2.2", releaseIdentity)
		},
		policies:    func(s *signing) []signature.Policy { return []signature.Policy{s.keyless()} },
		want:        "1.2.2",
		wantSigners: []string{releaseIdentity + " (issuer " + githubIssuer + ")"},
	}, {
		name: "the newest unsigned waits, the older signed one is promoted",
		push: func(t *testing.T, f *fixture, s *signing) {
			f.reg.push(t, "team/frontend", "1.2.2", "1.2.3")
			s.signKeyless(t, f.reg, "team/frontend", "1.2.2", releaseIdentity)
		},
		policies:    func(s *signing) []signature.Policy { return []signature.Policy{s.keyless()} },
		want:        "1.2.2",
		wantSigners: []string{releaseIdentity + " (issuer " + githubIssuer + ")"},
		wantSkipped: []string{"1.2.3: " + noSignatureBy(releaseIdentity)},
	}, {
		name: "signed by another identity: skipped, the identity named",
		push: func(t *testing.T, f *fixture, s *signing) {
			f.reg.push(t, "team/frontend", "1.2.2", "1.2.3")
			s.signKeyless(t, f.reg, "team/frontend", "1.2.2", releaseIdentity)
			s.signKeyless(t, f.reg, "team/frontend", "1.2.3", other)
		},
		policies:    func(s *signing) []signature.Policy { return []signature.Policy{s.keyless()} },
		want:        "1.2.2",
		wantSigners: []string{releaseIdentity + " (issuer " + githubIssuer + ")"},
		wantSkipped: []string{"1.2.3: " + noSignatureBy(releaseIdentity) + ": signed by another identity: " + other},
	}, {
		name: "two policies: both must hold, one signer each",
		push: func(t *testing.T, f *fixture, s *signing) {
			f.reg.push(t, "team/frontend", "1.2.2", "1.2.3")
			s.signKeyless(t, f.reg, "team/frontend", "1.2.2", releaseIdentity)
			s.attachKeyBundle(t, f.reg, "team/frontend", "1.2.2")              // next to the .sig tag: the referrers tag schema
			s.signKeyless(t, f.reg, "team/frontend", "1.2.3", releaseIdentity) // the key's signature is missing
		},
		policies:    func(s *signing) []signature.Policy { return []signature.Policy{s.keyless(), s.keyed()} },
		want:        "1.2.2",
		wantSigners: []string{releaseIdentity + " (issuer " + githubIssuer + ")", "key "},
		wantSkipped: []string{"1.2.3: no signature by key "},
	}, {
		name: "nothing signed: nothing promoted, every tag named",
		push: func(t *testing.T, f *fixture, s *signing) {
			f.reg.push(t, "team/frontend", "1.2.2", "1.2.3")
		},
		policies:    func(s *signing) []signature.Policy { return []signature.Policy{s.keyless()} },
		want:        "1.2.1",
		wantSkipped: []string{"1.2.3: " + noSignatureBy(releaseIdentity), "1.2.2: " + noSignatureBy(releaseIdentity)},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s := newSigning(t)
			tc.push(t, f, s)
			dev := f.spec("develop-frontend", "develop/frontend", "frontend")
			dev.Signatures = tc.policies(s)
			var c checks
			e := f.engine([]Spec{dev}, WithSignatureChecks(c.observe))
			reconcile(t, e)
			st := mustStatus(t, e, "develop-frontend")
			if st.CurrentTag != tc.want {
				t.Fatalf("develop runs %q, want %q (status %+v)", st.CurrentTag, tc.want, st)
			}
			if len(st.Skipped) != len(tc.wantSkipped) {
				t.Fatalf("skipped %q, want %q", st.Skipped, tc.wantSkipped)
			}
			for i, want := range tc.wantSkipped {
				if !strings.HasPrefix(st.Skipped[i], want) {
					t.Errorf("skipped[%d] = %q, want it to start with %q", i, st.Skipped[i], want)
				}
			}
			if tc.want == "1.2.1" {
				if got := f.subjects(); len(got) != 0 {
					t.Fatalf("commits %q, want none", got)
				}
				if st.Decision != DecisionWait || !strings.Contains(st.Reason, "not signed as required, skipped: 1.2.3: "+noSignatureBy(releaseIdentity)) {
					t.Fatalf("status %s %q", st.Decision, st.Reason)
				}
				return
			}
			signers := f.trailers("Kropipe-Signed-By")
			if len(signers) != len(tc.wantSigners) {
				t.Fatalf("Kropipe-Signed-By %q, want %q", signers, tc.wantSigners)
			}
			for i, want := range tc.wantSigners {
				if !strings.HasPrefix(signers[i], want) {
					t.Errorf("Kropipe-Signed-By[%d] = %q, want %q…", i, signers[i], want)
				}
			}
			// History reads the signers back (a restarted promoter's view).
			recs, err := e.History(context.Background(), "develop-frontend")
			if err != nil || len(recs) == 0 || !slices.Equal(recs[0].SignedBy, signers) {
				t.Fatalf("history %+v, %v; want the signers %q", recs, err, signers)
			}
			if c.get(SignatureVerified) == 0 || (len(tc.wantSkipped) > 0) != (c.get(SignatureUnverified) > 0) {
				t.Errorf("checks counted %v", c.m)
			}
			// The page's tag explanation says why a skipped tag is no candidate.
			if len(tc.wantSkipped) > 0 {
				vs, err := e.Tags(context.Background(), "develop-frontend")
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range vs {
					if v.Tag == "1.2.3" && (v.Candidate || !strings.HasPrefix(v.Reason, "not signed as required: ")) {
						t.Errorf("tag 1.2.3: %+v, want it shown as not signed", v)
					}
				}
			}
		})
	}
}

// A provenance policy records the builder, source and digest it checked.
func TestSignatures_ProvenanceIsRecorded(t *testing.T) {
	f := newFixture(t)
	s := newSigning(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	d := f.reg.digestOf(t, "team/frontend", "1.2.2")
	s.auth.SignKeylessLegacy(t, d, releaseIdentity, githubIssuer)
	s.auth.AttestKeylessLegacy(t, d, releaseIdentity, githubIssuer, signaturetest.Statement(d, d.DigestStr(), "https://slsa.dev/provenance/v1", map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://actions.github.io/buildtypes/workflow/v1",
			"externalParameters": map[string]any{"workflow": map[string]any{"ref": "refs/tags/v1", "repository": slsaSource, "path": ".github/workflows/release.yml"}},
		},
		"runDetails": map[string]any{"builder": map[string]any{"id": slsaBuilder}},
	}))
	dev := f.spec("develop-frontend", "develop/frontend", "frontend")
	p := s.keyless()
	p.Provenance = &signature.ProvenancePolicy{BuilderID: slsaBuilder, SourceRepository: slsaSource}
	dev.Signatures = []signature.Policy{p}
	e := f.engine([]Spec{dev})
	reconcile(t, e)
	want := "builder=" + slsaBuilder + " source=" + slsaSource + " digest=" + d.DigestStr()
	if got := f.trailers("Kropipe-Provenance"); len(got) != 1 || got[0] != want {
		t.Fatalf("Kropipe-Provenance %q, want %q", got, want)
	}
	recs, err := e.History(context.Background(), "develop-frontend")
	if err != nil || len(recs) == 0 || len(recs[0].Provenance) != 1 || recs[0].Provenance[0].String() != want {
		t.Fatalf("history %+v, %v", recs, err)
	}
}

// A tag pushed again after a pass proved and verified its digest is checked anew right
// before the write: its signature is over the old digest, so nothing is written.
func TestSignatures_RepushedTagIsNotPromotedOnItsOldSignature(t *testing.T) {
	f := newFixture(t)
	s := newSigning(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	s.signKey(t, f.reg, "team/frontend", "1.2.2")
	old := f.reg.digestOf(t, "team/frontend", "1.2.2")
	dev := f.spec("develop-frontend", "develop/frontend", "frontend")
	dev.AutoPromote = false
	dev.Signatures = []signature.Policy{s.keyed()}
	e := f.engine([]Spec{dev})
	ctx := context.Background()
	reconcile(t, e)
	if st := mustStatus(t, e, "develop-frontend"); st.Decision != DecisionWait || st.Candidate == nil || st.Candidate.Digest != old.DigestStr() {
		t.Fatalf("status %+v, want 1.2.2 waiting for approval", st)
	}
	// Someone with push rights replaces 1.2.2 and copies the old signature (the payload names
	// the old digest) to the new image.
	f.reg.push(t, "team/frontend", "1.2.2")
	moved := f.reg.digestOf(t, "team/frontend", "1.2.2")
	s.key.SignLegacy(t, moved, old.DigestStr())
	if _, err := e.Approve(ctx, "develop-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	err := e.Reconcile(ctx)
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("commits %q, want none: the re-pushed 1.2.2 is not signed", got)
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.CurrentTag != "1.2.1" || st.Decision != DecisionHold || !strings.HasPrefix(st.Reason, "held: not signed as required: 1.2.2: ") || !strings.Contains(st.Reason, "over another image") {
		t.Fatalf("status %s %q %q (pass err %v), want the re-pushed tag held as signed over another digest", st.Decision, st.Reason, st.Error, err)
	}
}

// A registry failing the signature requests (500) is not "unsigned": the stage holds with
// the reason, nothing is written, and the next pass, the registry back, promotes.
func TestSignatures_RegistryFailureHoldsAndRetries(t *testing.T) {
	f := newFixture(t)
	s := newSigning(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	s.signKey(t, f.reg, "team/frontend", "1.2.2")
	dev := f.spec("develop-frontend", "develop/frontend", "frontend")
	dev.Signatures = []signature.Policy{s.keyed()}
	var c checks
	e := f.engine([]Spec{dev}, WithSignatureChecks(c.observe))
	f.reg.breakPath("/v2/team/frontend/manifests/sha256-") // cosign's .sig tags
	err := e.Reconcile(context.Background())
	if err == nil {
		t.Fatal("pass succeeded, want the stage failed on the registry error")
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionFailed || !strings.Contains(st.Error, "checking the signature of 1.2.2") || !strings.Contains(st.Error, "tries again next pass") {
		t.Fatalf("status %s %q", st.Decision, st.Error)
	}
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("commits %q, want none", got)
	}
	if c.get(SignatureError) == 0 || c.get(SignatureUnverified) != 0 {
		t.Fatalf("checks counted %v, want an error and no unverified", c.m)
	}
	f.reg.fail.Store(nil)
	reconcile(t, e)
	if got := f.subjects(); len(got) != 1 {
		t.Fatalf("commits %q, want the promotion once the registry answers", got)
	}
}

// A downstream stage checks the freight its upstream verified under its own policies.
func TestSignatures_DownstreamChecksItsUpstreamsFreightUnderItsOwnPolicy(t *testing.T) {
	f := newFixture(t)
	s := newSigning(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	s.signKey(t, f.reg, "team/frontend", "1.2.2")
	dev := f.spec("develop-frontend", "develop/frontend", "frontend")
	dev.Signatures = []signature.Policy{s.keyed()}
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream = "develop-frontend"
	staging.Signatures = []signature.Policy{s.keyless()} // develop's key signature is not enough here
	e := f.engine([]Spec{dev, staging})
	reconcile(t, e)
	reconcile(t, e)
	if got := f.subjects(); len(got) != 1 {
		t.Fatalf("commits %q, want develop's promotion only", got)
	}
	st := mustStatus(t, e, "staging-frontend")
	if st.Decision != DecisionHold || !strings.HasPrefix(st.Reason, "held: develop-frontend verified 1.2.2, but 1.2.2: "+noSignatureBy(releaseIdentity)+": signed with a key") {
		t.Fatalf("staging %s %q", st.Decision, st.Reason)
	}
	s.signKeyless(t, f.reg, "team/frontend", "1.2.2", releaseIdentity)
	f.clock.Step(signatureRecheck)
	reconcile(t, e)
	if st := mustStatus(t, e, "staging-frontend"); st.CurrentTag != "1.2.2" {
		t.Fatalf("staging %s %q, want 1.2.2 once signed", st.Decision, st.Reason)
	}
	if got := f.trailers("Kropipe-Signed-By"); len(got) != 1 || !strings.HasPrefix(got[0], releaseIdentity) {
		t.Fatalf("staging's commit Kropipe-Signed-By %q", got)
	}
}

// signatureRecheck is how long an unsigned answer is kept by the verifiers (their default).
const signatureRecheck = signature.DefaultNotationUnsignedTTL

// A release group moves only when every member verifies: an unsigned member holds the
// group, named with why; signed, the set commit carries each member's signer.
func TestSignatures_GroupWithAnUnsignedMemberHolds(t *testing.T) {
	f := newGroupFixture(t)
	s := newSigning(t)
	specs, groups := f.shop()
	for i := range specs {
		specs[i].Signatures = []signature.Policy{s.keyed()}
	}
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	s.signKey(t, f.reg, "team/frontend", "1.2.2")
	s.signKey(t, f.reg, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))
	reconcile(t, e)
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("commits %q, want none", got)
	}
	st := mustStatus(t, e, "develop/shop")
	if st.Decision != DecisionHold || !strings.HasPrefix(st.Reason, "held: member develop-backend: 2.1.0: no signature by key ") || strings.Contains(st.Reason, "2.0.0") {
		t.Fatalf("develop/shop %s %q", st.Decision, st.Reason)
	}
	if fe := mustStatus(t, e, "develop-frontend"); fe.Decision != DecisionHold || !strings.Contains(fe.Reason, "develop-backend") {
		t.Fatalf("develop-frontend %s %q, want held with its group", fe.Decision, fe.Reason)
	}
	s.signKey(t, f.reg, "team/backend", "2.1.0")
	f.clock.Step(signatureRecheck)
	reconcile(t, e)
	if got := f.subjects(); len(got) != 1 || !strings.HasPrefix(got[0], "Promote shop: ") {
		t.Fatalf("commits %q, want the set promoted once every member is signed", got)
	}
	if got := f.trailers("Kropipe-Signed-By"); len(got) != 2 {
		t.Fatalf("Kropipe-Signed-By %q, want one per member", got)
	}
}

// A manual promotion of an unsigned tag is refused as well: the policy has no bypass.
func TestSignatures_ManualPromotionOfAnUnsignedTagIsRefused(t *testing.T) {
	f := newFixture(t)
	s := newSigning(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	dev := f.spec("develop-frontend", "develop/frontend", "frontend")
	dev.Signatures = []signature.Policy{s.keyed()}
	e := f.engine([]Spec{dev})
	_, err := e.Promote(context.Background(), "develop-frontend", "1.2.2")
	if !errors.Is(err, ErrNothingToDo) || !strings.Contains(err.Error(), "1.2.2: no signature by key ") {
		t.Fatalf("Promote = %v, want it refused as unsigned", err)
	}
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("commits %q", got)
	}
}
