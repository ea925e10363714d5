package stage

import "context"

// Attestations are what the State remembers of a stage (or release group) beyond Git: the
// freight verified there and the values approved for it, oldest first, as many as the State
// keeps. The pipeline page's freight page reads them to say where a version was verified and
// approved, and when.
type Attestations struct {
	Verifications []Verification `json:"verifications"`
	Approvals     []Approval     `json:"approvals"`
}

// Attestations returns stage's attestations; a stage never verified or approved has none.
func (e *Engine) Attestations(ctx context.Context, stage string) (Attestations, error) {
	st, err := e.store.Load(ctx)
	if err != nil {
		return Attestations{}, err
	}
	return Attestations{
		Verifications: append([]Verification(nil), st.Verifications[stage]...),
		Approvals:     append([]Approval(nil), st.Approvals[stage]...),
	}, nil
}
