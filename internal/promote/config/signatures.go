package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/suggest"
)

// SecretRefPrefix marks key material kept in a Secret of the promoter's namespace
// (secret:<name>/<key>), in a --signature-policies file only: the controller reads it with
// its own client; promoter.yaml names files.
const SecretRefPrefix = "secret:"

// Signature policies are written the same way in promoter.yaml's signaturePolicies: and in
// the cluster's --signature-policies file: a mapping of policy names to policies. A stage's
// signature: is a list whose entries are a name from signaturePolicies or a policy written in
// place (with an optional name:).
var (
	policyFields     = fieldNames(policyPath)
	inlinePolicy     = append(fieldNames("stages[].signature[]"), policyFields...)
	cosignFields     = fieldNames(policyPath + ".cosign")
	notationFields   = fieldNames(policyPath + ".notation")
	provenanceFields = fieldNames(policyPath + ".provenance")
)

// materialFields are the policy fields whose problems depend on key material a
// --signature-policies file only names: they are checked once the controller read it.
var materialFields = map[string]bool{"cosign.key": true, "cosign.trustedRoot": true, "notation.trustStore": true, "notation": true}

// ParseSignaturePolicies reads a --signature-policies file (the cluster's): a mapping of policy
// names to policies, as promoter.yaml's signaturePolicies: takes them. Key material is not
// read: the KeyRef, TrustedRootRef and TrustStoreRef fields name a Secret of the promoter's
// namespace (secret:<name>/<key>) or a file, for the controller to read. Everything that does
// not depend on that material is checked here, so a policy that cannot work stops the promoter
// at start, naming file, line and field.
func ParseSignaturePolicies(data []byte, file string) (map[string]signature.Policy, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil, &Error{File: file, Err: fmt.Errorf("not valid YAML: %w", err)}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{File: file, Err: errors.New("expected a mapping of policy names to policies, e.g. release: {cosign: {identityRegexp: ..., issuer: ...}}")}
	}
	p := &parser{file: file, refsOnly: true}
	pols := p.signaturePolicies(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return pols, nil
}

// signaturePolicies reads a mapping of policy names to policies.
func (p *parser) signaturePolicies(n *yaml.Node) map[string]signature.Policy {
	out := map[string]signature.Policy{}
	if n.Kind != yaml.MappingNode {
		p.fail(n, "signaturePolicies: expected a mapping of policy names to policies, e.g. release: {cosign: {key: cosign.pub}}")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if strings.TrimSpace(name) == "" || strings.ContainsAny(name, ", \t") {
			p.fail(k, "signature policy %q: a policy name must have no comma or space (stages list them separated by commas)", name)
			continue
		}
		if _, dup := out[name]; dup {
			p.fail(k, "signature policy %q is defined twice", name)
		}
		out[name] = p.signaturePolicy(v, fmt.Sprintf("signature policy %q", name), name, policyFields)
	}
	return out
}

// stageSignatures reads a stage's signature: list.
func (p *parser) stageSignatures(n *yaml.Node, where, stageName string, defined map[string]signature.Policy) []signature.Policy {
	if n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "%s: signature must be a list of policies, each a name from signaturePolicies or a policy written in place, e.g. signature: [release]", where)
		return nil
	}
	var out []signature.Policy
	for i, e := range n.Content {
		at := fmt.Sprintf("%s: signature[%d]", where, i)
		if e.Kind == yaml.ScalarNode {
			pol, ok := defined[e.Value]
			if !ok {
				p.fail(e, "%s: %q is not a policy of signaturePolicies; %s", at, e.Value, knownPolicies(e.Value, defined))
				continue
			}
			out = append(out, pol)
			continue
		}
		// A policy written in place is named for messages and the verifiers' cache after its
		// place, unless it has a name.
		name := fmt.Sprintf("%s/signature[%d]", stageName, i)
		if e.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(e.Content); j += 2 {
				if e.Content[j].Value == "name" {
					name = e.Content[j+1].Value
				}
			}
		}
		out = append(out, p.signaturePolicy(e, at, name, inlinePolicy))
	}
	return out
}

func knownPolicies(name string, defined map[string]signature.Policy) string {
	if len(defined) == 0 {
		return "define it under signaturePolicies: at the top level, or write the policy in place, e.g. - cosign: {key: cosign.pub}"
	}
	names := make([]string, 0, len(defined))
	for n := range defined {
		names = append(names, n)
	}
	sort.Strings(names)
	if s := suggest.Closest(name, names); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	return "defined are " + strings.Join(names, ", ")
}

// signaturePolicy reads one policy; where names it in messages.
func (p *parser) signaturePolicy(n *yaml.Node, where, name string, known []string) signature.Policy {
	m := p.fields(n, where, known...)
	pol := signature.Policy{Name: name}
	if _, ok := m["name"]; ok {
		pol.Name = p.str(m, "name", where)
	}
	before := len(p.errs)
	if c, ok := m["cosign"]; ok {
		w := where + ": cosign"
		cm := p.fields(c, w, cosignFields...)
		cp := &signature.CosignPolicy{
			Identity: p.str(cm, "identity", w), IdentityRegexp: p.str(cm, "identityRegexp", w),
			Issuer: p.str(cm, "issuer", w), IssuerRegexp: p.str(cm, "issuerRegexp", w),
			IgnoreTlog: p.boolean(cm, "ignoreTlog", w, false), IgnoreTimestamps: p.boolean(cm, "ignoreTimestamps", w, false),
			RequireTlog: p.boolean(cm, "requireTlog", w, false),
		}
		cp.KeyRef, cp.PublicKey = p.material(cm, "key", w, "the PEM public key the images are signed with (cosign.pub)")
		cp.TrustedRootRef, cp.TrustedRoot = p.material(cm, "trustedRoot", w, "a Sigstore trusted_root.json")
		pol.Cosign = cp
	}
	if nn, ok := m["notation"]; ok {
		w := where + ": notation"
		nm := p.fields(nn, w, notationFields...)
		np := &signature.NotationPolicy{}
		np.TrustStoreRef, np.TrustStore = p.material(nm, "trustStore", w, "a file of the PEM CA certificates signatures must chain to")
		for _, id := range p.list(nm, "trustedIdentities", w) {
			if id.Kind != yaml.ScalarNode {
				p.fail(id, `%s: trustedIdentities must be a list of certificate subjects, e.g. ["x509.subject: C=US, O=Example, CN=release"] or ["*"]`, w)
				continue
			}
			np.TrustedIdentities = append(np.TrustedIdentities, id.Value)
		}
		pol.Notation = np
	}
	if pn, ok := m["provenance"]; ok {
		w := where + ": provenance"
		pm := p.fields(pn, w, provenanceFields...)
		pol.Provenance = &signature.ProvenancePolicy{
			BuilderID: p.str(pm, "builderID", w), BuilderIDRegexp: p.boolean(pm, "builderIDRegexp", w, false),
			SourceRepository: p.str(pm, "sourceRepository", w), SourceRepositoryRegexp: p.boolean(pm, "sourceRepositoryRegexp", w, false),
		}
	}
	if len(p.errs) > before {
		return pol // the fields' own problems first
	}
	if err := pol.Validate(); err != nil {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *signature.FieldError
			if !errors.As(e, &fe) {
				p.fail(n, "%s: %v", where, e)
				continue
			}
			if p.refsOnly && materialFields[fe.Field] {
				continue // read and checked by the controller
			}
			p.fail(fieldNode(n, fe.Field), "%s", strings.TrimSuffix(where+": "+fe.Field, ": ")+": "+fe.Msg)
		}
	}
	return pol
}

// material reads a key, trusted root or trust store field: in promoter.yaml, the file it
// names, read now; in a --signature-policies file, only the name (a file or secret:<name>/<key>).
func (p *parser) material(m map[string]*yaml.Node, key, where, what string) (ref string, data []byte) {
	ref = p.str(m, key, where)
	if ref == "" {
		return "", nil
	}
	secret, isSecret := strings.CutPrefix(ref, SecretRefPrefix)
	if p.refsOnly {
		if isSecret {
			if name, k, ok := strings.Cut(secret, "/"); !ok || name == "" || k == "" {
				p.fail(m[key], "%s: %s %q names no Secret key; write secret:<Secret name>/<key>, e.g. secret:cosign-keys/cosign.pub, for %s", where, key, ref, what)
			}
		}
		return ref, nil
	}
	if isSecret {
		p.fail(m[key], "%s: %s %q: Secrets are read in the cluster only; give the path of a file holding %s", where, key, ref, what)
		return ref, nil
	}
	b, err := os.ReadFile(ref)
	if err != nil {
		p.fail(m[key], "%s: %s: %v; give the path of a file holding %s", where, key, err, what)
		return ref, nil
	}
	return ref, b
}

// fieldNode finds the node of a dotted policy field (cosign.identity) under a policy's node,
// for the line of a message; the policy's own node when it is absent.
func fieldNode(n *yaml.Node, dotted string) *yaml.Node {
	cur := n
	for _, part := range strings.Split(dotted, ".") {
		if part == "" || cur.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == part {
				cur, found = cur.Content[i+1], true
				break
			}
		}
		if !found {
			break
		}
	}
	return cur
}
