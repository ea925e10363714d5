package freight

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Member is one member of a release group's set: the stage, the freight it runs in
// the set and the value that freight writes to the stage's file.
type Member struct {
	Stage   string
	Freight Freight
	Value   string
}

// Set is a release group's freight: one member per stage of the group, in member order.
// Its members move together: promoted in one commit, verified together, taken together
// downstream.
type Set []Member

// ID is a short hex id over every member's stage, image and value, in order: the same
// versions of the same stages are the same set, whenever and however often found.
func (s Set) ID() string {
	h := sha256.New()
	for _, m := range s {
		for _, part := range []string{m.Stage, m.Freight.Image, m.Value} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Value is the set as one string, "stage=value" pairs in member order separated by
// ", ": what the group's records, approvals and verifications hold.
func (s Set) Value() string {
	parts := make([]string, len(s))
	for i, m := range s {
		parts[i] = m.Stage + "=" + m.Value
	}
	return strings.Join(parts, ", ")
}
