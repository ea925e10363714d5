package signature

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// NewVerifier is the verifier a stage's policies are checked with: each part of a policy goes
// to the verifier that reads it (Cosign and Provenance to cosign, Notation to notation) and
// every part must hold. Either may be nil when no policy needs it; a policy that does is then
// an error naming it.
func NewVerifier(cosign *Cosign, notation *Notation) Verifier {
	return &combined{cosign: cosign, notation: notation}
}

type combined struct {
	cosign   *Cosign
	notation *Notation
}

// Verify checks ref under every part of p; the Result names every signer (", " between
// them) and the provenance cosign checked.
func (v *combined) Verify(ctx context.Context, ref name.Digest, p Policy, opts ...remote.Option) (Result, error) {
	var out Result
	add := func(r Result) {
		if out.SignedBy != "" && r.SignedBy != "" {
			out.SignedBy += ", "
		}
		out.SignedBy += r.SignedBy
		if r.Provenance != nil {
			out.Provenance = r.Provenance
		}
	}
	if p.Cosign == nil && p.Notation == nil {
		return Result{}, fmt.Errorf("signature policy %q requires nothing: give it a cosign (key or keyless) or a notation section; a provenance attestation is checked under the cosign section's signer", p.Name)
	}
	if p.Cosign != nil {
		if v.cosign == nil {
			return Result{}, fmt.Errorf("signature policy %q needs cosign verification, which this promoter was started without", p.Name)
		}
		r, err := v.cosign.Verify(ctx, ref, p, opts...)
		if err != nil {
			return Result{}, err
		}
		add(r)
	}
	if p.Notation != nil {
		if v.notation == nil {
			return Result{}, fmt.Errorf("signature policy %q needs Notation verification, which this promoter was started without", p.Name)
		}
		r, err := v.notation.Verify(ctx, ref, p, opts...)
		if err != nil {
			return Result{}, err
		}
		add(r)
	}
	return out, nil
}
