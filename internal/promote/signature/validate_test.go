package signature

import (
	"errors"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
)

func TestPolicyValidate_NamesTheFieldAndWhatToWrite(t *testing.T) {
	key := signaturetest.NewKey(t, "ecdsa").PEM
	auth := signaturetest.NewAuthority(t)
	ca := newNotationCA(t, "release CA")
	const gha = "https://token.actions.githubusercontent.com"
	keyless := func(edit func(*CosignPolicy)) Policy {
		cp := &CosignPolicy{IdentityRegexp: "^https://github.com/org/repo/", Issuer: gha}
		edit(cp)
		return Policy{Name: "release", Cosign: cp}
	}
	tests := []struct {
		name   string
		policy Policy
		want   []string // "field: words" of each problem; none: valid
	}{
		{name: "cosign key", policy: Policy{Cosign: &CosignPolicy{PublicKey: key, KeyRef: "cosign.pub"}}},
		{name: "cosign keyless on a private trusted root", policy: keyless(func(c *CosignPolicy) { c.TrustedRoot = auth.TrustedRoot })},
		{name: "cosign keyless with provenance", policy: Policy{Cosign: &CosignPolicy{Identity: "x", Issuer: gha}, Provenance: &ProvenancePolicy{SourceRepository: "^https://github.com/org/", SourceRepositoryRegexp: true}}},
		{name: "notation", policy: Policy{Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}},
		{name: "empty policy", policy: Policy{}, want: []string{": gives neither cosign nor notation"}},
		{name: "cosign and notation", policy: Policy{Cosign: &CosignPolicy{PublicKey: key}, Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}}, want: []string{"notation: is given together with cosign"}},
		{name: "cosign with nothing", policy: Policy{Cosign: &CosignPolicy{}}, want: []string{"cosign: needs key"}},
		{name: "key and identity", policy: Policy{Cosign: &CosignPolicy{PublicKey: key, Identity: "x", Issuer: gha}}, want: []string{"cosign.key: is given together with a keyless identity"}},
		{name: "key file empty", policy: Policy{Cosign: &CosignPolicy{KeyRef: "keys/cosign.pub"}}, want: []string{"cosign.key: keys/cosign.pub is empty"}},
		{name: "key that does not parse", policy: Policy{Name: "release", Cosign: &CosignPolicy{PublicKey: []byte("not a key"), KeyRef: "cosign.pub"}}, want: []string{"cosign.key: signature policy \"release\": public key cosign.pub"}},
		{name: "identity without issuer", policy: keyless(func(c *CosignPolicy) { c.Issuer = "" }), want: []string{"cosign.issuer: is missing; keyless signatures need both identity and issuer"}},
		{name: "issuer without identity", policy: keyless(func(c *CosignPolicy) { c.IdentityRegexp = "" }), want: []string{"cosign.identity: is missing"}},
		{name: "identity exact and regexp", policy: keyless(func(c *CosignPolicy) { c.Identity = "x" }), want: []string{"cosign.identityRegexp: is given together with identity"}},
		{name: "identity regexp that does not compile", policy: keyless(func(c *CosignPolicy) { c.IdentityRegexp = "^(https" }), want: []string{`cosign.identityRegexp: "^(https" is not a regular expression`}},
		{name: "issuer regexp that does not compile", policy: keyless(func(c *CosignPolicy) { c.Issuer, c.IssuerRegexp = "", "[" }), want: []string{`cosign.issuerRegexp: "[" is not a regular expression`}},
		{name: "trusted root that does not parse", policy: keyless(func(c *CosignPolicy) { c.TrustedRoot, c.TrustedRootRef = []byte("{}"), "root.json" }), want: []string{"cosign.trustedRoot: root.json is not a Sigstore trusted_root.json"}},
		{name: "notation without trust store", policy: Policy{Notation: &NotationPolicy{TrustStoreRef: "ca.pem", TrustedIdentities: []string{"*"}}}, want: []string{"notation.trustStore: ca.pem is empty"}},
		{name: "notation without identities", policy: Policy{Notation: &NotationPolicy{TrustStore: ca.pem()}}, want: []string{"notation.trustedIdentities: is empty"}},
		{name: "notation store without certificates", policy: Policy{Notation: &NotationPolicy{TrustStore: key, TrustStoreRef: "ca.pem", TrustedIdentities: []string{"*"}}}, want: []string{"notation: notation policy: trust store ca.pem: no PEM certificate"}},
		{name: "provenance without cosign", policy: Policy{Notation: &NotationPolicy{TrustStore: ca.pem(), TrustedIdentities: []string{"*"}}, Provenance: &ProvenancePolicy{BuilderID: "b"}}, want: []string{"provenance: needs cosign"}},
		{name: "provenance with nothing", policy: Policy{Cosign: &CosignPolicy{PublicKey: key}, Provenance: &ProvenancePolicy{}}, want: []string{"provenance: needs builderID or sourceRepository"}},
		{name: "provenance regexp that does not compile", policy: Policy{Cosign: &CosignPolicy{PublicKey: key}, Provenance: &ProvenancePolicy{BuilderID: "(", BuilderIDRegexp: true}}, want: []string{`provenance.builderID: "(" is not a regular expression`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			var got []string
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("problem %v is not a *FieldError", e)
					}
					got = append(got, fe.Field+": "+fe.Msg)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %v; want %d problems %q", err, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q; want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}
