package controller

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
)

func cosignSecret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "argocd"}, Data: data}
}

func TestSignaturePolicies_ReadKeysFromSecretsAndNameWhatIsMissing(t *testing.T) {
	pem := signaturetest.NewKey(t, "ecdsa").PEM
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "missing-root.json")
	defined, err := config.ParseSignaturePolicies([]byte(`release:
  cosign: {key: "secret:cosign-keys/cosign.pub"}
other-key:
  cosign: {key: "secret:cosign-keys/other.pub"}
no-secret:
  cosign: {key: "secret:absent/cosign.pub"}
bad-pem:
  cosign: {key: "secret:broken/cosign.pub"}
keyless:
  cosign: {identity: x, issuer: y, trustedRoot: `+rootFile+`}
`), "signature-policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kube := kubefake.NewClientset(
		cosignSecret("cosign-keys", map[string][]byte{"cosign.pub": pem}),
		cosignSecret("broken", map[string][]byte{"cosign.pub": []byte("not a key")}),
	)
	var logs bytes.Buffer
	s := newSignaturePolicies(kube, "argocd", "/etc/kropipe/signature-policies.yaml", defined, slog.New(slog.NewTextHandler(&logs, nil)))
	got := s.resolve(context.Background())

	if got.Source != "--signature-policies /etc/kropipe/signature-policies.yaml" {
		t.Errorf("source %q", got.Source)
	}
	if p, ok := got.Policies["release"]; !ok || !bytes.Equal(p.Cosign.PublicKey, pem) || p.Cosign.KeyRef != "secret:cosign-keys/cosign.pub" {
		t.Fatalf("release %+v; unusable %v", got.Policies["release"], got.Unusable)
	}
	if defined["release"].Cosign.PublicKey != nil {
		t.Error("the parsed policies were changed")
	}
	for name, want := range map[string]string{
		"other-key": `cosign.key: Secret argocd/cosign-keys holds no key "other.pub" (it holds cosign.pub)`,
		"no-secret": `cosign.key: Secret argocd/absent does not exist; create it in the promoter's namespace with the PEM public key (cosign.pub) under the key "cosign.pub"`,
		"bad-pem":   `cosign.key: signature policy "bad-pem": public key secret:broken/cosign.pub`,
		"keyless":   "cosign.trustedRoot: reading " + rootFile,
	} {
		if why := got.Unusable[name]; !strings.HasPrefix(why, want) {
			t.Errorf("policy %s unusable because %q; want %q", name, why, want)
		}
		if _, ok := got.Policies[name]; ok {
			t.Errorf("unusable policy %s is offered", name)
		}
	}
	if strings.Contains(logs.String(), "BEGIN PUBLIC KEY") {
		t.Error("key material reached the logs")
	}

	// The API server failing keeps what was read; a Secret deleted is noticed.
	kube.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == "cosign-keys" {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	if err := kube.CoreV1().Secrets("argocd").Delete(context.Background(), "broken", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := s.resolve(context.Background())
	if p, ok := again.Policies["release"]; !ok || !bytes.Equal(p.Cosign.PublicKey, pem) {
		t.Fatalf("an unreachable API server made release unusable: %v", again.Unusable["release"])
	}
	if why := again.Unusable["bad-pem"]; !strings.Contains(why, "Secret argocd/broken does not exist") {
		t.Errorf("deleted Secret: %q", why)
	}
}

// A stage annotated kropipe.io/verify-signature whose policy's Secret does not exist yet does
// not run, and says why; once the Secret is created it runs, without a restart.
func TestController_VerifySignaturePolicyWithItsKeyInASecret(t *testing.T) {
	defined, err := config.ParseSignaturePolicies([]byte("release:\n  cosign: {key: \"secret:cosign-keys/cosign.pub\"}\n"), "signature-policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	refresh := signaturePolicyRefresh
	signaturePolicyRefresh = 50 * time.Millisecond
	t.Cleanup(func() { signaturePolicyRefresh = refresh })
	// No tag: the stage has nothing to promote, so the test depends only on whether it runs,
	// not on how the engine verifies signatures.
	e := newClusterEnvFor(t, registrytest.Start(t), map[string]any{argocd.AnnVerifySignature: "release"})
	f := configFor("")
	f.SignaturePolicies, f.SignaturePolicyFile = defined, "/etc/kropipe/signature-policies.yaml"
	addr, logs, _ := e.start(t, f)

	problem := func() string {
		_, body := get(t, "http://"+addr+"/api/v1/problems")
		for _, line := range strings.Split(body, "},{") {
			if strings.Contains(line, `"stage":"develop-frontend"`) && strings.Contains(line, argocd.AnnVerifySignature) {
				return line
			}
		}
		return ""
	}
	waitFor(t, logs, "the missing Secret named as develop-frontend's problem", func() bool {
		return strings.Contains(problem(), `Secret argocd/cosign-keys does not exist`)
	})
	sec := cosignSecret("cosign-keys", map[string][]byte{"cosign.pub": signaturetest.NewKey(t, "ed25519").PEM})
	if _, err := e.kube.CoreV1().Secrets("argocd").Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, logs, "develop-frontend runs once the Secret exists", func() bool { return problem() == "" })
}

// waitFor polls ok until it holds, failing with the controller's logs after 30s.
func waitFor(t *testing.T, logs *syncBuffer, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never %s\n%s", what, logs.String())
		}
	}
}
