package stage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateAll_NamesStageFieldAndFix(t *testing.T) {
	base := func(name string) Spec {
		return Spec{Name: name, Image: "registry.example.com/team/frontend", RepoURL: "http://git/gitops.git", File: name + "/instance.yaml", AutoPromote: true}.WithDefaults()
	}
	with := func(name string, fn func(*Spec)) Spec { s := base(name); fn(&s); return s }
	tests := []struct {
		name  string
		specs []Spec
		want  []string
	}{
		{"unknown strategy", []Spec{with("dev", func(s *Spec) { s.Strategy = "newest-first" })}, []string{`stage "dev"`, `strategy "newest-first" is unknown`, "semver, lexical, newest or digest"}},
		{"invalid constraint", []Spec{with("dev", func(s *Spec) { s.Constraint = "^^1.2" })}, []string{`stage "dev"`, `constraint "^^1.2"`}},
		{"invalid allowTags regex", []Spec{with("dev", func(s *Spec) { s.AllowTags = "(1.2" })}, []string{`stage "dev"`, "allowTags", "invalid regex"}},
		{"invalid ignoreTags regex", []Spec{with("dev", func(s *Spec) { s.IgnoreTags = "[" })}, []string{`stage "dev"`, "ignoreTags"}},
		{"missing image", []Spec{with("dev", func(s *Spec) { s.Image = "" })}, []string{`stage "dev"`, "image: is missing"}},
		{"image with tag", []Spec{with("dev", func(s *Spec) { s.Image = "registry.example.com/team/frontend:1.2" })}, []string{`stage "dev"`, "image", "tag or digest"}},
		{"absolute file", []Spec{with("dev", func(s *Spec) { s.File = "/etc/passwd" })}, []string{`stage "dev"`, "file", "absolute"}},
		{"file escaping", []Spec{with("dev", func(s *Spec) { s.File = "develop/../../secrets.yaml" })}, []string{`stage "dev"`, "file", "outside the repository"}},
		{"two stages same file and key", []Spec{base("dev"), with("dev2", func(s *Spec) { s.File = "dev/./instance.yaml" })}, []string{`stage "dev2"`, "file", `already written by stage "dev"`}},
		{"upstream missing", []Spec{with("stg", func(s *Spec) { s.Upstream = "develop" })}, []string{`stage "stg"`, "upstream", `"develop", which is not a stage`}},
		{"upstream cycle", []Spec{with("a", func(s *Spec) { s.Upstream = "b" }), with("b", func(s *Spec) { s.Upstream = "a" })}, []string{"upstream", "cycle", "a → b → a"}},
		{"duplicate name", []Spec{base("dev"), with("dev", func(s *Spec) { s.File = "other.yaml" })}, []string{`stage "dev"`, "unique"}},
		{"soak without upstream", []Spec{with("dev", func(s *Spec) { s.Soak = time.Minute })}, []string{`stage "dev"`, "soak"}},
		{"empty verify command", []Spec{with("dev", func(s *Spec) { s.Verify = &VerifySpec{} })}, []string{`stage "dev"`, "verify.command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAll(tt.specs)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if err := ValidateAll([]Spec{base("dev"), with("stg", func(s *Spec) { s.Upstream, s.Soak = "dev", time.Minute })}); err != nil {
		t.Fatalf("valid specs refused: %v", err)
	}
}

func TestOrder_PutsUpstreamsFirst(t *testing.T) {
	got := order([]Spec{{Name: "prod", Upstream: "stg"}, {Name: "stg", Upstream: "dev"}, {Name: "dev"}})
	if got[0].Name != "dev" || got[1].Name != "stg" || got[2].Name != "prod" {
		t.Fatalf("order %v", got)
	}
}

func TestFileStore_RoundTripsAndReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	s := NewFileStore(filepath.Join(dir, "sub", "state.json"))
	ctx := context.Background()
	st, err := s.Load(ctx)
	if err != nil || len(st.Paused) != 0 {
		t.Fatalf("empty load: %+v, %v", st, err)
	}
	st = st.clone()
	st.Paused["dev"] = t0
	st.Approvals["prod"] = []Approval{{Value: "1.2.2", ApprovedAt: t0}}
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := NewFileStore(s.Path()).Load(ctx)
	if err != nil || !got.Paused["dev"].Equal(t0) || !got.approved("prod", "1.2.2") {
		t.Fatalf("reloaded %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(s.Path()))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := os.WriteFile(s.Path(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged file: %v", err)
	}
}

// FileStore answers from what it last read or wrote while the file is unchanged, but a
// save by another process (a new file renamed in) is read, and a caller changing what
// Load returned changes nothing stored.
func TestFileStore_ReadsWhatAnotherProcessSaved(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.json")
	s, other := NewFileStore(path), NewFileStore(path)
	if err := s.Save(ctx, State{Paused: map[string]time.Time{"dev": t0}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	delete(st.Paused, "dev") // the caller's copy
	if again, _ := s.Load(ctx); !again.Paused["dev"].Equal(t0) {
		t.Fatalf("a change to the loaded state reached the store: %+v", again)
	}
	if err := other.Save(ctx, State{Approvals: map[string][]Approval{"prod": {{Value: "1.2.2", ApprovedAt: t0}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil || !got.approved("prod", "1.2.2") || len(got.Paused) != 0 {
		t.Fatalf("after another process saved: %+v, %v", got, err)
	}
}
