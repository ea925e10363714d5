package argocd

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/signature"
)

// clusterPolicies are a promoter's --signature-policies, key material read.
func clusterPolicies() SignaturePolicies {
	return SignaturePolicies{
		Source: "--signature-policies /etc/kropipe/signature-policies.yaml",
		Policies: map[string]signature.Policy{
			"release":    {Name: "release", Cosign: &signature.CosignPolicy{IdentityRegexp: "^https://github.com/org/", Issuer: "https://token.actions.githubusercontent.com"}},
			"provenance": {Name: "provenance", Cosign: &signature.CosignPolicy{Identity: "x", Issuer: "y"}, Provenance: &signature.ProvenancePolicy{BuilderID: "b"}},
		},
		Unusable: map[string]string{"offline": `Secret argocd/cosign-keys does not exist; create it with the key cosign.pub, or fix key: "secret:cosign-keys/cosign.pub" in --signature-policies`},
	}
}

func TestDerive_VerifySignatureNamesPoliciesOfThePromoter(t *testing.T) {
	// The ApplicationSet requires release of every member; prod also provenance.
	set := appset("services", map[string]string{AnnVerifySignature: "release"})
	apps := []*unstructured.Unstructured{
		ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "services"),
		ownedBy(app("prod-frontend", "prod/frontend", map[string]string{AnnImage: img("frontend"), AnnVerifySignature: "release, provenance,release"}), "services"),
		ownedBy(app("sandbox-frontend", "sandbox/frontend", map[string]string{AnnImage: img("frontend"), AnnVerifySignature: ""}), "services"),
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set}, WithSignaturePolicies(clusterPolicies()))
	if len(cfg.Problems) != 0 {
		t.Fatalf("problems %v", cfg.Problems)
	}
	got := map[string][]string{}
	for _, s := range cfg.Specs {
		for _, p := range s.Signatures {
			got[s.Name] = append(got[s.Name], p.Name)
		}
	}
	want := map[string]string{"develop-frontend": "release", "prod-frontend": "release,provenance", "sandbox-frontend": ""}
	for st, w := range want {
		if g := strings.Join(got[st], ","); g != w {
			t.Errorf("stage %s requires %q; want %q", st, g, w)
		}
	}
	if c := cfg.Specs[0].Signatures; len(c) == 0 || c[0].Cosign == nil || c[0].Cosign.Issuer == "" {
		t.Errorf("the policy's content is not carried: %+v", c)
	}
}

func TestDerive_UnusableSignaturePolicyIsAProblemAndTheStageDoesNotRun(t *testing.T) {
	tests := []struct {
		name string
		sigs SignaturePolicies
		ann  string
		want []string
	}{
		{"unknown policy", clusterPolicies(), "relase", []string{`names policy "relase", which --signature-policies /etc/kropipe/signature-policies.yaml does not define`, "did you mean release?"}},
		{"unknown policy, no similar one", clusterPolicies(), "notary", []string{`names policy "notary"`, "name one of offline, provenance, release"}},
		{"promoter without policies", SignaturePolicies{}, "release", []string{"the promoter has no signature policies", "--signature-policies", "ConfigMap kropipe-signature-policies"}},
		{"policy whose Secret is missing", clusterPolicies(), "release, offline", []string{`policy "offline" cannot be used, so the stage does not run: Secret argocd/cosign-keys does not exist`}},
		{"no names", clusterPolicies(), " , ", []string{"names no policy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := app("prod-frontend", "prod/frontend", map[string]string{AnnImage: img("frontend"), AnnVerifySignature: tt.ann})
			cfg := Derive([]*unstructured.Unstructured{a}, nil, WithSignaturePolicies(tt.sigs))
			if len(cfg.Specs) != 0 {
				t.Fatalf("a stage whose signature policy cannot be checked runs: %+v", cfg.Specs[0].Signatures)
			}
			if len(cfg.Problems) != 1 || cfg.Problems[0].Field != AnnVerifySignature {
				t.Fatalf("problems %+v; want one on %s", cfg.Problems, AnnVerifySignature)
			}
			for _, w := range tt.want {
				if !strings.Contains(cfg.Problems[0].Message, w) {
					t.Errorf("problem %q does not say %q", cfg.Problems[0].Message, w)
				}
			}
		})
	}
}

func TestDerive_GroupMembersMustAgreeOnVerifySignature(t *testing.T) {
	member := func(name, service, sig string) *unstructured.Unstructured {
		ann := map[string]string{AnnImage: img(service), AnnGroup: "shop", AnnFile: service + "/instance.yaml"}
		if sig != "" {
			ann[AnnVerifySignature] = sig
		}
		return app(name, "prod", ann)
	}
	tests := []struct {
		name       string
		a, b       string
		disagreeOn bool
	}{
		{"same policies", "release", "release", false},
		{"same policies in another order", "release, provenance", "provenance,release", false},
		{"one verifies nothing", "release", "", true},
		{"different policies", "release", "provenance", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Derive([]*unstructured.Unstructured{member("prod-backend", "backend", tt.a), member("prod-frontend", "frontend", tt.b)}, nil, WithSignaturePolicies(clusterPolicies()))
			if len(cfg.Groups) != 1 {
				t.Fatalf("groups %+v", cfg.Groups)
			}
			held := strings.Contains(cfg.Groups[0].Problem, "members disagree on "+AnnVerifySignature+":")
			if held != tt.disagreeOn {
				t.Fatalf("group problem %q; want disagreement on %s: %v", cfg.Groups[0].Problem, AnnVerifySignature, tt.disagreeOn)
			}
		})
	}
}
