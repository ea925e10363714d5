package gitwrite

import (
	"fmt"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/trailer"
)

// recordsFrom reads a commit's kropipe trailers: none for a commit that has none, one
// Record for a stage's commit, and for a group's commit (Kropipe-Group) a Record per
// member plus one for the group. A member the commit left at its value gets a Kept
// record: the commit is still where its set was placed, which the health gate syncs
// and verifies it at.
func recordsFrom(hash string, when time.Time, msg string) ([]Record, error) {
	if !strings.Contains(msg, trailer.Group) {
		rec, ok, err := recordFrom(hash, when, msg)
		if !ok || err != nil {
			return nil, err
		}
		return []Record{rec}, nil
	}
	var (
		group, freight, by string
		members            []MemberRecord
		seen               map[string]bool // keys of the current member
	)
	for _, t := range trailer.Parse(msg) {
		if !strings.HasPrefix(t.Key, trailer.Prefix) {
			continue
		}
		switch t.Key {
		case trailer.Group, trailer.Freight, trailer.RequestedBy:
			v := &group
			switch t.Key {
			case trailer.Freight:
				v = &freight
			case trailer.RequestedBy:
				v = &by
			}
			if *v != "" {
				return nil, fmt.Errorf("trailer %s appears twice", t.Key)
			}
			*v = t.Value
			continue
		case trailer.Stage:
			members = append(members, MemberRecord{Stage: t.Value})
			seen = map[string]bool{}
			continue
		}
		if len(members) == 0 {
			return nil, fmt.Errorf("trailer %s comes before the first %s", t.Key, trailer.Stage)
		}
		if m := &members[len(members)-1]; addSignature(t, &m.SignedBy, &m.Provenance) {
			continue
		}
		if seen[t.Key] {
			return nil, fmt.Errorf("trailer %s appears twice for member %s", t.Key, members[len(members)-1].Stage)
		}
		seen[t.Key] = true
		m := &members[len(members)-1]
		switch t.Key {
		case trailer.Image:
			m.Image = t.Value
		case trailer.Value:
			m.Value = t.Value
		case trailer.Previous:
			m.Previous = t.Value
		case trailer.Rejected:
			m.Rejected = t.Value
		}
	}
	if group == "" || len(members) == 0 {
		return nil, fmt.Errorf("a %s trailer without members", trailer.Group)
	}
	subject, _, _ := strings.Cut(msg, "\n")
	kind := Promote
	for _, m := range members {
		if m.Rejected != "" {
			kind = Rollback
		}
	}
	values, previous := make([]string, len(members)), make([]string, len(members))
	var rejected []string
	out := make([]Record, 0, len(members)+1)
	for i, m := range members {
		values[i], previous[i] = m.Stage+"="+m.Value, m.Stage+"="+m.Previous
		if m.Rejected != "" {
			rejected = append(rejected, m.Stage+"="+m.Rejected)
		}
		out = append(out, Record{
			Commit: hash, Time: when, Subject: subject, Kind: kind, Stage: m.Stage,
			Image: m.Image, Value: m.Value, Previous: m.Previous, Freight: freight,
			Rejected: m.Rejected, Group: group, Kept: m.Value == m.Previous,
			SignedBy: m.SignedBy, Provenance: m.Provenance, RequestedBy: by,
		})
	}
	out = append(out, Record{
		Commit: hash, Time: when, Subject: subject, Kind: kind, Stage: group,
		Value: SetValue(values), Previous: SetValue(previous), Freight: freight,
		Rejected: SetValue(rejected), Group: group, Members: members, RequestedBy: by,
	})
	return out, nil
}

// SetValue is how a set of member values reads as one value: "stage=value" pairs in
// member order, separated by ", ".
func SetValue(pairs []string) string { return strings.Join(pairs, ", ") }
