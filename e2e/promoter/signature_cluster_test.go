package promoter_test

import (
	"context"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kropipe/kropipe/e2e/imagesign"
	"github.com/kropipe/kropipe/e2e/stack"
)

// Flow 9, "only what our CI signed", in the cluster: the stage is annotated
// kropipe.io/verify-signature: release,ci-key,notary, three policies of the promoter's
// --signature-policies file required together: release, a cosign keyless signature by the
// frontend's release workflow (identity regular expression and issuer, as cosign verify takes
// them) under a private Sigstore's trusted_root.json; ci-key, a cosign signature with the CI's
// ECDSA key; notary, a Notation signature chaining to the team's CA with its signer's subject;
// all kept in a Secret of the promoter's namespace. CI pushes 1.2.2 and signs it three ways:
// keyless with sigstore-go's virtual Fulcio, Rekor and timestamp authority (a bundle attached
// as an OCI referrer; the stack's distribution has no referrers API, so it lands in the
// referrers tag schema), with the key (the legacy sha256-<hex>.sig tag), and with notation-go.
// Someone pushes 1.2.3, newer, unsigned, and 1.2.4, signed with the key but keyless by a
// fork's workflow. kropipe promotes 1.2.2 only, its commit says who signed it (a
// Kropipe-Signed-By per policy), Argo CD syncs it, and the API and the stage's page say why
// 1.2.3 and 1.2.4 wait; passes after that write nothing.
func TestController_SignedTagPromotedUnsignedNewerWaits(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const (
		identity       = "https://github.com/org/frontend/.github/workflows/release.yml@refs/tags/v1.2.2"
		identityRegexp = `^https://github\.com/org/frontend/\.github/workflows/release\.yml@refs/tags/`
		issuer         = "https://token.actions.githubusercontent.com"
		// fork is a workflow the policy does not trust, with the same issuer.
		fork = "https://github.com/someone/frontend/.github/workflows/release.yml@refs/heads/main"
	)
	vs, err := imagesign.NewSigstore()
	if err != nil {
		t.Fatal(err)
	}
	key, err := imagesign.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keyID, err := key.ID()
	if err != nil {
		t.Fatal(err)
	}
	notary, err := imagesign.NewNotationCA("kropipe e2e")
	if err != nil {
		t.Fatal(err)
	}
	// The private Sigstore's root and the public key in a Secret; the policies file names them,
	// as the install's ConfigMap kropipe-signature-policies would.
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, apps: []string{sigStage}}
	p.apply(&corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: sigSecret, Namespace: stack.ArgoCDNamespace},
		Data:       map[string][]byte{"trusted_root.json": vs.TrustedRoot, "cosign.pub": key.PublicPEM, "notation-ca.pem": notary.TrustStore},
	})
	t.Cleanup(func() {
		_ = st.Kube.CoreV1().Secrets(stack.ArgoCDNamespace).Delete(context.Background(), sigSecret, metav1.DeleteOptions{})
	})
	policies := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policies, []byte(`release:
  cosign:
    identityRegexp: '`+identityRegexp+`'
    issuer: `+issuer+`
    trustedRoot: secret:`+sigSecret+`/trusted_root.json
ci-key:
  cosign:
    key: secret:`+sigSecret+`/cosign.pub
notary:
  notation:
    trustStore: secret:`+sigSecret+`/notation-ca.pem
    trustedIdentities: ['`+notary.Subject+`']
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p.promoterArgs = []string{"--signature-policies=" + policies}
	p.installPromoterRBAC()
	// Registered before the replica starts, so it runs after it stopped.
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	v := &verifyPipeline{p}
	seed := v.seedRepo(sigRepo, "sig", nil)
	v.createAppIn(sigRepo, sigStage, "develop/frontend", "sig/frontend", map[string]string{"kropipe.io/verify-signature": "release,ci-key,notary"})
	if err := st.EnsureNamespace(ctx, sigStage); err != nil {
		t.Fatal(err)
	}
	v.syncByHand(sigStage, seed)
	v.waitApp(sigStage, "Synced and Healthy at the seed", syncedHealthyAt(seed))

	// CI's release: 1.2.2 pushed and signed by the workflow, keyless and with the key. Then a
	// hand-pushed 1.2.3, newer and unsigned, and 1.2.4 from a fork's workflow. All exist before
	// the promoter's first pass.
	signedAt := time.Now()
	d122 := pushedDigest(t, "sig/frontend", "1.2.2")
	if _, err := vs.Sign(ctx, d122, identity, issuer); err != nil {
		t.Fatal(err)
	}
	if _, err := key.Sign(ctx, d122); err != nil {
		t.Fatal(err)
	}
	if _, err := notary.Sign(ctx, d122, true); err != nil {
		t.Fatal(err)
	}
	t.Logf("1.2.2 (%s) signed keyless, with the key and with Notation in %s", d122.DigestStr(), time.Since(signedAt).Round(time.Millisecond))
	pushImage(t, st.RegistryAddr, "sig/frontend", "1.2.3")
	d124 := pushedDigest(t, "sig/frontend", "1.2.4")
	if _, err := vs.Sign(ctx, d124, fork, issuer); err != nil {
		t.Fatal(err)
	}
	if _, err := key.Sign(ctx, d124); err != nil {
		t.Fatal(err)
	}

	a := v.startPromoter("promoter-sig")
	v.waitLeader("promoter-sig")
	started := time.Now()
	promoted := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	t.Logf("promoter leading → 1.2.2 committed in %s:\n%s", time.Since(started).Round(10*time.Millisecond), v.git("log", "-1", "--format=%B", promoted))
	// One Kropipe-Signed-By per policy, in the annotation's order.
	signedBy := strings.Split(strings.TrimSpace(v.git("log", "-1", "--format=%(trailers:key=Kropipe-Signed-By,valueonly)", promoted)), "\n")
	if len(signedBy) != 3 || signedBy[0] != identity+" (issuer "+issuer+")" || signedBy[1] != keyID ||
		!strings.HasPrefix(signedBy[2], notary.SignerName) || !strings.Contains(signedBy[2], "Notation") {
		t.Errorf("promotion commit Kropipe-Signed-By %q, want %q, %q and Notation's %q\n%s", signedBy, identity+" (issuer "+issuer+")", keyID, notary.SignerName, v.git("log", "-1", "--format=%B", promoted))
	}
	v.waitApp(sigStage, "Synced and Healthy at the promotion, synced by kropipe", func(app *v1alpha1.Application) bool {
		return syncedHealthyAt(promoted)(app) && syncedBy(app, "kropipe", promoted)
	})
	v.waitDeployment(sigStage, "frontend", st.RegistryAddr+"/sig/frontend:1.2.2")

	// Why 1.2.3 and 1.2.4 wait, in the API and on the page.
	skipped := func(s stageStatus, tag string) bool {
		return slices.ContainsFunc(s.Skipped, func(why string) bool { return strings.HasPrefix(why, tag+": no signature by "+identityRegexp) })
	}
	s := v.waitStage(a, sigStage, "at 1.2.2 with 1.2.4 (a fork's) and 1.2.3 (unsigned) skipped", func(s stageStatus) bool {
		return s.CurrentTag == "1.2.2" && skipped(s, "1.2.3") && skipped(s, "1.2.4")
	})
	t.Logf("stage %s: %s; %s; skipped %q", sigStage, s.Decision, s.Reason, s.Skipped)
	// The stage's page explains each tag: 1.2.3 is admitted by the constraint but no candidate.
	code, page := v.get(a, "/stages/"+sigStage)
	if want := "not signed as required: no signature by " + html.EscapeString(identityRegexp); code != http.StatusOK || !strings.Contains(page, want) {
		t.Errorf("GET /stages/%s (%d) does not say why 1.2.3 and 1.2.4 wait (%q):\n%s", sigStage, code, want, tagsSection(page))
	}
	// Passes go on (the unsigned verdict cached, no commit).
	v.waitStage(a, sigStage, "two more passes", func(x stageStatus) bool { return x.CheckedAt.After(s.CheckedAt.Add(2 * crashInterval)) })
	if head := v.head(); head != promoted {
		t.Errorf("after 1.2.2 the promoter committed again:\n%s", v.log(promoted))
	}
	v.wantEvent(sigStage, "Promoted", "1.2.2")
	t.Logf("wall time %s", time.Since(began).Round(100*time.Millisecond))
}

// The test's names: a repository, Application, image and namespace of its own.
const (
	sigRepo   = "sig-gitops"
	sigStage  = "sig-develop"
	sigSecret = "e2e-sigstore-root"
)

// tagsSection is the part of a stage's page from its tag explanations on, for messages.
func tagsSection(page string) string {
	if i := strings.Index(page, "1.2.3"); i >= 0 {
		return page[max(0, i-2000):min(len(page), i+2000)]
	}
	return page
}

// trailer is commit's values of trailer key, comma-separated in order.
func (p *pipeline) trailer(commit, key string) string {
	return strings.TrimSpace(p.git("log", "-1", "--format=%(trailers:key="+key+",valueonly,separator=%x2C)", commit))
}
