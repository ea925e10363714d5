package stage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/signature"
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

func TestValidate_WriteAndPullRequestSettingsNameStageFieldAndFix(t *testing.T) {
	pr := func(fn func(*Spec)) Spec {
		s := Spec{Name: "prod", Image: "registry.example.com/team/frontend", RepoURL: "https://github.com/org/gitops.git", Branch: "prod", Write: WritePullRequest}
		fn(&s)
		return s.WithDefaults()
	}
	tests := []struct {
		name string
		spec Spec
		want []string // empty: valid
	}{
		{"push by default", pr(func(s *Spec) { s.Write = "" }), nil},
		{"pull request with defaults", pr(func(*Spec) {}), nil},
		{"every setting given", pr(func(s *Spec) {
			s.PullRequest = PullRequestSpec{Branch: "promote/{{.Branch}}/{{.Stage}}", Merge: MergeAuto, Method: "squash", Labels: []string{"promotion"}, Reviewers: []string{"alice", "org/sre"}, Forge: "Gitea", ForgeAPIURL: "https://git.example.com/api/v1"}
		}), nil},
		{"unknown write mode", pr(func(s *Spec) { s.Write = "pr" }), []string{`stage "prod"`, "write", `"pr" is not a write mode`, "push", "pull-request"}},
		{"pull-request settings on a pushing stage", pr(func(s *Spec) { s.Write = WritePush; s.PullRequest.Merge = MergeAuto }), []string{`stage "prod"`, "pullRequest.merge", "set write: pull-request"}},
		{"labels on a pushing stage", pr(func(s *Spec) { s.Write = ""; s.PullRequest.Labels = []string{"x"} }), []string{"pullRequest.labels", "set write: pull-request"}},
		{"unknown merge mode", pr(func(s *Spec) { s.PullRequest.Merge = "automatic" }), []string{`stage "prod"`, "pullRequest.merge", `"automatic"`, "manual", "auto"}},
		{"unknown merge method", pr(func(s *Spec) { s.PullRequest.Method = "fast-forward" }), []string{"pullRequest.method", `"fast-forward"`, "merge", "squash", "rebase"}},
		{"branch template that does not parse", pr(func(s *Spec) { s.PullRequest.Branch = "kropipe/{{.Stage" }), []string{`stage "prod"`, "pullRequest.branch", "not a template"}},
		{"branch template naming an unknown field", pr(func(s *Spec) { s.PullRequest.Branch = "kropipe/{{.Env}}" }), []string{"pullRequest.branch", "does not render", ".Stage and .Branch"}},
		{"branch rendering to the target branch", pr(func(s *Spec) { s.PullRequest.Branch = "{{.Branch}}" }), []string{"pullRequest.branch", `renders to "prod"`, "the branch the stage deploys from"}},
		{"branch rendering empty", pr(func(s *Spec) { s.PullRequest.Branch = "{{if false}}x{{end}}" }), []string{"pullRequest.branch", "empty"}},
		{"branch that is no ref name", pr(func(s *Spec) { s.PullRequest.Branch = "kropipe/{{.Stage}}..x" }), []string{"pullRequest.branch", "not a valid Git branch name"}},
		{"branch with a space", pr(func(s *Spec) { s.PullRequest.Branch = "kropipe/my {{.Stage}}" }), []string{"pullRequest.branch", "not a valid Git branch name"}},
		{"unknown forge", pr(func(s *Spec) { s.PullRequest.Forge = "sourcehut" }), []string{"pullRequest.forge", `unknown forge "sourcehut"`, "github, gitlab, gitea, forgejo, bitbucket"}},
		{"forge API URL not a URL", pr(func(s *Spec) { s.PullRequest.ForgeAPIURL = "git.example.com/api" }), []string{"pullRequest.forgeAPIURL", "not an http(s) URL"}},
		{"forge API URL with a password", pr(func(s *Spec) { s.PullRequest.ForgeAPIURL = "https://u:secret@git.example.com/api/v1" }), []string{"pullRequest.forgeAPIURL", "holds credentials"}},
		{"empty reviewer", pr(func(s *Spec) { s.PullRequest.Reviewers = []string{"alice", " "} }), []string{"pullRequest.reviewers", "empty entry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats a password", err)
			}
		})
	}
}

func TestWithDefaults_PullRequestModeGetsBranchMergeAndMethod(t *testing.T) {
	got := Spec{Name: "prod", Write: WritePullRequest}.WithDefaults().PullRequest
	if got.Branch != DefaultPullRequestBranch || got.Merge != MergeManual || got.Method != "merge" {
		t.Fatalf("defaults %+v", got)
	}
	if push := (Spec{Name: "dev"}).WithDefaults(); push.Write != WritePush || push.PullRequest.Branch != "" {
		t.Fatalf("a pushing stage got pull-request defaults: %+v", push)
	}
}

func TestPullRequestBranch_RendersForStageAndGroup(t *testing.T) {
	tests := []struct {
		name     string
		template string
		group    string
		want     string
	}{
		{"default for a stage", "", "", "kropipe/prod-frontend"},
		{"default for a release group", "", "prod/shop", "kropipe/prod/shop"},
		{"template with the target branch", "promote/{{.Branch}}/{{.Stage}}", "", "promote/prod/prod-frontend"},
		{"group through a template", "promote/{{.Stage}}", "prod/shop", "promote/prod/shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{Name: "prod-frontend", Branch: "prod", Write: WritePullRequest, PullRequest: PullRequestSpec{Branch: tt.template}}
			got, err := s.PullRequestBranch(tt.group)
			if err != nil || got != tt.want {
				t.Fatalf("PullRequestBranch(%q) = %q, %v; want %q", tt.group, got, err, tt.want)
			}
		})
	}
	_, err := Spec{Name: "prod-frontend", Branch: "prod"}.PullRequestBranch("prod shop")
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Stage != "prod shop" || fe.Field != "pullRequest.branch" {
		t.Fatalf("a group name that makes no branch: %v", err)
	}
}

func TestResolveGroups_PullRequestBranchesAreEachUnitsOwn(t *testing.T) {
	pr := func(name, branch, template string) Spec {
		s := Spec{Name: name, Image: "registry.example.com/team/" + name, RepoURL: "https://git.example.com/org/gitops.git", Branch: branch, File: name + ".yaml", Write: WritePullRequest, PullRequest: PullRequestSpec{Branch: template}}
		return s.WithDefaults()
	}
	tests := []struct {
		name   string
		specs  []Spec
		groups []GroupSpec
		held   string // the unit held, "" for none
		want   string
	}{
		{"default templates", []Spec{pr("prod-a", "prod", ""), pr("prod-b", "prod", "")}, nil, "", ""},
		{"one branch for two stages", []Spec{pr("prod-a", "prod", "kropipe/prod"), pr("prod-b", "prod", "kropipe/prod")}, nil,
			"prod-b", `renders to "kropipe/prod", which clashes with "kropipe/prod", the pull-request branch of "prod-a"`},
		{"another stage's target branch", []Spec{pr("staging-a", "kropipe/prod-a", ""), pr("prod-a", "prod", "")}, nil,
			"prod-a", `clashes with branch "kropipe/prod-a" stage "staging-a" deploys from`},
		{"a branch nested in another's", []Spec{pr("prod", "main", ""), pr("prod-a", "main", "kropipe/prod/a")}, nil,
			"prod-a", `clashes with "kropipe/prod", the pull-request branch of "prod"`},
		{"a group and a stage alone", []Spec{pr("prod-a", "prod", "kropipe/{{.Stage}}"), pr("prod-b", "prod", "kropipe/{{.Stage}}"), pr("prod-c", "prod", "")},
			[]GroupSpec{{Name: "prod/shop", Members: []string{"prod-a", "prod-b"}}}, "", ""},
		{"a group's branch taken by a stage alone", []Spec{pr("shop", "prod", "kropipe/prod/{{.Stage}}"), pr("prod-a", "prod", "kropipe/{{.Stage}}"), pr("prod-b", "prod", "kropipe/{{.Stage}}")},
			[]GroupSpec{{Name: "prod/shop", Members: []string{"prod-a", "prod-b"}}}, "prod/shop", `the pull-request branch of "shop"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateAll(tt.specs); err != nil {
				t.Fatal(err)
			}
			table := resolveGroups(tt.specs, tt.groups)
			var held []string
			for _, u := range append(append([]*group(nil), table.list...), values(table.alone)...) {
				if u.problem != nil {
					held = append(held, u.Name)
					if u.Name != tt.held || !strings.Contains(u.problem.Error(), tt.want) {
						t.Errorf("%s held: %v\nwant %s held with %q", u.Name, u.problem, tt.held, tt.want)
					}
				}
			}
			if tt.held != "" && len(held) == 0 {
				t.Errorf("nothing held, want %s", tt.held)
			}
		})
	}
}

func values(m map[string]*group) []*group {
	var out []*group
	for _, g := range m {
		out = append(out, g)
	}
	return out
}

func TestValidate_SignaturePoliciesNameStageIndexAndField(t *testing.T) {
	spec := func(ps ...signature.Policy) Spec {
		return Spec{Name: "prod-frontend", Image: "registry.example.com/team/frontend", RepoURL: "http://git/gitops.git", Signatures: ps}.WithDefaults()
	}
	const gha = "https://token.actions.githubusercontent.com"
	keyless := signature.Policy{Name: "release", Cosign: &signature.CosignPolicy{IdentityRegexp: "^https://github.com/org/", Issuer: gha}}
	tests := []struct {
		name string
		spec Spec
		want []string // each problem's text; none: valid
	}{
		{name: "keyless policy", spec: spec(keyless)},
		{name: "no policies", spec: spec()},
		{name: "second policy lacks an issuer", spec: spec(keyless, signature.Policy{Cosign: &signature.CosignPolicy{Identity: "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"}}),
			want: []string{`stage "prod-frontend": signature[1].cosign.issuer: is missing; keyless signatures need both identity and issuer`}},
		{name: "named policy whose regexp does not compile", spec: spec(signature.Policy{Name: "release", Cosign: &signature.CosignPolicy{IdentityRegexp: "(", Issuer: gha}}),
			want: []string{`stage "prod-frontend": signature[0].cosign.identityRegexp: (policy "release") "(" is not a regular expression`}},
		{name: "policy with neither cosign nor notation", spec: spec(signature.Policy{}),
			want: []string{`stage "prod-frontend": signature[0]: gives neither cosign nor notation`}},
		{name: "policy required twice", spec: spec(keyless, keyless),
			want: []string{`stage "prod-frontend": signature[1]: policy "release" is required twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					got = append(got, e.Error())
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %v; want %q", err, tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q; want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}
