package gitwrite

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"
	"text/template"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/kropipe/kropipe/internal/promote/trailer"
	"github.com/kropipe/kropipe/internal/promote/yamledit"
)

// A release group's promotion is one commit changing every member's file: consecutive
// Changes of one Apply that carry the same Group are written together. Each member is
// still a one-line byte-exact edit; the commit lands whole or not at all, and it goes
// out in the same lease-protected push (and retries) as every other change.

// ErrSetIncomplete is wrapped in the Result of a group member that was not written
// because another member of its set could not be: a set lands whole or not at all.
var ErrSetIncomplete = errors.New("not written: another member of its set failed")

// SetMember is one member of a set as a subject template sees it.
type SetMember struct {
	Stage, Label, Old, New string
}

// SetSubjectData is what a group's subject template sees: .Name (the group's last
// path part, e.g. shop), .Group (develop/shop), .Kind (promote or rollback), .Members
// (every member in order) and .Changes ("frontend 1.2.1 → 1.2.2, backend 2.0.0 → 2.1.0":
// the members whose value changes).
type SetSubjectData struct {
	Name, Group, Kind, Changes string
	Members                    []SetMember
}

// DefaultSetSubject is the subject of a group's commit.
const DefaultSetSubject = `{{if eq .Kind "rollback"}}Roll back{{else}}Promote{{end}} {{.Name}}: {{.Changes}}`

// GroupName is the short name of a group for subjects: the part after the last slash
// (develop/shop → shop).
func GroupName(group string) string { return path.Base(group) }

// setEnd returns the index after the run of changes starting at i that share its Group.
func setEnd(results []Result, i int) int {
	j := i + 1
	for j < len(results) && results[j].Group == results[i].Group {
		j++
	}
	return j
}

// buildSet writes the members results[i:j] as one commit on head (whose tree is tree).
// When any member fails, none is written: the others get ErrSetIncomplete. When every
// member already holds its value the set is Skipped and nothing is committed.
func (r *Repo) buildSet(s *overlay, head, tree plumbing.Hash, set []Result, static []bool) (plumbing.Hash, plumbing.Hash, error) {
	files := map[string][]byte{} // edited so far, for two members in one file
	var order []string
	failed := ""
	var failure error
	for k := range set {
		res := &set[k]
		if static[k] {
			failed, failure = res.Stage, res.Err
			continue
		}
		res.Err, res.Old, res.Skipped, res.Commit = nil, "", false, ""
		c := res.Change
		data, ok := files[c.File]
		if !ok {
			var err error
			if data, err = readFile(s, tree, c.File); err != nil {
				res.Err = changeErr(c, err)
				failed, failure = c.Stage, res.Err
				continue
			}
		}
		old, err := yamledit.Get(data, c.Key)
		if err != nil {
			res.Err = changeErr(c, err)
			failed, failure = c.Stage, res.Err
			continue
		}
		res.Old = old
		if old == c.newValue() {
			res.Skipped = true
			continue
		}
		if c.Expect != "" && old != c.Expect {
			res.Err = changeErr(c, fmt.Errorf("%w: expected %q but the file holds %q", ErrConflict, c.Expect, old))
			failed, failure = c.Stage, res.Err
			continue
		}
		out, err := yamledit.Set(data, c.Key, c.newValue())
		if err != nil {
			res.Err = changeErr(c, err)
			failed, failure = c.Stage, res.Err
			continue
		}
		if !ok {
			order = append(order, c.File)
		}
		files[c.File] = out
	}
	if failure != nil {
		for k := range set {
			if set[k].Err == nil {
				set[k].Skipped = false
				set[k].Err = changeErr(set[k].Change, fmt.Errorf("%w: member %q of group %q: %v", ErrSetIncomplete, failed, set[k].Group, failure))
			}
		}
		return head, tree, nil
	}
	if len(order) == 0 {
		return head, tree, nil // every member already holds its value
	}
	msg, err := setMessage(set)
	if err != nil {
		for k := range set {
			set[k].Skipped = false
			set[k].Err = changeErr(set[k].Change, err)
		}
		return head, tree, nil
	}
	for _, f := range order {
		if tree, err = replaceFile(s, tree, strings.Split(f, "/"), files[f]); err != nil {
			return head, tree, err
		}
	}
	h, err := writeCommit(s, head, tree, msg, signature(r.o.authorName, r.o.authorEmail, r.o.clock.Now()), r.o.signer)
	if err != nil {
		return head, tree, err
	}
	for k := range set {
		if !set[k].Skipped {
			set[k].Commit = h.String() // provisional until the push lands
		}
	}
	return h, tree, nil
}

// setMessage renders a group commit: the subject, a line per member, and per member in
// order Kropipe-Stage, -Image, -Value, -Previous (then -Signed-By and -Provenance when it
// changes and its stage requires signatures, and -Rejected when a rollback changes it),
// then Kropipe-Group and Kropipe-Freight for the whole set.
func setMessage(set []Result) (string, error) {
	first := set[0].Change
	kind := first.Kind
	data := SetSubjectData{Name: GroupName(first.Group), Group: first.Group, Kind: kind.String()}
	var changes []string
	for _, res := range set {
		c := res.Change
		for _, f := range []struct{ name, v string }{{"stage", c.Stage}, {"image", c.ImageRef()}, {"value", c.newValue()}, {"previous value", res.Old}, {"group", c.Group}, {"freight", c.GroupFreight}, {"rejected value", c.Rejected}, {"requester", c.RequestedBy}} {
			if strings.ContainsAny(f.v, "\r\n\u0085\u2028\u2029") || strings.TrimSpace(f.v) != f.v {
				return "", fmt.Errorf("%w: the %s %q has a line break or surrounding space and cannot go into a commit trailer; correct it by hand", ErrInvalidChange, f.name, f.v)
			}
		}
		if err := c.checkSignatureTrailers(); err != nil {
			return "", err
		}
		label := c.Label
		if label == "" {
			label = c.Stage
		}
		data.Members = append(data.Members, SetMember{Stage: c.Stage, Label: label, Old: res.Old, New: c.newValue()})
		if !res.Skipped {
			changes = append(changes, fmt.Sprintf("%s %s → %s", label, orNone(res.Old), c.newValue()))
		}
	}
	data.Changes = strings.Join(changes, ", ")
	tmpl := first.SubjectTemplate
	if tmpl == "" {
		tmpl = DefaultSetSubject
	}
	t, err := template.New("subject").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("%w: subject template: %w", ErrInvalidChange, err)
	}
	var subj bytes.Buffer
	if err := t.Execute(&subj, data); err != nil {
		return "", fmt.Errorf("%w: subject template: %w", ErrInvalidChange, err)
	}

	var b strings.Builder
	b.WriteString(strings.TrimSpace(strings.ReplaceAll(subj.String(), "\n", " ")))
	b.WriteString("\n\n")
	verb := "promotes"
	if kind == Rollback {
		verb = "rolls back"
	}
	fmt.Fprintf(&b, "Group %s %s a set of %d, in one commit:\n", first.Group, verb, len(set))
	for _, res := range set {
		c := res.Change
		if res.Skipped {
			fmt.Fprintf(&b, "- %s keeps %s (%s in %s).\n", c.Stage, c.newValue(), c.Key, c.File)
			continue
		}
		fmt.Fprintf(&b, "- %s: %s in %s is set to %q (%s).\n", c.Stage, c.Key, c.File, c.newValue(), c.ImageRef())
	}
	b.WriteString("\n")
	for _, res := range set {
		c := res.Change
		fmt.Fprintf(&b, "%s: %s\n", trailer.Stage, c.Stage)
		if ref := c.ImageRef(); ref != "" {
			fmt.Fprintf(&b, "%s: %s\n", trailer.Image, ref)
		}
		fmt.Fprintf(&b, "%s: %s\n", trailer.Value, c.newValue())
		fmt.Fprintf(&b, "%s: %s\n", trailer.Previous, res.Old)
		if !res.Skipped {
			c.signatureTrailers(&b)
		}
		if kind == Rollback && !res.Skipped {
			rejected := c.Rejected
			if rejected == "" {
				rejected = res.Old
			}
			fmt.Fprintf(&b, "%s: %s\n", trailer.Rejected, rejected)
		}
	}
	fmt.Fprintf(&b, "%s: %s\n", trailer.Group, first.Group)
	if first.GroupFreight != "" {
		fmt.Fprintf(&b, "%s: %s\n", trailer.Freight, first.GroupFreight)
	}
	if first.RequestedBy != "" {
		fmt.Fprintf(&b, "%s: %s\n", trailer.RequestedBy, first.RequestedBy)
	}
	return b.String(), nil
}

func orNone(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}
