// Package stage runs the promotion pipeline: for each stage it discovers freight,
// decides whether to promote it, writes due promotions to Git in one push per
// repository and records which freight each stage has verified.
package stage

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// Defaults a Spec gets when a field is left empty (see Spec.WithDefaults).
const (
	DefaultFile   = "instance.yaml"
	DefaultKey    = "spec.values.deployment.tag"
	DefaultBranch = "main"
	// DefaultVerifyTimeout bounds a verify command that names no timeout.
	DefaultVerifyTimeout = 5 * time.Minute
)

// Spec is one stage as configured. Local mode fills it from promoter.yaml; the
// Argo CD mode fills it from kropipe.io/* annotations, whose names are the
// kebab-cased field names (image, strategy, constraint, allow-tags, …).
type Spec struct {
	Name  string
	Image string

	Strategy   string
	Constraint string
	AllowTags  string
	IgnoreTags string
	Platform   string

	// RepoURL and Branch say where the stage's file lives.
	RepoURL string
	Branch  string
	// File is the path inside the repository; Key the dotted YAML key written.
	File string
	Key  string

	// AutoPromote false makes every promotion wait for Approve.
	AutoPromote bool
	// Upstream, when set, is the stage whose verified freight this stage takes,
	// Soak after the upstream verified it.
	Upstream string
	Soak     time.Duration

	// Verify is the local-mode check run after a promotion is pushed.
	Verify *VerifySpec
	// Interval overrides the poll interval for this stage (0: the engine's).
	Interval time.Duration

	// Write is how a promotion reaches Branch: WritePush (the default) pushes the commit
	// to it, WritePullRequest proposes it in a pull request (see PullRequest).
	Write string
	// PullRequest configures WritePullRequest.
	PullRequest PullRequestSpec
	// CommitVia is who makes the commits: CommitViaGit (the default, also ""): kropipe, and
	// pushes them; CommitViaGitHubAPI: GitHub, through its API, which signs them ("Verified")
	// when kropipe authenticates as a GitHub App. Either write mode.
	CommitVia string

	// Signatures are what the stage requires of an image before it promotes it: every policy
	// must hold for the candidate's digest (kropipe.io/verify-signature, signature: in
	// promoter.yaml), key material already read. Empty: no requirement.
	Signatures []signature.Policy

	// Origin is where the stage was configured; the pipeline page groups lanes by it and
	// the API's stage list filters on it (Status.Origin).
	Origin Origin
}

// Origin is where a stage was configured, so that among thousands of stages a person can
// find theirs: the pipeline page groups its lanes by one of these (?group-by=).
type Origin struct {
	// ApplicationSet is the namespace/name of the ApplicationSet owning the stage's
	// Application (Argo CD mode).
	ApplicationSet string `json:"applicationSet,omitempty"`
	// Project is the Argo CD project of the stage's Application.
	Project string `json:"project,omitempty"`
	// Namespace is the destination namespace of the stage's Application.
	Namespace string `json:"namespace,omitempty"`
	// File is the promoter.yaml the stage is written in (local mode).
	File string `json:"file,omitempty"`
}

// Ways to commit (kropipe.io/commit-via, commitVia: in promoter.yaml).
const (
	CommitViaGit       = "git"
	CommitViaGitHubAPI = "github-api"
)

// Write modes (kropipe.io/write, write: in promoter.yaml).
const (
	WritePush        = "push"
	WritePullRequest = "pull-request"
)

// PullRequestSpec is how a stage in WritePullRequest mode proposes its changes: one open
// pull request per stage (or release group), from its own branch, updated in place.
type PullRequestSpec struct {
	// Branch is the head branch's template (text/template, sees .Stage, .Branch);
	// default DefaultPullRequestBranch. It must never be the stage's Branch.
	Branch string
	// Merge is MergeAuto (merge once mergeable and required checks passed) or MergeManual
	// (the default: a human merges).
	Merge string
	// Method is forge.MethodMerge (default), MethodSquash or MethodRebase, for auto merges.
	Method string
	// Labels and Reviewers are set on the pull request when it is opened.
	Labels    []string
	Reviewers []string
	// Forge overrides the forge detected from RepoURL (github, gitlab, gitea, forgejo,
	// bitbucket); ForgeAPIURL the API base derived from it.
	Forge       string
	ForgeAPIURL string
}

// Merge modes.
const (
	MergeManual = "manual"
	MergeAuto   = "auto"
)

// DefaultPullRequestBranch is the head branch of a stage's pull requests.
const DefaultPullRequestBranch = "kropipe/{{.Stage}}"

// VerifySpec is a command whose success marks a promotion verified.
type VerifySpec struct {
	Command []string
	Timeout time.Duration
}

// Selection is the warehouse selection the stage discovers with.
func (s Spec) Selection() warehouse.Selection {
	return warehouse.Selection{
		Strategy:   s.Strategy,
		Constraint: s.Constraint,
		AllowTags:  s.AllowTags,
		IgnoreTags: s.IgnoreTags,
		Platform:   s.Platform,
	}
}

// WithDefaults returns s with empty fields set to their defaults. AutoPromote is
// a bool, so its default (true) is the filler's job.
func (s Spec) WithDefaults() Spec {
	if s.File == "" {
		s.File = DefaultFile
	}
	if s.Key == "" {
		s.Key = DefaultKey
	}
	if s.Branch == "" {
		s.Branch = DefaultBranch
	}
	if s.Strategy == "" {
		s.Strategy = warehouse.DefaultStrategy
	}
	if s.Write == "" {
		s.Write = WritePush
	}
	if s.Write == WritePullRequest {
		if s.PullRequest.Branch == "" {
			s.PullRequest.Branch = DefaultPullRequestBranch
		}
		if s.PullRequest.Merge == "" {
			s.PullRequest.Merge = MergeManual
		}
		if s.PullRequest.Method == "" {
			s.PullRequest.Method = string(forge.MethodMerge)
		}
	}
	if s.Verify != nil && s.Verify.Timeout == 0 {
		v := *s.Verify
		v.Timeout = DefaultVerifyTimeout
		s.Verify = &v
	}
	return s
}

// FieldError is a problem with one field of one stage's configuration.
type FieldError struct {
	Stage string
	Field string // the user's field name, e.g. constraint, allowTags
	Msg   string // what is wrong and what to write instead
}

func (e *FieldError) Error() string {
	if strings.HasPrefix(e.Msg, e.Field+" ") || strings.HasPrefix(e.Msg, e.Field+":") {
		// The message already starts with the field (the warehouse's validation does).
		if e.Stage == "" {
			return e.Msg
		}
		return fmt.Sprintf("stage %q: %s", e.Stage, e.Msg)
	}
	if e.Stage == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("stage %q: %s: %s", e.Stage, e.Field, e.Msg)
}

// Validate checks one stage on its own; ValidateAll also checks how stages relate.
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Stage: s.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if s.Name == "" {
		bad("name", "is empty; give every stage a unique name such as develop-frontend")
	} else if strings.ContainsAny(s.Name, "/ \t\n") {
		bad("name", "%q contains a slash or space; use letters, digits, dots and dashes", s.Name)
	}
	if s.Image == "" {
		bad("image", "is missing; name the image repository to watch, e.g. registry.example.com/team/frontend")
	} else if strings.ContainsAny(s.Image, "@") || strings.Contains(path.Base(s.Image), ":") {
		bad("image", "%q carries a tag or digest; give the repository only, the strategy picks the tag", s.Image)
	}
	if err := s.Selection().Validate(); err != nil {
		field := "strategy"
		msg := err.Error()
		for _, f := range []string{"constraint", "allowTags", "ignoreTags", "platform", "strategy"} {
			if strings.HasPrefix(msg, f) {
				field = f
				break
			}
		}
		bad(field, "%s", msg)
	}
	if err := checkPath(s.File); err != nil {
		bad("file", "%v", err)
	}
	if s.Key != "" && (strings.HasPrefix(s.Key, ".") || strings.HasSuffix(s.Key, ".") || strings.Contains(s.Key, "..")) {
		bad("key", "%q is not a dotted key path; write it like spec.values.deployment.tag", s.Key)
	}
	if s.Soak < 0 {
		bad("soak", "%s is negative; write a duration such as 10m", s.Soak)
	}
	if s.Soak > 0 && s.Upstream == "" {
		bad("soak", "is set but upstream is not; soak is the time after the upstream verified a freight")
	}
	if s.Upstream != "" && s.Upstream == s.Name {
		bad("upstream", "names the stage itself; name the stage this one follows")
	}
	if s.Verify != nil {
		if len(s.Verify.Command) == 0 || s.Verify.Command[0] == "" {
			bad("verify.command", "is empty; give the program and its arguments as a list, e.g. [./smoke-test.sh]")
		}
		if s.Verify.Timeout < 0 {
			bad("verify.timeout", "%s is negative; write a duration such as 2m", s.Verify.Timeout)
		}
	}
	if s.Interval < 0 {
		bad("interval", "%s is negative; write a duration such as 5m", s.Interval)
	}
	errs = append(errs, s.validateWrite()...)
	errs = append(errs, s.validateCommitVia()...)
	errs = append(errs, s.validateSignatures()...)
	return errors.Join(errs...)
}

// validateSignatures checks each signature policy with the verifiers' own rules; fields are
// named signature[i].cosign.identity and so on (kropipe.io/verify-signature in the cluster).
func (s Spec) validateSignatures() []error {
	var errs []error
	names := map[string]bool{}
	for i, p := range s.Signatures {
		at := fmt.Sprintf("signature[%d]", i)
		if p.Name != "" {
			if names[p.Name] {
				errs = append(errs, &FieldError{Stage: s.Name, Field: at, Msg: fmt.Sprintf("policy %q is required twice; list each policy once", p.Name)})
			}
			names[p.Name] = true
		}
		err := p.Validate()
		if err == nil {
			continue
		}
		var all []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			all = j.Unwrap()
		} else {
			all = []error{err}
		}
		for _, e := range all {
			field, msg := at, e.Error()
			var fe *signature.FieldError
			if errors.As(e, &fe) {
				msg = fe.Msg
				if fe.Field != "" {
					field += "." + fe.Field
				}
			}
			if p.Name != "" {
				msg = fmt.Sprintf("(policy %q) %s", p.Name, msg)
			}
			errs = append(errs, &FieldError{Stage: s.Name, Field: field, Msg: msg})
		}
	}
	return errs
}

// validateCommitVia checks commitVia: github-api needs the stage's forge to be GitHub.
func (s Spec) validateCommitVia() []error {
	bad := func(format string, args ...any) []error {
		return []error{&FieldError{Stage: s.Name, Field: "commitVia", Msg: fmt.Sprintf(format, args...)}}
	}
	switch s.CommitVia {
	case "", CommitViaGit:
		return nil
	case CommitViaGitHubAPI:
	default:
		return bad("%q is not a way to commit; write git (the default: kropipe makes the commits and pushes them) or github-api (GitHub makes them through its API and shows them Verified when kropipe authenticates as a GitHub App)", s.CommitVia)
	}
	kind, err := s.forgeKind()
	switch {
	case err != nil && s.PullRequest.Forge == "":
		return bad("is github-api but the repository URL does not show GitHub (%v); set forge: github (kropipe.io/forge) when it is a GitHub Enterprise server, or remove commitVia", err)
	case err == nil && kind != forge.GitHub:
		return bad("is github-api but the stage's forge is %s, which cannot commit through GitHub's API; remove commitVia, or set forge: github (kropipe.io/forge) if the repository is on GitHub", kind)
	}
	return nil // a forge that does not parse is named by validateWrite
}

// forgeKind is the stage's forge: its forge setting, else detected from RepoURL.
func (s Spec) forgeKind() (forge.Kind, error) {
	if s.PullRequest.Forge != "" {
		return forge.ParseKind(s.PullRequest.Forge)
	}
	return forge.Detect(s.RepoURL)
}

// validateWrite checks write and the pull-request settings. Field names are promoter.yaml's
// (write, pullRequest.branch, …); the Argo CD mode maps them to kropipe.io/* annotations.
func (s Spec) validateWrite() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Stage: s.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	pr := s.PullRequest
	switch s.Write {
	case "", WritePush:
		// Settings that only a pull request reads, given to a stage that pushes, are a
		// mistake the user would otherwise never hear of.
		for _, f := range []struct {
			field string
			set   bool
		}{
			{"pullRequest.branch", pr.Branch != ""}, {"pullRequest.merge", pr.Merge != ""},
			{"pullRequest.method", pr.Method != ""}, {"pullRequest.labels", len(pr.Labels) > 0},
			{"pullRequest.reviewers", len(pr.Reviewers) > 0}, {"pullRequest.forge", pr.Forge != ""},
			{"pullRequest.forgeAPIURL", pr.ForgeAPIURL != ""},
		} {
			// The forge is also where a stage committing through the API commits.
			forgeField := f.field == "pullRequest.forge" || f.field == "pullRequest.forgeAPIURL"
			if f.set && !(forgeField && s.CommitVia == CommitViaGitHubAPI) {
				bad(f.field, "is set but the stage pushes to its branch; set write: pull-request to promote through pull requests, or remove it")
			}
		}
		if s.CommitVia == CommitViaGitHubAPI {
			errs = append(errs, s.validateForge()...)
		}
		return errs
	case WritePullRequest:
	default:
		bad("write", "%q is not a write mode; write push (the default: commit to the branch) or pull-request (propose the commit in a pull request)", s.Write)
		return errs
	}
	switch pr.Merge {
	case "", MergeManual, MergeAuto:
	default:
		bad("pullRequest.merge", "%q is not a merge mode; write manual (a human merges, the default) or auto (kropipe merges once the forge says it can and required checks passed)", pr.Merge)
	}
	switch forge.MergeMethod(pr.Method) {
	case "", forge.MethodMerge, forge.MethodSquash, forge.MethodRebase:
	default:
		bad("pullRequest.method", "%q is not a merge method; write merge (the default), squash or rebase", pr.Method)
	}
	if _, err := s.PullRequestBranch(""); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			errs = append(errs, fe)
		} else {
			bad("pullRequest.branch", "%v", err)
		}
	}
	errs = append(errs, s.validateForge()...)
	for _, f := range []struct {
		field string
		list  []string
	}{{"pullRequest.labels", pr.Labels}, {"pullRequest.reviewers", pr.Reviewers}} {
		for _, v := range f.list {
			if strings.TrimSpace(v) == "" {
				bad(f.field, "has an empty entry; list names separated by commas, e.g. promotion, prod")
				break
			}
		}
	}
	return errs
}

// validateForge checks the forge settings: pull-request mode and commitVia: github-api read them.
func (s Spec) validateForge() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Stage: s.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	pr := s.PullRequest
	if pr.Forge != "" {
		if _, err := forge.ParseKind(pr.Forge); err != nil {
			bad("pullRequest.forge", "%v", err)
		}
	}
	if pr.ForgeAPIURL != "" {
		if u, err := url.Parse(pr.ForgeAPIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("pullRequest.forgeAPIURL", "%q is not an http(s) URL; write the forge API's base, e.g. https://git.example.com/api/v1", pr.ForgeAPIURL)
		} else if u.User != nil {
			bad("pullRequest.forgeAPIURL", "holds credentials; remove them from the URL and give the forge token as a credential")
		}
	}
	return errs
}

// PullRequestBranchData is what the pull-request branch template sees.
type PullRequestBranchData struct {
	// Stage is the stage's name, or the release group's for a group's pull request.
	Stage string
	// Branch is the target branch the pull request merges into.
	Branch string
}

// PullRequestBranch renders the head branch of the stage's pull requests (the template
// PullRequest.Branch, DefaultPullRequestBranch when empty): for the stage itself when
// group is "", else for the release group of that name, whose members share the
// template. The branch is never the stage's Branch, never empty and a valid Git branch
// name: kropipe force-pushes it, so it must be kropipe's own.
func (s Spec) PullRequestBranch(group string) (string, error) {
	tmpl := s.PullRequest.Branch
	if tmpl == "" {
		tmpl = DefaultPullRequestBranch
	}
	name := s.Name
	if group != "" {
		name = group
	}
	fail := func(format string, args ...any) error {
		return &FieldError{Stage: name, Field: "pullRequest.branch", Msg: fmt.Sprintf(format, args...)}
	}
	t, err := template.New("branch").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fail("%q is not a template: %v; write e.g. %s", tmpl, err, DefaultPullRequestBranch)
	}
	var b strings.Builder
	if err := t.Execute(&b, PullRequestBranchData{Stage: name, Branch: s.Branch}); err != nil {
		return "", fail("%q does not render: %v; it sees .Stage and .Branch, e.g. %s", tmpl, err, DefaultPullRequestBranch)
	}
	branch := strings.TrimSpace(b.String())
	switch {
	case branch == "":
		return "", fail("%q renders to an empty branch name; write e.g. %s", tmpl, DefaultPullRequestBranch)
	case branch == s.Branch || "refs/heads/"+branch == s.Branch:
		return "", fail("%q renders to %q, the branch the stage deploys from; kropipe force-pushes its pull-request branch, so give it its own, e.g. %s", tmpl, branch, DefaultPullRequestBranch)
	}
	if err := plumbing.NewBranchReferenceName(branch).Validate(); err != nil || strings.HasPrefix(branch, "refs/") {
		return "", fail("%q renders to %q, which is not a valid Git branch name (no spaces, ~ ^ : ? * [ \\, .., @{ or a leading dash); write e.g. %s", tmpl, branch, DefaultPullRequestBranch)
	}
	return branch, nil
}

// checkPath refuses a file path that is absolute or climbs out of the repository.
func checkPath(p string) error {
	if p == "" {
		return nil // the default applies
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || (len(p) > 1 && p[1] == ':') {
		return fmt.Errorf("%q is absolute; give a path inside the repository such as develop/frontend/instance.yaml", p)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return fmt.Errorf("%q points outside the repository; give a path inside it such as develop/frontend/instance.yaml", p)
	}
	for _, part := range strings.Split(c, "/") {
		if part == ".git" {
			return fmt.Errorf("%q points into .git; give the path of an instance file", p)
		}
	}
	return nil
}

// ValidateAll checks every stage and how they relate: unique names, upstreams that
// exist and form no cycle, and no two stages writing the same key of the same file.
// specs should already have their defaults.
func ValidateAll(specs []Spec) error {
	var errs []error
	byName := map[string]Spec{}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			errs = append(errs, err)
		}
		if _, dup := byName[s.Name]; dup && s.Name != "" {
			errs = append(errs, &FieldError{Stage: s.Name, Field: "name", Msg: "is used by two stages; stage names must be unique"})
		}
		byName[s.Name] = s
	}
	for _, s := range specs {
		if s.Upstream != "" && s.Upstream != s.Name {
			if _, ok := byName[s.Upstream]; !ok {
				errs = append(errs, &FieldError{Stage: s.Name, Field: "upstream", Msg: fmt.Sprintf("names %q, which is not a stage; use one of %s", s.Upstream, names(byName))})
			}
		}
	}
	if cyc := findCycle(specs, byName); cyc != nil {
		errs = append(errs, &FieldError{Stage: cyc[0], Field: "upstream", Msg: fmt.Sprintf("stages follow each other in a cycle (%s); one of them must have no upstream", strings.Join(cyc, " → "))})
	}
	owner := map[string]string{}
	for _, s := range specs {
		k := s.RepoURL + "\x00" + s.Branch + "\x00" + path.Clean(s.File) + "\x00" + s.Key
		if o, ok := owner[k]; ok {
			errs = append(errs, &FieldError{Stage: s.Name, Field: "file", Msg: fmt.Sprintf("%s key %s is already written by stage %q; give each stage its own file or key", s.File, s.Key, o)})
			continue
		}
		owner[k] = s.Name
	}
	return errors.Join(errs...)
}

func names(m map[string]Spec) string {
	var out []string
	for n := range m {
		out = append(out, fmt.Sprintf("%q", n))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// findCycle returns the stages of one upstream cycle, starting and ending with the
// same name, or nil.
func findCycle(specs []Spec, byName map[string]Spec) []string {
	for _, s := range specs {
		seen := map[string]int{}
		var chain []string
		cur := s.Name
		for cur != "" {
			if i, ok := seen[cur]; ok {
				return append(chain[i:], cur)
			}
			seen[cur] = len(chain)
			chain = append(chain, cur)
			next, ok := byName[cur]
			if !ok || next.Upstream == cur {
				break
			}
			cur = next.Upstream
		}
	}
	return nil
}

// order returns the specs so that every upstream comes before the stages that follow it.
func order(specs []Spec) []Spec {
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	depth := func(s Spec) int {
		d := 0
		for s.Upstream != "" && d <= len(specs) {
			u, ok := byName[s.Upstream]
			if !ok {
				break
			}
			s = u
			d++
		}
		return d
	}
	out := append([]Spec(nil), specs...)
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i]) < depth(out[j]) })
	return out
}
