package argocd

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/suggest"
)

// AnnVerifySignature names, separated by commas, the signature policies every image the stage
// promotes must satisfy (all of them): policies defined in the promoter's own configuration
// (--signature-policies), never on the Application, so that whoever may annotate an
// Application cannot choose which key is trusted. A release group's members must agree on it.
const AnnVerifySignature = AnnotationPrefix + "verify-signature"

// SignaturePolicies are the policies kropipe.io/verify-signature can name: the promoter's
// --signature-policies, their key material read.
type SignaturePolicies struct {
	// Source says where they are defined, for messages, e.g. "--signature-policies
	// /etc/kropipe/signature-policies.yaml"; "" when the promoter has none.
	Source string
	// Policies are the usable ones, by name.
	Policies map[string]signature.Policy
	// Unusable are the policies whose key material could not be read or does not check, by
	// name: why, naming the Secret or file and what to do. A stage requiring one does not run.
	Unusable map[string]string
}

// DeriveOption configures Derive.
type DeriveOption func(*deriveOptions)

type deriveOptions struct {
	signatures SignaturePolicies
}

// WithSignaturePolicies gives Derive the policies kropipe.io/verify-signature may name;
// without it every name is unknown.
func WithSignaturePolicies(p SignaturePolicies) DeriveOption {
	return func(o *deriveOptions) { o.signatures = p }
}

// requiredSignatures reads kropipe.io/verify-signature: each name must be a usable policy of
// the promoter's configuration, else the stage has a Problem and does not run, so that it
// never promotes an image it was asked to verify unverified.
func requiredSignatures(v string, sigs SignaturePolicies, bad func(field, format string, args ...any)) []signature.Policy {
	var out []signature.Policy
	seen := map[string]bool{}
	for _, name := range commaList(v) {
		if seen[name] {
			continue
		}
		seen[name] = true
		if why, ok := sigs.Unusable[name]; ok {
			bad(AnnVerifySignature, "policy %q cannot be used, so the stage does not run: %s", name, why)
			continue
		}
		p, ok := sigs.Policies[name]
		if !ok {
			bad(AnnVerifySignature, "%s", unknownPolicy(name, sigs))
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 && len(seen) == 0 {
		bad(AnnVerifySignature, "is set but names no policy; list policy names of the promoter's --signature-policies separated by commas, e.g. release, or remove it")
	}
	return out
}

func unknownPolicy(name string, sigs SignaturePolicies) string {
	if sigs.Source == "" {
		return fmt.Sprintf("names policy %q, but the promoter has no signature policies, so the stage does not run; define it in the promoter's --signature-policies file (manifests/promoter mounts the ConfigMap kropipe-signature-policies there; the same shape as promoter.yaml's signaturePolicies)", name)
	}
	known := make([]string, 0, len(sigs.Policies)+len(sigs.Unusable))
	for n := range sigs.Policies {
		known = append(known, n)
	}
	for n := range sigs.Unusable {
		known = append(known, n)
	}
	slices.Sort(known)
	msg := fmt.Sprintf("names policy %q, which %s does not define, so the stage does not run; ", name, sigs.Source)
	if s := suggest.Closest(name, known); s != "" {
		return msg + fmt.Sprintf("did you mean %s?", s)
	}
	if len(known) == 0 {
		return msg + "define it there (the same shape as promoter.yaml's signaturePolicies)"
	}
	return msg + "define it there or name one of " + strings.Join(known, ", ")
}

// signatureSetting is a member's kropipe.io/verify-signature as a release group compares it:
// the names, sorted.
func signatureSetting(ann map[string]string) string {
	names := slices.Compact(slices.Sorted(slices.Values(commaList(ann[AnnVerifySignature]))))
	return strings.Join(names, ",")
}
