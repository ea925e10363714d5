package gitwrite

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"text/template"
	"unicode"

	"github.com/kropipe/kropipe/internal/promote/trailer"
	"github.com/kropipe/kropipe/internal/promote/yamledit"
)

// Kind says whether a change promotes new freight or rolls a stage back.
type Kind int

const (
	Promote Kind = iota
	Rollback
)

func (k Kind) String() string {
	if k == Rollback {
		return "rollback"
	}
	return "promote"
}

// LogValue logs a Kind in words: JSON logs would otherwise show its number.
func (k Kind) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Default subjects. Templates see the Change's fields plus .Old and .New.
const (
	DefaultPromoteSubject  = "Promote image from {{.Old}} to {{.New}}"
	DefaultRollbackSubject = "Roll back image from {{.Old}} to {{.New}}"
)

// Change is one value to write for one stage: one commit.
type Change struct {
	Stage string // the stage name; required, goes into the Kropipe-Stage trailer
	File  string // path inside the repository, "/"-separated, e.g. develop/frontend/instance.yaml
	Key   string // dotted YAML key path, e.g. spec.values.deployment.tag

	Image  string // repository, e.g. registry.example.com/team/frontend
	Tag    string
	Digest string // sha256:…, optional
	// Value is what is written at Key; empty means Tag.
	Value string
	// FreightID identifies the freight being promoted (Kropipe-Freight trailer).
	FreightID string

	Kind Kind
	// Rejected is, for a rollback, the value being rolled back from (Kropipe-Rejected
	// trailer); empty means the value the file held.
	Rejected string
	// Expect, when set, makes the change a compare-and-swap: it is applied only if the
	// file holds Expect (or already holds Value). A human's edit that landed meanwhile
	// then fails the change (ErrConflict) instead of being overwritten.
	Expect string
	// RequestedBy names who asked for a manual change (Kropipe-Requested-By trailer); ""
	// for an automatic one. A group's commit takes its first member's.
	RequestedBy string
	// SubjectTemplate overrides the commit subject (Go text/template); for a group's
	// set, the first member's is used and sees SetSubjectData.
	SubjectTemplate string

	// Group, when set, names the release group the change is a member of: consecutive
	// changes with the same Group are written as one commit (see set.go).
	Group string
	// GroupFreight is the set's id, the commit's one Kropipe-Freight trailer.
	GroupFreight string
	// Label is the member's name in the set's subject (frontend); empty means Stage.
	Label string

	// SignedBy are who signed the digest, one per signature policy the stage requires
	// (Kropipe-Signed-By trailers); Provenance what built it, per policy that checked an
	// attestation (Kropipe-Provenance trailers). Empty for a stage without policies.
	SignedBy   []string
	Provenance []Provenance
}

// Provenance is what an SLSA provenance attestation said about a promoted digest.
type Provenance struct {
	Builder, Source, Digest string
}

// String is the Kropipe-Provenance trailer's value: builder=<id> source=<repository> digest=<digest>.
func (p Provenance) String() string {
	return fmt.Sprintf("builder=%s source=%s digest=%s", p.Builder, p.Source, p.Digest)
}

// ParseProvenance reads a Kropipe-Provenance value back; ok is false when it is not one.
func ParseProvenance(v string) (Provenance, bool) {
	var p Provenance
	fields := strings.Fields(v)
	if len(fields) != 3 {
		return Provenance{}, false
	}
	for i, dst := range []*string{&p.Builder, &p.Source, &p.Digest} {
		key, val, ok := strings.Cut(fields[i], "=")
		if !ok || key != [...]string{"builder", "source", "digest"}[i] {
			return Provenance{}, false
		}
		*dst = val
	}
	return p, true
}

// signatureTrailers writes the change's Kropipe-Signed-By and Kropipe-Provenance lines.
func (c Change) signatureTrailers(b *strings.Builder) {
	for _, s := range c.SignedBy {
		fmt.Fprintf(b, "%s: %s\n", trailer.SignedBy, s)
	}
	for _, p := range c.Provenance {
		fmt.Fprintf(b, "%s: %s\n", trailer.Provenance, p)
	}
}

// checkSignatureTrailers refuses signer and provenance values that would not read back as
// written: a line break would end the trailer block (a certificate's identity is whatever
// its issuer put in it), white space inside a provenance part would split it.
func (c Change) checkSignatureTrailers() error {
	for _, s := range c.SignedBy {
		if s == "" || strings.ContainsAny(s, "\r\n\u0085\u2028\u2029") || strings.TrimSpace(s) != s {
			return fmt.Errorf("%w: the signer %q of stage %s cannot go into a commit trailer (empty, a line break or surrounding space)", ErrInvalidChange, s, c.Stage)
		}
	}
	for _, p := range c.Provenance {
		for _, v := range []string{p.Builder, p.Source, p.Digest} {
			if v == "" || strings.IndexFunc(v, unicode.IsSpace) >= 0 {
				return fmt.Errorf("%w: the provenance %q of stage %s cannot go into a commit trailer (an empty part, or white space in one)", ErrInvalidChange, p.String(), c.Stage)
			}
		}
	}
	return nil
}

// newValue is what the change writes.
func (c Change) newValue() string {
	if c.Value != "" {
		return c.Value
	}
	return c.Tag
}

// ImageRef is repo:tag@digest with the empty parts left out.
func (c Change) ImageRef() string {
	ref := c.Image
	if c.Tag != "" {
		ref += ":" + c.Tag
	}
	if c.Digest != "" {
		ref += "@" + c.Digest
	}
	return ref
}

// Result reports what happened to one Change.
type Result struct {
	Change
	Old     string // the value the file held before
	New     string // the value written
	Commit  string // the pushed commit; empty when Skipped or failed
	Skipped bool   // the file already held the value: nothing to commit
	Err     error  // why this change was not applied
}

// Errors for errors.Is.
var (
	ErrInvalidChange = errors.New("invalid change")
	ErrPathEscapes   = errors.New("file path leaves the repository")
	ErrFileNotFound  = errors.New("file not found")
	ErrConflict      = errors.New("file changed by someone else")
	ErrPushRejected  = errors.New("push rejected by the Git server")
	ErrBranchMissing = errors.New("branch not found")
)

// ChangeError wraps every per-change failure with the user's nouns.
type ChangeError struct {
	Stage, File, Key string
	Err              error
}

func (e *ChangeError) Error() string {
	var ke *yamledit.KeyError
	if errors.As(e.Err, &ke) {
		// yamledit already says "key K in FILE: …".
		return fmt.Sprintf("stage %q: %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("stage %q: %s (key %s): %v", e.Stage, e.File, e.Key, e.Err)
}

func (e *ChangeError) Unwrap() error { return e.Err }

func changeErr(c Change, err error) error {
	var ke *yamledit.KeyError
	if errors.As(err, &ke) && ke.File == "" {
		ke.File = c.File
	}
	return &ChangeError{Stage: c.Stage, File: c.File, Key: c.Key, Err: err}
}

// cleanPath validates a repository-relative path and returns it cleaned. Symlinks are
// checked later, against the tree.
func cleanPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: the file is empty", ErrInvalidChange)
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || (len(p) > 1 && p[1] == ':') {
		return "", fmt.Errorf("%w: %q is absolute; give a path inside the repository", ErrPathEscapes, p)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q points outside the repository", ErrPathEscapes, p)
	}
	for _, part := range strings.Split(c, "/") {
		if part == ".git" {
			return "", fmt.Errorf("%w: %q points into .git", ErrPathEscapes, p)
		}
	}
	return c, nil
}

// validate checks what can be checked without the repository.
func (c Change) validate() error {
	if c.Stage == "" {
		return fmt.Errorf("%w: the stage name is empty", ErrInvalidChange)
	}
	if _, err := cleanPath(c.File); err != nil {
		return err
	}
	if c.Key == "" {
		return fmt.Errorf("%w: the key is empty", ErrInvalidChange)
	}
	if c.newValue() == "" {
		return fmt.Errorf("%w: neither a value nor a tag to write", ErrInvalidChange)
	}
	for name, v := range map[string]string{"stage": c.Stage, "image": c.ImageRef(), "value": c.newValue(), "freight": c.FreightID, "rejected": c.Rejected, "group": c.Group, "group freight": c.GroupFreight} {
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("%w: the %s contains a line break", ErrInvalidChange, name)
		}
	}
	if c.SubjectTemplate != "" {
		if _, err := template.New("subject").Option("missingkey=error").Parse(c.SubjectTemplate); err != nil {
			return fmt.Errorf("%w: subject template: %w", ErrInvalidChange, err)
		}
	}
	return nil
}

// message renders the commit message: subject, a body naming stage/file/key/image, and
// trailers that History reads back.
func (c Change) message(old string) (string, error) {
	// History reads the trailers back line by line, trimmed: a value with a line break
	// would end the trailer block early (a file holding "1.0\n\nKropipe-Stage: prod" would
	// record the promotion as prod's) and surrounding space would not read back.
	for _, f := range []struct{ name, v string }{{"stage", c.Stage}, {"image", c.ImageRef()}, {"value", c.newValue()}, {"previous value", old}, {"freight", c.FreightID}, {"rejected value", c.Rejected}, {"requester", c.RequestedBy}} {
		if strings.ContainsAny(f.v, "\r\n\u0085\u2028\u2029") || strings.TrimSpace(f.v) != f.v {
			return "", fmt.Errorf("%w: the %s %q has a line break or surrounding space and cannot go into a commit trailer; correct it by hand", ErrInvalidChange, f.name, f.v)
		}
	}
	if err := c.checkSignatureTrailers(); err != nil {
		return "", err
	}
	tmpl := c.SubjectTemplate
	if tmpl == "" {
		tmpl = DefaultPromoteSubject
		if c.Kind == Rollback {
			tmpl = DefaultRollbackSubject
		}
	}
	t, err := template.New("subject").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("%w: subject template: %w", ErrInvalidChange, err)
	}
	data := struct {
		Change
		Old, New string
	}{c, old, c.newValue()}
	var subj bytes.Buffer
	if err := t.Execute(&subj, data); err != nil {
		return "", fmt.Errorf("%w: subject template: %w", ErrInvalidChange, err)
	}
	subject := strings.TrimSpace(strings.ReplaceAll(subj.String(), "\n", " "))

	var b strings.Builder
	b.WriteString(subject)
	b.WriteString("\n\n")
	verb := "promotes"
	if c.Kind == Rollback {
		verb = "rolls back"
	}
	fmt.Fprintf(&b, "Stage %s %s %s: %s in %s is set to %q.\n\n", c.Stage, verb, c.ImageRef(), c.Key, c.File, c.newValue())
	fmt.Fprintf(&b, "%s: %s\n", trailer.Stage, c.Stage)
	if ref := c.ImageRef(); ref != "" {
		fmt.Fprintf(&b, "%s: %s\n", trailer.Image, ref)
	}
	fmt.Fprintf(&b, "%s: %s\n", trailer.Value, c.newValue())
	fmt.Fprintf(&b, "%s: %s\n", trailer.Previous, old)
	c.signatureTrailers(&b)
	if c.FreightID != "" {
		fmt.Fprintf(&b, "%s: %s\n", trailer.Freight, c.FreightID)
	}
	if c.Kind == Rollback {
		rejected := c.Rejected
		if rejected == "" {
			rejected = old
		}
		fmt.Fprintf(&b, "%s: %s\n", trailer.Rejected, rejected)
	}
	if c.RequestedBy != "" {
		fmt.Fprintf(&b, "%s: %s\n", trailer.RequestedBy, c.RequestedBy)
	}
	return b.String(), nil
}
