package signature

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	provv02 "github.com/in-toto/attestation/go/predicates/provenance/v02"
	provv1 "github.com/in-toto/attestation/go/predicates/provenance/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// SLSA provenance predicate types this verifier reads.
const (
	slsaProvenanceV1  = "https://slsa.dev/provenance/v1"
	slsaProvenanceV02 = "https://slsa.dev/provenance/v0.2"
)

// provenanceCheck is a ProvenancePolicy with its regular expressions compiled.
type provenanceCheck struct {
	builder, source     string
	builderRe, sourceRe *regexp.Regexp
}

func newProvenanceCheck(policy string, pp *ProvenancePolicy) (*provenanceCheck, error) {
	pc := &provenanceCheck{builder: pp.BuilderID, source: pp.SourceRepository}
	var err error
	if pp.BuilderIDRegexp && pp.BuilderID != "" {
		if pc.builderRe, err = regexp.Compile(pp.BuilderID); err != nil {
			return nil, fmt.Errorf("signature policy %q: provenance builderID: %w", policy, err)
		}
	}
	if pp.SourceRepositoryRegexp && pp.SourceRepository != "" {
		if pc.sourceRe, err = regexp.Compile(pp.SourceRepository); err != nil {
			return nil, fmt.Errorf("signature policy %q: provenance sourceRepository: %w", policy, err)
		}
	}
	return pc, nil
}

// matches compares like cosign's --certificate-identity[-regexp]: exact, or an (unanchored)
// regular expression.
func matches(want string, re *regexp.Regexp, got string) bool {
	switch {
	case want == "":
		return true
	case re != nil:
		return re.MatchString(got)
	}
	return want == got || normalizeSource(want) == got
}

// want describes the provenance the policy asks for.
func (pc *provenanceCheck) want() string {
	var parts []string
	if pc.builder != "" {
		parts = append(parts, "builder "+pc.builder)
	}
	if pc.source != "" {
		parts = append(parts, "source "+pc.source)
	}
	if len(parts) == 0 {
		return "any builder"
	}
	return strings.Join(parts, ", ")
}

// verifyProvenance finds an SLSA provenance attestation over the digest, signed as the cosign
// policy says, whose builder and source match.
func (chk *cosignCheck) verifyProvenance(ctx context.Context, f *finder, d artifactDigest, pp *ProvenancePolicy) (*Provenance, error) {
	pc := chk.provenance
	if pc == nil { // a policy built without provenance is never asked; stay safe
		var err error
		if pc, err = newProvenanceCheck(chk.policy, pp); err != nil {
			return nil, err
		}
	}
	var cands []candidate
	bundles, err := f.referrerBundles(ctx)
	if err != nil {
		return nil, err
	}
	for _, fb := range bundles {
		if c, ok := bundleCandidate(fb, d); ok && isProvenance(c.predicateType) {
			cands = append(cands, c)
		}
	}
	layers, err := f.legacyLayers(ctx, ".att")
	if err != nil {
		return nil, err
	}
	var best *miss
	note := func(m *miss) {
		if best == nil || m.rank > best.rank {
			best = m
		}
	}
	for _, l := range layers {
		e, err := parseLegacyAttestation(l)
		if err != nil {
			note(&miss{rankUnreadable, fmt.Sprintf("attestation in %s unreadable: %v", l.from, err)})
			continue
		}
		st, err := (&bundle.Envelope{Envelope: e.envelope}).Statement()
		if err != nil {
			note(&miss{rankUnreadable, fmt.Sprintf("attestation in %s unreadable: %v", l.from, err)})
			continue
		}
		if !isProvenance(st.GetPredicateType()) {
			continue
		}
		c := candidate{entity: e, predicateType: st.GetPredicateType(), from: l.from,
			artifact: func() verify.ArtifactPolicyOption { return verify.WithArtifactDigest("sha256", d.raw) }}
		for _, s := range st.GetSubject() {
			if h, ok := s.GetDigest()["sha256"]; ok {
				c.names = append(c.names, "sha256:"+h)
			}
		}
		cands = append(cands, c)
	}
	head := fmt.Sprintf("no SLSA provenance by %s signed by %s", pc.want(), chk.want)
	if len(cands) == 0 && best == nil {
		return nil, &cosignError{head + " (the image has no provenance attestation)"}
	}
	for _, c := range cands {
		res, m := chk.try(c, d)
		if m != nil {
			note(m)
			continue
		}
		got, err := readProvenance(c.predicateType, res.Statement.GetPredicate())
		if err != nil {
			note(&miss{rankUnreadable, fmt.Sprintf("provenance in %s unreadable: %v", c.from, err)})
			continue
		}
		if !matches(pc.builder, pc.builderRe, got.Builder) {
			note(&miss{rankSigner, fmt.Sprintf("built by %s", orNone(got.Builder))})
			continue
		}
		if !matches(pc.source, pc.sourceRe, got.Source) {
			note(&miss{rankSigner, fmt.Sprintf("built from %s", orNone(got.Source))})
			continue
		}
		got.Digest = d.str
		return got, nil
	}
	return nil, &cosignError{head + ": " + best.why}
}

func orNone(s string) string {
	if s == "" {
		return "an unnamed one"
	}
	return s
}

func isProvenance(predicateType string) bool {
	return predicateType == slsaProvenanceV1 || predicateType == slsaProvenanceV02
}

// readProvenance reads the builder and source repository an SLSA predicate names. v1 leaves
// the source to the build type: GitHub's (actions/attest-build-provenance, slsa-github-
// generator) put it in externalParameters.workflow.repository; otherwise the first resolved
// dependency is the source checked out.
func readProvenance(predicateType string, pred *structpb.Struct) (*Provenance, error) {
	js, err := protojson.Marshal(pred)
	if err != nil {
		return nil, err
	}
	un := protojson.UnmarshalOptions{DiscardUnknown: true}
	switch predicateType {
	case slsaProvenanceV1:
		var p provv1.Provenance
		if err := un.Unmarshal(js, &p); err != nil {
			return nil, err
		}
		out := &Provenance{Builder: p.GetRunDetails().GetBuilder().GetId()}
		ext := p.GetBuildDefinition().GetExternalParameters().GetFields()
		if repo := ext["workflow"].GetStructValue().GetFields()["repository"].GetStringValue(); repo != "" {
			out.Source = normalizeSource(repo)
		} else if deps := p.GetBuildDefinition().GetResolvedDependencies(); len(deps) > 0 {
			out.Source = normalizeSource(deps[0].GetUri())
		}
		return out, nil
	case slsaProvenanceV02:
		var p provv02.Provenance
		if err := un.Unmarshal(js, &p); err != nil {
			return nil, err
		}
		out := &Provenance{Builder: p.GetBuilder().GetId()}
		if uri := p.GetInvocation().GetConfigSource().GetUri(); uri != "" {
			out.Source = normalizeSource(uri)
		} else if m := p.GetMaterials(); len(m) > 0 {
			out.Source = normalizeSource(m[0].GetUri())
		}
		return out, nil
	}
	return nil, fmt.Errorf("predicate type %s is not SLSA provenance", predicateType)
}

// normalizeSource turns "git+https://github.com/org/repo@refs/tags/v1" into
// "https://github.com/org/repo", the form a policy names a repository in.
func normalizeSource(uri string) string {
	uri = strings.TrimPrefix(uri, "git+")
	if i := strings.LastIndex(uri, "@"); i > strings.Index(uri, "://")+2 {
		uri = uri[:i]
	}
	return strings.TrimSuffix(uri, ".git")
}
