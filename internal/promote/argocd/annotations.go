package argocd

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/suggest"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

// Annotation keys. Their names are the kebab-cased stage.Spec fields.
const (
	AnnotationPrefix = "kropipe.io/"

	AnnImage        = AnnotationPrefix + "image" // opts the Application in
	AnnStrategy     = AnnotationPrefix + "strategy"
	AnnConstraint   = AnnotationPrefix + "constraint"
	AnnAllowTags    = AnnotationPrefix + "allow-tags"
	AnnIgnoreTags   = AnnotationPrefix + "ignore-tags"
	AnnPlatform     = AnnotationPrefix + "platform"
	AnnFile         = AnnotationPrefix + "file"
	AnnKey          = AnnotationPrefix + "key"
	AnnStage        = AnnotationPrefix + "stage"
	AnnUpstream     = AnnotationPrefix + "upstream"
	AnnAutoPromote  = AnnotationPrefix + "auto-promote"
	AnnSoak         = AnnotationPrefix + "soak"
	AnnInterval     = AnnotationPrefix + "interval"
	AnnAutoRollback = AnnotationPrefix + "auto-rollback"
	AnnSource       = AnnotationPrefix + "source" // which of spec.sources holds the file
	// AnnPullSecrets names image pull Secrets (comma-separated) in the promoter's
	// namespace with the credentials of the stage's registry.
	AnnPullSecrets = AnnotationPrefix + "pull-secrets"
	// AnnVerifyJob is a Job manifest, or a folder of them, relative to the Application's
	// source path: run for each promotion once the Application is Synced and Healthy.
	AnnVerifyJob = AnnotationPrefix + "verify-job"
	// AnnVerifyAnalysis names Argo Rollouts AnalysisTemplates (cluster:NAME for a
	// ClusterAnalysisTemplate), separated by commas, run as one AnalysisRun after each promotion.
	AnnVerifyAnalysis = AnnotationPrefix + "verify-analysis"
	// AnnVerifyTimeout bounds a verification (default verify.DefaultTimeout).
	AnnVerifyTimeout = AnnotationPrefix + "verify-timeout"
	// AnnGroup names the release group the stage moves with (e.g. develop/shop): the
	// stages sharing it are promoted as one set, in one commit (stage.GroupSpec).
	AnnGroup = AnnotationPrefix + "group"
	// AnnGroupRequireAll "true" makes the group wait until every member has a new
	// candidate; every member must say the same.
	AnnGroupRequireAll = AnnotationPrefix + "group-require-all"
	// AnnGroupSubject is the group's commit subject template; every member must say the same.
	AnnGroupSubject = AnnotationPrefix + "group-subject"

	// AnnWrite is how a promotion reaches the branch: push (the default) or pull-request.
	// The pull-request annotations below apply only with pull-request; a release group's
	// members must agree on write, merge, merge-method, pull-request-branch, forge and
	// forge-api-url.
	AnnWrite = AnnotationPrefix + "write"
	// AnnMerge is auto (kropipe merges once mergeable and checks passed) or manual (default).
	AnnMerge = AnnotationPrefix + "merge"
	// AnnMergeMethod is merge (default), squash or rebase, for auto merges.
	AnnMergeMethod = AnnotationPrefix + "merge-method"
	// AnnPullRequestBranch is the head branch's template (default kropipe/{{.Stage}}).
	AnnPullRequestBranch = AnnotationPrefix + "pull-request-branch"
	// AnnPullRequestLabels and AnnPullRequestReviewers are comma-separated lists set on
	// each pull request opened.
	AnnPullRequestLabels    = AnnotationPrefix + "pull-request-labels"
	AnnPullRequestReviewers = AnnotationPrefix + "pull-request-reviewers"
	// AnnForge overrides the forge detected from the repository URL (github, gitlab,
	// gitea, forgejo, bitbucket); AnnForgeAPIURL the API base URL derived from it.
	AnnForge       = AnnotationPrefix + "forge"
	AnnForgeAPIURL = AnnotationPrefix + "forge-api-url"
	// AnnCommitVia is who makes the commits, in either write mode: git (the default:
	// kropipe, and pushes them) or github-api (GitHub, through its API: signed and shown
	// Verified when the repository's credentials are a GitHub App). github-api reads
	// forge and forge-api-url too; a release group's members must agree on it.
	AnnCommitVia = AnnotationPrefix + "commit-via"

	// ManifestGeneratePaths limits which commits make Argo CD regenerate an
	// Application's manifests; without it one promotion commit refreshes every
	// Application of the repository.
	ManifestGeneratePaths = "argocd.argoproj.io/manifest-generate-paths"
)

// DefaultInterval is how often a stage's registry is polled when kropipe.io/interval is not set.
const DefaultInterval = 5 * time.Minute

// Problem is a configuration mistake that keeps one stage from running. The other
// stages are not affected.
type Problem struct {
	Stage   string `json:"stage"`
	App     string `json:"app"`             // namespace/name of the Application
	Field   string `json:"field,omitempty"` // the annotation, e.g. kropipe.io/constraint
	Message string `json:"message"`         // what is wrong and what to write instead
}

// Ref is the Application the problem is on.
func (p Problem) Ref() AppRef {
	ns, name, _ := strings.Cut(p.App, "/")
	return AppRef{Namespace: ns, Name: name}
}

func (p Problem) Error() string {
	where := fmt.Sprintf("stage %q (Application %s)", p.Stage, p.App)
	if p.Field == "" {
		return where + ": " + p.Message
	}
	return fmt.Sprintf("%s: %s: %s", where, p.Field, p.Message)
}

// Binding ties a stage to the Application that deploys it.
type Binding struct {
	Stage string `json:"stage"`
	App   AppRef `json:"app"`
	// SourceIndex is the index in spec.sources of the source holding the stage's
	// file, -1 for a single-source Application (spec.source).
	SourceIndex int `json:"sourceIndex"`
	// AutoRollback is kropipe.io/auto-rollback: an unhealthy promotion is rolled back.
	AutoRollback bool `json:"autoRollback,omitempty"`
	// Warnings do not block the stage but deserve a look.
	Warnings []string `json:"warnings,omitempty"`
	// PullSecrets is kropipe.io/pull-secrets: Secrets in the promoter's namespace
	// holding registry credentials, used with those of --pull-secrets.
	PullSecrets []string `json:"pullSecrets,omitempty"`
	// Verify is the stage's verification in the cluster, nil when it has none.
	Verify *Verification `json:"verify,omitempty"`
	// Hydrator is set for an Application rendered by Argo CD's Source Hydrator: the stage's
	// file is in its dry source, and the gate syncs the hydrated commit of each promotion.
	Hydrator *Hydrator `json:"hydrator,omitempty"`
}

// Verification is what kropipe.io/verify-* ask to run after each promotion.
type Verification struct {
	// Job is the Job manifest or folder in the repository, the source path joined.
	Job string `json:"job,omitempty"`
	// Analysis are the AnalysisTemplates run as one AnalysisRun.
	Analysis []verify.TemplateRef `json:"analysis,omitempty"`
	// Namespace is the Application's destination namespace, where the Jobs run.
	Namespace string `json:"namespace"`
	// Destination is the Application's destination cluster, where the Jobs run: the
	// in-cluster one is the promoter's own, another is reached with Argo CD's credentials.
	Destination Destination   `json:"destination,omitzero"`
	Timeout     time.Duration `json:"timeout"`
}

// Config is what the annotations describe: runnable stages, the Applications
// behind them, and what is wrong with the others.
type Config struct {
	// Specs always pass stage.ValidateAll: stages with problems, and stages whose
	// upstream has one, are left out.
	Specs    []stage.Spec
	Problems []Problem
	Warnings []Problem
	// Bindings maps every stage in Specs to its Application.
	Bindings map[string]Binding
	// Groups are the release groups of kropipe.io/group; a group whose members'
	// annotations disagree, or one of whose members cannot run, carries its Problem and
	// is held by the engine alone.
	Groups []stage.GroupSpec
}

// Specs reads the stages from the Applications' annotations (see Derive).
func Specs(apps, appsets []*unstructured.Unstructured, opts ...DeriveOption) ([]stage.Spec, []Problem) {
	c := Derive(apps, appsets, opts...)
	return c.Specs, c.Problems
}

// candidate is one opted-in Application on its way to a stage.
type candidate struct {
	spec    stage.Spec
	binding Binding
	app     string
}

// Derive reads the stages from kropipe.io/* annotations. An ApplicationSet's
// annotations apply to every Application it owns (ownerReferences); the
// Application's own annotations win. A mistake becomes a Problem of its stage,
// which is then left out; every other stage is kept.
func Derive(apps, appsets []*unstructured.Unstructured, opts ...DeriveOption) Config {
	var o deriveOptions
	for _, opt := range opts {
		opt(&o)
	}
	sets := map[string]*unstructured.Unstructured{}
	for _, s := range appsets {
		sets[s.GetNamespace()+"/"+s.GetName()] = s
	}
	sorted := append([]*unstructured.Unstructured(nil), apps...)
	sort.Slice(sorted, func(i, j int) bool { return refOf(sorted[i]).String() < refOf(sorted[j]).String() })

	cfg := Config{Bindings: map[string]Binding{}}
	var cands []*candidate
	for _, app := range sorted {
		c, problems, warnings := fromApp(app, sets, o)
		cfg.Problems = append(cfg.Problems, problems...)
		cfg.Warnings = append(cfg.Warnings, warnings...)
		if c != nil && len(problems) == 0 {
			cands = append(cands, c)
		}
	}
	cands, more := relate(cands, cfg.Problems)
	cfg.Problems = append(cfg.Problems, more...)
	for _, c := range cands {
		cfg.Specs = append(cfg.Specs, c.spec)
		cfg.Bindings[c.spec.Name] = c.binding
	}
	var warnings []Problem
	cfg.Groups, warnings = groups(sorted, sets, cfg.Specs, cfg.Problems)
	cfg.Warnings = append(cfg.Warnings, warnings...)
	return cfg
}

// annotations merges the kropipe.io/* annotations of the owning ApplicationSets
// with the Application's own, which win; an own annotation set to "" removes the
// ApplicationSet's.
func annotations(app *unstructured.Unstructured, sets map[string]*unstructured.Unstructured) (merged, own map[string]string) {
	merged, own = map[string]string{}, map[string]string{}
	for _, o := range app.GetOwnerReferences() {
		if o.Kind != "ApplicationSet" {
			continue
		}
		if s, ok := sets[app.GetNamespace()+"/"+o.Name]; ok {
			for k, v := range s.GetAnnotations() {
				if strings.HasPrefix(k, AnnotationPrefix) {
					merged[k] = v
				}
			}
		}
	}
	for k, v := range app.GetAnnotations() {
		if strings.HasPrefix(k, AnnotationPrefix) {
			merged[k], own[k] = v, v
			if strings.TrimSpace(v) == "" {
				delete(merged, k) // an empty value clears the ApplicationSet's
			}
		}
	}
	return merged, own
}

// origin is where an Application's stage comes from: its ApplicationSet, project and
// destination namespace.
func origin(app *unstructured.Unstructured) stage.Origin {
	o := stage.Origin{Project: str(app.Object, "spec", "project"), Namespace: str(app.Object, "spec", "destination", "namespace")}
	for _, ref := range app.GetOwnerReferences() {
		if ref.Kind == "ApplicationSet" {
			o.ApplicationSet = app.GetNamespace() + "/" + ref.Name
		}
	}
	return o
}

func fromApp(app *unstructured.Unstructured, sets map[string]*unstructured.Unstructured, o deriveOptions) (*candidate, []Problem, []Problem) {
	ann, own := annotations(app, sets)
	ref := refOf(app)
	name := app.GetName()
	if v := strings.TrimSpace(ann[AnnStage]); v != "" {
		name = v
	}
	var problems []Problem
	bad := func(field, format string, args ...any) {
		problems = append(problems, Problem{Stage: name, App: ref.String(), Field: field, Message: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known(k) {
			bad(k, "is not a kropipe annotation; %s", didYouMean(k))
		}
	}
	image := strings.TrimSpace(ann[AnnImage])
	if image == "" {
		if len(own) > 0 && len(problems) == 0 {
			bad(AnnImage, "is missing but other kropipe.io annotations are set; add kropipe.io/image with the image repository to watch, e.g. registry.example.com/team/frontend")
		}
		if len(problems) == 0 {
			return nil, nil, nil
		}
		return nil, problems, nil
	}

	spec := stage.Spec{
		Name: name, Image: image,
		Strategy: ann[AnnStrategy], Constraint: ann[AnnConstraint],
		AllowTags: ann[AnnAllowTags], IgnoreTags: ann[AnnIgnoreTags], Platform: ann[AnnPlatform],
		Key: ann[AnnKey], Upstream: strings.TrimSpace(ann[AnnUpstream]),
		AutoPromote: true, Interval: DefaultInterval,
	}
	b := Binding{Stage: name, App: ref, SourceIndex: -1}
	if v, ok := ann[AnnAutoPromote]; ok {
		p, err := parseBool(v)
		if err != nil {
			bad(AnnAutoPromote, "%v", err)
		}
		spec.AutoPromote = p
	}
	if v, ok := ann[AnnAutoRollback]; ok {
		p, err := parseBool(v)
		if err != nil {
			bad(AnnAutoRollback, "%v", err)
		}
		b.AutoRollback = p
	}
	if v, ok := ann[AnnPullSecrets]; ok {
		for _, n := range strings.Split(v, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				bad(AnnPullSecrets, "%q is not a Secret name (%s); list Secret names separated by commas, e.g. \"registry-creds, mirror-creds\"", n, strings.Join(errs, "; "))
				continue
			}
			b.PullSecrets = append(b.PullSecrets, n)
		}
	}
	_, ownSoak := own[AnnSoak]
	if v, ok := ann[AnnSoak]; ok && (spec.Upstream != "" || ownSoak) {
		// An ApplicationSet's soak is for the stages that have an upstream; the
		// first stage of each pipeline inherits it without meaning anything.
		d, err := parseDuration(v, false)
		if err != nil {
			bad(AnnSoak, "%v", err)
		}
		spec.Soak = d
	}
	if v, ok := ann[AnnInterval]; ok {
		d, err := parseDuration(v, true)
		if err != nil {
			bad(AnnInterval, "%v", err)
		}
		spec.Interval = d
	}

	spec.Write, spec.CommitVia, spec.PullRequest = writeMode(ann, own)
	if v, ok := ann[AnnVerifySignature]; ok {
		spec.Signatures = requiredSignatures(v, o.signatures, bad)
	}

	srcField := "spec.source.path"
	var src map[string]any
	var idx int
	var field, msg string
	if h, ok := sourceHydrator(app.Object); ok {
		src, b.Hydrator, field, msg = drySource(h, ann, own)
		idx, srcField = -1, fieldDrySource+".path"
	} else {
		src, idx, field, msg = gitSource(app.Object, ann)
	}
	if msg != "" {
		bad(field, "%s", msg)
	} else {
		b.SourceIndex = idx
		spec.RepoURL = str(src, "repoURL")
		spec.Branch = branchOf(str(src, "targetRevision"))
		spec.File = strings.TrimSpace(ann[AnnFile])
		if spec.File == "" {
			spec.File = path.Join(str(src, "path"), stage.DefaultFile)
		}
	}
	if v, ok := verification(app.Object, ann, bad); ok && msg == "" {
		if v.Job != "" {
			v.Job = path.Join(str(src, "path"), v.Job)
		}
		if v.Job == ".." || strings.HasPrefix(v.Job, "../") {
			bad(AnnVerifyJob, "%q points outside the repository (it is relative to the Application's source path %q); give a path inside it", ann[AnnVerifyJob], str(src, "path"))
		}
		b.Verify = v
	}
	spec.Origin = origin(app)
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		for _, fe := range fieldErrors(err) {
			msg := strings.TrimPrefix(strings.TrimPrefix(fe.Msg, fe.Field+": "), fe.Field+" ")
			msg = strings.ReplaceAll(msg, "set write: pull-request", "set "+AnnWrite+": pull-request")
			msg = strings.ReplaceAll(msg, "set forge: github (kropipe.io/forge)", "set "+AnnForge+": github")
			msg = strings.ReplaceAll(msg, "remove commitVia", "remove "+AnnCommitVia)
			bad(annotationOf(fe.Field), "%s", msg)
		}
	}
	var warnings []Problem
	if _, ok := app.GetAnnotations()[ManifestGeneratePaths]; !ok {
		w := fmt.Sprintf("the Application has no %s annotation, so every promotion commit makes Argo CD regenerate every Application of %s; set it to the stage's directory (e.g. \".\" with %s %s)", ManifestGeneratePaths, spec.RepoURL, srcField, path.Dir(spec.File))
		b.Warnings = append(b.Warnings, w)
		warnings = append(warnings, Problem{Stage: name, App: ref.String(), Field: ManifestGeneratePaths, Message: w})
	}
	return &candidate{spec: spec, binding: b, app: ref.String()}, problems, warnings
}

// writeMode reads kropipe.io/write, kropipe.io/commit-via and the pull-request annotations.
// An ApplicationSet's pull-request settings are for its members that open pull requests: a
// member that pushes ignores them (as a first stage ignores an inherited soak), but one set
// on the Application itself is a mistake Validate names. The forge settings also serve a
// member that commits through GitHub's API.
func writeMode(ann, own map[string]string) (write, commitVia string, pr stage.PullRequestSpec) {
	write = strings.TrimSpace(ann[AnnWrite])
	commitVia = strings.TrimSpace(ann[AnnCommitVia])
	from, forgeFrom := ann, ann
	if write == "" || write == stage.WritePush {
		from = own
		if commitVia != stage.CommitViaGitHubAPI {
			forgeFrom = own
		}
	}
	return write, commitVia, stage.PullRequestSpec{
		Branch:      strings.TrimSpace(from[AnnPullRequestBranch]),
		Merge:       strings.TrimSpace(from[AnnMerge]),
		Method:      strings.TrimSpace(from[AnnMergeMethod]),
		Labels:      commaList(from[AnnPullRequestLabels]),
		Reviewers:   commaList(from[AnnPullRequestReviewers]),
		Forge:       strings.TrimSpace(forgeFrom[AnnForge]),
		ForgeAPIURL: strings.TrimSpace(forgeFrom[AnnForgeAPIURL]),
	}
}

// commaList splits a comma-separated annotation, dropping blanks.
func commaList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// verification reads kropipe.io/verify-*; ok is false when the stage has no verification.
func verification(obj map[string]any, ann map[string]string, bad func(field, format string, args ...any)) (*Verification, bool) {
	job := strings.TrimSpace(ann[AnnVerifyJob])
	analysis := strings.TrimSpace(ann[AnnVerifyAnalysis])
	v := &Verification{Job: job, Timeout: verify.DefaultTimeout, Namespace: str(obj, "spec", "destination", "namespace"),
		Destination: Destination{Server: str(obj, "spec", "destination", "server"), Name: str(obj, "spec", "destination", "name")}}
	if t, ok := ann[AnnVerifyTimeout]; ok {
		d, err := parseDuration(t, true)
		if err != nil {
			bad(AnnVerifyTimeout, "%v", err)
		}
		if job == "" && analysis == "" {
			bad(AnnVerifyTimeout, "is set but there is nothing to verify; add %s or %s, or remove it", AnnVerifyJob, AnnVerifyAnalysis)
		}
		v.Timeout = d
	}
	if job == "" && analysis == "" {
		return nil, false
	}
	if path.IsAbs(job) {
		bad(AnnVerifyJob, "%q is absolute; give a path relative to the Application's source path", job)
	}
	if analysis != "" {
		refs, err := verify.ParseTemplates(analysis)
		if err != nil {
			bad(AnnVerifyAnalysis, "%v", err)
		}
		v.Analysis = refs
	}
	if v.Namespace == "" {
		field := AnnVerifyJob
		if job == "" {
			field = AnnVerifyAnalysis
		}
		bad(field, "the Application has no spec.destination.namespace: set it, verification runs there")
	}
	return v, true
}

// gitSource picks the source holding the stage's file. It returns the field to
// blame and a message when there is none.
func gitSource(obj map[string]any, ann map[string]string) (src map[string]any, idx int, field, msg string) {
	sel, hasSel := ann[AnnSource]
	sel = strings.TrimSpace(sel)
	if s, ok, _ := unstructured.NestedMap(obj, "spec", "source"); ok && len(s) > 0 {
		if hasSel && sel != "0" && sel != str(s, "name") && sel != str(s, "ref") {
			return nil, 0, AnnSource, fmt.Sprintf("%q names no source: the Application has a single spec.source; remove the annotation", sel)
		}
		if m := checkGit(s, "spec.source"); m != "" {
			return nil, 0, "spec.source", m
		}
		return s, -1, "", ""
	}
	list, ok, _ := unstructured.NestedSlice(obj, "spec", "sources")
	if !ok || len(list) == 0 {
		return nil, 0, "spec.source", "the Application has no source; kropipe needs the Git repository holding the stage's instance file"
	}
	var names []string
	pick := -1
	for i, raw := range list {
		s, _ := raw.(map[string]any)
		n := str(s, "name")
		if n == "" {
			n = str(s, "ref")
		}
		label := strconv.Itoa(i)
		if n != "" {
			label += " (" + n + ")"
		}
		names = append(names, label)
		if hasSel && (sel == strconv.Itoa(i) || (sel != "" && (sel == str(s, "name") || sel == str(s, "ref")))) {
			pick = i
		}
	}
	switch {
	case !hasSel && len(list) == 1:
		pick = 0
	case !hasSel:
		return nil, 0, AnnSource, fmt.Sprintf("is missing: the Application has %d sources; name the one holding the instance file by index or name: %s", len(list), strings.Join(names, ", "))
	case pick < 0:
		return nil, 0, AnnSource, fmt.Sprintf("%q names no source; use an index or name: %s", sel, strings.Join(names, ", "))
	}
	s, _ := list[pick].(map[string]any)
	if m := checkGit(s, fmt.Sprintf("spec.sources[%d]", pick)); m != "" {
		return nil, 0, AnnSource, m
	}
	return s, pick, "", ""
}

func checkGit(s map[string]any, where string) string {
	url := str(s, "repoURL")
	switch {
	case url == "":
		return where + " has no repoURL; kropipe needs the Git repository holding the stage's instance file"
	case str(s, "chart") != "":
		return fmt.Sprintf("%s is the Helm chart %s from %s, not a Git source; kropipe writes to Git repositories only", where, str(s, "chart"), url)
	case strings.HasPrefix(url, "oci://"):
		return fmt.Sprintf("%s is the OCI artifact %s, not a Git source; kropipe writes to Git repositories only", where, url)
	}
	return ""
}

// RemoteHEAD is the Branch of a stage whose Application tracks the repository's
// default branch (targetRevision HEAD or none): the remote says which branch that
// is, so the controller asks it (gitwrite.Repo.DefaultBranch) before running the
// stage.
const RemoteHEAD = "HEAD"

// branchOf turns a targetRevision into the branch kropipe pushes to.
func branchOf(rev string) string {
	rev = strings.TrimSpace(rev)
	if rev == "" || rev == "HEAD" {
		return RemoteHEAD
	}
	return strings.TrimPrefix(rev, "refs/heads/")
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean; write \"true\" or \"false\"", v)
}

func parseDuration(v string, positive bool) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write one such as 10m or 1h30m", v)
	}
	if d < 0 || (positive && d == 0) {
		return 0, fmt.Errorf("%q must be more than zero; write a duration such as 5m", v)
	}
	return d, nil
}

func known(k string) bool {
	for _, n := range knownKeys {
		if k == n {
			return true
		}
	}
	return false
}

// didYouMean names the known key closest to k, or lists them all.
func didYouMean(k string) string {
	if best := suggest.Closest(k, knownKeys); best != "" {
		return fmt.Sprintf("did you mean %s?", best)
	}
	short := make([]string, len(knownKeys))
	for i, n := range knownKeys {
		short[i] = strings.TrimPrefix(n, AnnotationPrefix)
	}
	return "kropipe.io/ knows " + strings.Join(short, ", ")
}

// annotationOf maps a stage.Spec field name (as FieldError names it) to its annotation.
func annotationOf(field string) string {
	switch field {
	case "name":
		return AnnStage
	case "allowTags":
		return AnnAllowTags
	case "ignoreTags":
		return AnnIgnoreTags
	case "image", "strategy", "constraint", "platform", "file", "key", "soak", "upstream", "interval", "write":
		return AnnotationPrefix + field
	case "pullRequest.branch":
		return AnnPullRequestBranch
	case "pullRequest.merge":
		return AnnMerge
	case "pullRequest.method":
		return AnnMergeMethod
	case "pullRequest.labels":
		return AnnPullRequestLabels
	case "pullRequest.reviewers":
		return AnnPullRequestReviewers
	case "pullRequest.forge":
		return AnnForge
	case "pullRequest.forgeAPIURL":
		return AnnForgeAPIURL
	case "commitVia":
		return AnnCommitVia
	}
	if strings.HasPrefix(field, "signature[") {
		return AnnVerifySignature
	}
	return field
}

// fieldErrors flattens a joined error into its FieldErrors; anything else becomes
// a FieldError without a field.
func fieldErrors(err error) []*stage.FieldError {
	var out []*stage.FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *stage.FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
			return
		}
		out = append(out, &stage.FieldError{Msg: err.Error()})
	}
	walk(err)
	return out
}

// App returns the Application behind stage, so a Config is an AppLookup too.
func (c Config) App(stage string) (Binding, bool) {
	b, ok := c.Bindings[stage]
	return b, ok
}
