package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
)

const gha = "https://token.actions.githubusercontent.com"

func TestParse_SignaturePoliciesByNameAndInPlace(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cosign.pub")
	pem := signaturetest.NewKey(t, "ecdsa").PEM
	if err := os.WriteFile(key, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(`git: {url: "https://git.example.com/org/gitops.git"}
signaturePolicies:
  release:
    cosign:
      identityRegexp: ^https://github.com/org/frontend/\.github/workflows/release\.yml@refs/tags/
      issuer: `+gha+`
    provenance: {sourceRepository: https://github.com/org/frontend}
stages:
  - name: prod-frontend
    image: r.example.com/frontend
    signature:
      - release
      - name: offline
        cosign: {key: `+key+`, requireTlog: true}
      - cosign: {key: `+key+`}
  - {name: dev-frontend, image: r.example.com/frontend, file: dev.yaml}
`), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prod, dev := cfg.Stages[0], cfg.Stages[1]
	if len(prod.Signatures) != 3 || len(dev.Signatures) != 0 {
		t.Fatalf("signatures: prod %+v, dev %+v", prod.Signatures, dev.Signatures)
	}
	rel, off := prod.Signatures[0], prod.Signatures[1]
	if rel.Name != "release" || rel.Cosign.Issuer != gha || rel.Provenance == nil || rel.Provenance.SourceRepository != "https://github.com/org/frontend" {
		t.Errorf("release policy %+v", rel)
	}
	if unnamed := prod.Signatures[2]; unnamed.Name != "prod-frontend/signature[2]" {
		t.Errorf("a policy written in place without a name is named %q; want it named after its place", unnamed.Name)
	}
	if off.Name != "offline" || !bytes.Equal(off.Cosign.PublicKey, pem) || off.Cosign.KeyRef != key || !off.Cosign.RequireTlog {
		t.Errorf("offline policy %+v", off.Cosign)
	}
	if _, ok := cfg.SignaturePolicies["release"]; !ok {
		t.Errorf("SignaturePolicies %v", cfg.SignaturePolicies)
	}
}

func TestParse_BadSignaturePolicyNamesFileLineStageFieldAndFix(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not-a-key.pub")
	if err := os.WriteFile(notKey, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	stage := func(sig string) string {
		return head + "  - name: prod\n    image: r.example.com/a\n    signature:\n" + sig
	}
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown cosign field", stage("      - cosign: {identity: x, isuser: y}\n"),
			[]string{":6:", `stage "prod": signature[0]: cosign: unknown field "isuser"; did you mean "issuer"?`}},
		{"unknown policy field", stage("      - cosing: {key: k}\n"),
			[]string{":6:", `unknown field "cosing"; did you mean "cosign"?`}},
		{"identity without issuer", stage("      - cosign:\n          identity: https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1\n"),
			[]string{`stage "prod": signature[0]: cosign.issuer: is missing`, "issuer: https://token.actions.githubusercontent.com"}},
		{"key and identity", stage("      - cosign: {key: " + notKey + ", identity: x, issuer: y}\n"),
			[]string{`signature[0]: cosign.key: is given together with a keyless identity`}},
		{"regexp that does not compile, on its line", stage("      - cosign:\n          issuer: x\n          identityRegexp: \"(\"\n"),
			[]string{":8:", `cosign.identityRegexp: "(" is not a regular expression`}},
		{"key file missing", stage("      - cosign: {key: " + filepath.Join(dir, "missing.pub") + "}\n"),
			[]string{":6:", "signature[0]: cosign: key: open", "give the path of a file holding the PEM public key"}},
		{"key file not a key", stage("      - cosign: {key: " + notKey + "}\n"),
			[]string{"signature[0]: cosign.key:", notKey}},
		{"secret reference in local mode", stage("      - cosign: {key: 'secret:cosign/cosign.pub'}\n"),
			[]string{"Secrets are read in the cluster only; give the path of a file"}},
		{"notation without trust store", stage("      - notation: {trustedIdentities: ['*']}\n"),
			[]string{"signature[0]: notation.trustStore: is missing"}},
		{"provenance without builder or source", stage("      - cosign: {identity: x, issuer: y}\n        provenance: {builderIDRegexp: true}\n"),
			[]string{"signature[0]: provenance: needs builderID or sourceRepository"}},
		{"unknown policy name", "signaturePolicies:\n  release: {cosign: {identity: x, issuer: y}}\n" + stage("      - relase\n"),
			[]string{":8:", `signature[0]: "relase" is not a policy of signaturePolicies; did you mean "release"?`}},
		{"unknown policy name, none similar", "signaturePolicies:\n  release: {cosign: {identity: x, issuer: y}}\n  notary: {notation: {trustStore: " + notKey + ", trustedIdentities: ['*']}}\n" + stage("      - offline\n"),
			[]string{`"offline" is not a policy of signaturePolicies; defined are notary, release`}},
		{"name without signaturePolicies", stage("      - release\n"),
			[]string{`"release" is not a policy of signaturePolicies; define it under signaturePolicies:`}},
		{"signature not a list", head + "  - {name: prod, image: r.example.com/a, signature: release}\n",
			[]string{`stage "prod": signature must be a list`, "signature: [release]"}},
		{"bad top-level policy", "signaturePolicies:\n  release:\n    cosign: {identity: x}\n" + stage("      - release\n"),
			[]string{":3:", `signature policy "release": cosign.issuer: is missing`}},
		{"name field in a top-level policy", "signaturePolicies:\n  release: {name: r, cosign: {identity: x, issuer: y}}\n" + stage("      - release\n"),
			[]string{`signature policy "release": unknown field "name"`}},
		{"policy name with a comma", "signaturePolicies:\n  'a,b': {cosign: {identity: x, issuer: y}}\n" + stage("      - release\n"),
			[]string{`signature policy "a,b": a policy name must have no comma`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "promoter.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "promoter.yaml:") {
				t.Errorf("error %q does not start with the file name", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseSignaturePolicies_NamesSecretsChecksTheRestAtStart(t *testing.T) {
	pols, err := ParseSignaturePolicies([]byte(`release:
  cosign: {key: "secret:cosign-keys/cosign.pub", trustedRoot: /etc/kropipe/trusted_root.json}
notary:
  notation: {trustStore: "secret:notation-ca/ca.pem", trustedIdentities: ["*"]}
`), "/etc/kropipe/signature-policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c := pols["release"].Cosign; c == nil || c.KeyRef != "secret:cosign-keys/cosign.pub" || c.PublicKey != nil || c.TrustedRootRef != "/etc/kropipe/trusted_root.json" {
		t.Errorf("release %+v", c)
	}
	if n := pols["notary"].Notation; n == nil || n.TrustStoreRef != "secret:notation-ca/ca.pem" || pols["notary"].Name != "notary" {
		t.Errorf("notary %+v", pols["notary"])
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"identity without issuer", "release: {cosign: {identity: x}}\n", `policies.yaml:1: signature policy "release": cosign.issuer: is missing`},
		{"secret without key", "release: {cosign: {key: 'secret:cosign-keys'}}\n", `key "secret:cosign-keys" names no Secret key; write secret:<Secret name>/<key>`},
		{"unknown field", "release: {cosign: {identity: x, issuer: y, ignoreTLog: true}}\n", `did you mean "ignoreTlog"?`},
		{"not a mapping", "- release\n", "expected a mapping of policy names to policies"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSignaturePolicies([]byte(tt.yaml), "policies.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want it to contain %q", err, tt.want)
			}
		})
	}
}
