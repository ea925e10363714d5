package argocd

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

func TestDerive_SeedLayoutFromApplicationSetAnnotations(t *testing.T) {
	set := appset("services", map[string]string{AnnConstraint: "^1.2", AnnAutoRollback: "true"})
	apps := []*unstructured.Unstructured{
		ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "services"),
		ownedBy(app("staging-frontend", "staging/frontend", map[string]string{AnnImage: img("frontend"), AnnUpstream: "develop-frontend", AnnSoak: "10m", AnnAutoPromote: "false"}), "services"),
		ownedBy(app("develop-backend", "develop/backend", map[string]string{AnnImage: img("backend"), AnnConstraint: "~1.4"}), "services"),
		app("unrelated", "other", nil),
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set})
	if len(cfg.Problems) != 0 || len(cfg.Warnings) != 0 {
		t.Fatalf("problems %v warnings %v", cfg.Problems, cfg.Warnings)
	}
	got := map[string]stage.Spec{}
	for _, s := range cfg.Specs {
		got[s.Name] = s
	}
	if len(got) != 3 {
		t.Fatalf("stages %v, want develop-frontend, staging-frontend, develop-backend", cfg.Specs)
	}
	df := got["develop-frontend"]
	want := stage.Spec{
		Name: "develop-frontend", Image: img("frontend"), Strategy: "semver", Constraint: "^1.2",
		RepoURL: testRepo, Branch: "main", File: "develop/frontend/instance.yaml", Key: "spec.values.deployment.tag",
		AutoPromote: true, Interval: 5 * time.Minute,
	}
	if df.Name != want.Name || df.Image != want.Image || df.Strategy != want.Strategy || df.Constraint != want.Constraint ||
		df.RepoURL != want.RepoURL || df.Branch != want.Branch || df.File != want.File || df.Key != want.Key ||
		df.AutoPromote != want.AutoPromote || df.Interval != want.Interval {
		t.Fatalf("develop-frontend\n got %+v\nwant %+v", df, want)
	}
	sf := got["staging-frontend"]
	if sf.Upstream != "develop-frontend" || sf.Soak != 10*time.Minute || sf.AutoPromote {
		t.Fatalf("staging-frontend %+v", sf)
	}
	if got["develop-backend"].Constraint != "~1.4" {
		t.Fatalf("the Application's own annotation must win over the ApplicationSet's: %+v", got["develop-backend"])
	}
	b := cfg.Bindings["staging-frontend"]
	if b.App.String() != "argocd/staging-frontend" || b.App.UID != "uid-staging-frontend" || !b.AutoRollback || b.SourceIndex != -1 {
		t.Fatalf("binding %+v", b)
	}
	if err := stage.ValidateAll(cfg.Specs); err != nil {
		t.Fatal(err)
	}
}

func TestDerive_SourceAndBranchChoices(t *testing.T) {
	multi := func(ann map[string]string) *unstructured.Unstructured {
		u := app("develop-frontend", "", ann)
		unstructured.RemoveNestedField(u.Object, "spec", "source")
		_ = unstructured.SetNestedSlice(u.Object, []any{
			map[string]any{"repoURL": "https://charts.example.com", "chart": "redis", "targetRevision": "17.0.0"},
			map[string]any{"repoURL": testRepo, "path": "develop/frontend", "targetRevision": "release", "name": "gitops"},
		}, "spec", "sources")
		return u
	}
	rev := func(r string) *unstructured.Unstructured {
		u := app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")})
		_ = unstructured.SetNestedField(u.Object, r, "spec", "source", "targetRevision")
		return u
	}
	tests := []struct {
		name              string
		app               *unstructured.Unstructured
		branch, file      string
		index             int
		problemField, has string
	}{
		{name: "HEAD is the remote's default branch", app: rev("HEAD"), branch: RemoteHEAD, file: "develop/frontend/instance.yaml", index: -1},
		{name: "empty is the remote's default branch too", app: rev(""), branch: RemoteHEAD, file: "develop/frontend/instance.yaml", index: -1},
		{name: "refs/heads prefix dropped", app: rev("refs/heads/release"), branch: "release", file: "develop/frontend/instance.yaml", index: -1},
		{name: "file annotation wins", app: app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend"), AnnFile: "envs/dev/fe.yaml"}), branch: "main", file: "envs/dev/fe.yaml", index: -1},
		{name: "multi-source by index", app: multi(map[string]string{AnnImage: img("frontend"), AnnSource: "1"}), branch: "release", file: "develop/frontend/instance.yaml", index: 1},
		{name: "multi-source by name", app: multi(map[string]string{AnnImage: img("frontend"), AnnSource: "gitops"}), branch: "release", file: "develop/frontend/instance.yaml", index: 1},
		{name: "multi-source without kropipe.io/source", app: multi(map[string]string{AnnImage: img("frontend")}), problemField: AnnSource, has: "has 2 sources; name the one holding the instance file by index or name: 0, 1 (gitops)"},
		{name: "multi-source naming a missing source", app: multi(map[string]string{AnnImage: img("frontend"), AnnSource: "git"}), problemField: AnnSource, has: `"git" names no source`},
		{name: "multi-source naming the Helm chart", app: multi(map[string]string{AnnImage: img("frontend"), AnnSource: "0"}), problemField: AnnSource, has: "is the Helm chart redis from https://charts.example.com, not a Git source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Derive([]*unstructured.Unstructured{tt.app}, nil)
			if tt.problemField != "" {
				if len(cfg.Specs) != 0 || len(cfg.Problems) != 1 || cfg.Problems[0].Field != tt.problemField || !strings.Contains(cfg.Problems[0].Message, tt.has) {
					t.Fatalf("specs %v problems %v, want one problem on %s containing %q", cfg.Specs, cfg.Problems, tt.problemField, tt.has)
				}
				return
			}
			if len(cfg.Problems) != 0 || len(cfg.Specs) != 1 {
				t.Fatalf("specs %v problems %v", cfg.Specs, cfg.Problems)
			}
			s := cfg.Specs[0]
			if s.Branch != tt.branch || s.File != tt.file || cfg.Bindings[s.Name].SourceIndex != tt.index {
				t.Fatalf("branch %q file %q index %d, want %q %q %d", s.Branch, s.File, cfg.Bindings[s.Name].SourceIndex, tt.branch, tt.file, tt.index)
			}
		})
	}
}

// TestDerive_BadInputBlocksOnlyItsStage covers the bad annotations: each
// case breaks develop-frontend (or its follower) and develop-backend keeps working.
func TestDerive_BadInputBlocksOnlyItsStage(t *testing.T) {
	fe := func(ann map[string]string) map[string]string {
		ann[AnnImage] = img("frontend")
		return ann
	}
	noSource := app("develop-frontend", "develop/frontend", fe(map[string]string{}))
	unstructured.RemoveNestedField(noSource.Object, "spec", "source")
	noRepo := app("develop-frontend", "develop/frontend", fe(map[string]string{}))
	unstructured.RemoveNestedField(noRepo.Object, "spec", "source", "repoURL")
	helm := app("develop-frontend", "", fe(map[string]string{}))
	_ = unstructured.SetNestedField(helm.Object, "redis", "spec", "source", "chart")

	tests := []struct {
		name    string
		apps    []*unstructured.Unstructured
		stage   string // stage with the problem
		field   string
		message string // substring
		blocked []string
	}{
		{
			name:  "verify-job outside the repository",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnVerifyJob: "../../../etc"}))},
			stage: "develop-frontend", field: AnnVerifyJob, message: `"../../../etc" points outside the repository (it is relative to the Application's source path "develop/frontend")`,
		},
		{
			name:  "verify-job absolute",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnVerifyJob: "/verify"}))},
			stage: "develop-frontend", field: AnnVerifyJob, message: `"/verify" is absolute`,
		},
		{
			name:  "verify-analysis not a template name",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnVerifyAnalysis: "http, Smoke_Test"}))},
			stage: "develop-frontend", field: AnnVerifyAnalysis, message: `"Smoke_Test" is not a template name`,
		},
		{
			name:  "verify-timeout not a duration",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnVerifyJob: "verify", AnnVerifyTimeout: "ten minutes"}))},
			stage: "develop-frontend", field: AnnVerifyTimeout, message: `"ten minutes" is not a duration`,
		},
		{
			name:  "verify-timeout without anything to verify",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnVerifyTimeout: "5m"}))},
			stage: "develop-frontend", field: AnnVerifyTimeout, message: "is set but there is nothing to verify",
		},
		{
			name: "verify-job without a destination namespace",
			apps: []*unstructured.Unstructured{func() *unstructured.Unstructured {
				a := app("develop-frontend", "develop/frontend", fe(map[string]string{AnnVerifyJob: "verify"}))
				unstructured.RemoveNestedField(a.Object, "spec", "destination", "namespace")
				return a
			}()},
			stage: "develop-frontend", field: AnnVerifyJob, message: "the Application has no spec.destination.namespace",
		},
		{
			name:  "typo'd key gets a did-you-mean",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{"kropipe.io/constrant": "^1.2"}))},
			stage: "develop-frontend", field: "kropipe.io/constrant", message: "is not a kropipe annotation; did you mean kropipe.io/constraint?",
		},
		{
			name:  "typo'd image key on an app not opted in is still reported",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", map[string]string{"kropipe.io/imag": img("frontend")})},
			stage: "develop-frontend", field: "kropipe.io/imag", message: "did you mean kropipe.io/image?",
		},
		{
			name:  "invalid constraint",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnConstraint: "^1.x.y.z"}))},
			stage: "develop-frontend", field: AnnConstraint, message: "^1.x.y.z",
		},
		{
			name:  "invalid strategy",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnStrategy: "semvr"}))},
			stage: "develop-frontend", field: AnnStrategy, message: `"semvr" is unknown: use semver, lexical, newest or digest`,
		},
		{
			name:  "invalid auto-promote",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnAutoPromote: "yes please"}))},
			stage: "develop-frontend", field: AnnAutoPromote, message: `"yes please" is not a boolean; write "true" or "false"`,
		},
		{
			name:  "invalid auto-rollback",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnAutoRollback: "1"}))},
			stage: "develop-frontend", field: AnnAutoRollback, message: `"1" is not a boolean`,
		},
		{
			name:  "invalid soak",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnSoak: "ten minutes"}))},
			stage: "develop-frontend", field: AnnSoak, message: `"ten minutes" is not a duration; write one such as 10m`,
		},
		{
			name:  "pull secret that cannot be a Secret name",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnPullSecrets: "regcred, Team_Creds"}))},
			stage: "develop-frontend", field: AnnPullSecrets, message: `"Team_Creds" is not a Secret name`,
		},
		{
			name:  "zero interval",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnInterval: "0s"}))},
			stage: "develop-frontend", field: AnnInterval, message: "must be more than zero",
		},
		{
			name:  "image with a tag",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend") + ":1.2.1"})},
			stage: "develop-frontend", field: AnnImage, message: "carries a tag or digest",
		},
		{
			name:  "file outside the repository",
			apps:  []*unstructured.Unstructured{app("develop-frontend", "develop/frontend", fe(map[string]string{AnnFile: "../x.yaml"}))},
			stage: "develop-frontend", field: AnnFile, message: "points outside the repository",
		},
		{
			name:  "upstream names a missing stage",
			apps:  []*unstructured.Unstructured{app("staging-frontend", "staging/frontend", fe(map[string]string{AnnUpstream: "develop-frontnd"}))},
			stage: "staging-frontend", field: AnnUpstream, message: `names "develop-frontnd", which is not a stage; use one of "develop-backend"`,
		},
		{
			name: "cycle of upstreams",
			apps: []*unstructured.Unstructured{
				app("develop-frontend", "develop/frontend", fe(map[string]string{AnnUpstream: "staging-frontend"})),
				app("staging-frontend", "staging/frontend", fe(map[string]string{AnnUpstream: "develop-frontend"})),
			},
			stage: "develop-frontend", field: AnnUpstream, message: "stages follow each other in a cycle (develop-frontend → staging-frontend → develop-frontend)",
			blocked: []string{"staging-frontend"},
		},
		{
			name: "follower of a broken stage waits with a reason",
			apps: []*unstructured.Unstructured{
				app("develop-frontend", "develop/frontend", fe(map[string]string{AnnSoak: "x"})),
				app("staging-frontend", "staging/frontend", fe(map[string]string{AnnUpstream: "develop-frontend"})),
			},
			stage: "develop-frontend", field: AnnSoak, message: "not a duration",
			blocked: []string{"staging-frontend"},
		},
		{
			name:  "Application without a source",
			apps:  []*unstructured.Unstructured{noSource},
			stage: "develop-frontend", field: "spec.source", message: "the Application has no source; kropipe needs the Git repository",
		},
		{
			name:  "Application source without repoURL",
			apps:  []*unstructured.Unstructured{noRepo},
			stage: "develop-frontend", field: "spec.source", message: "spec.source has no repoURL",
		},
		{
			name:  "Application from a Helm chart repository",
			apps:  []*unstructured.Unstructured{helm},
			stage: "develop-frontend", field: "spec.source", message: "is the Helm chart redis",
		},
		{
			name: "two Applications with one stage name",
			apps: []*unstructured.Unstructured{
				app("develop-frontend", "develop/frontend", fe(map[string]string{})),
				app("develop-frontend-2", "develop/frontend2", fe(map[string]string{AnnStage: "develop-frontend"})),
			},
			stage: "develop-frontend", field: AnnStage, message: "is the stage of several Applications (argocd/develop-frontend, argocd/develop-frontend-2)",
		},
		{
			name: "two stages writing one key",
			apps: []*unstructured.Unstructured{
				app("develop-frontend", "develop/frontend", fe(map[string]string{})),
				app("develop-frontend-canary", "develop/frontend", fe(map[string]string{})),
			},
			stage: "develop-frontend-canary", field: AnnFile, message: `is already written by stage "develop-frontend"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps := append(tt.apps, app("develop-backend", "develop/backend", map[string]string{AnnImage: img("backend")}))
			cfg := Derive(apps, nil)
			var found *Problem
			for i, p := range cfg.Problems {
				if p.Stage == tt.stage && p.Field == tt.field {
					found = &cfg.Problems[i]
				}
			}
			if found == nil || !strings.Contains(found.Message, tt.message) {
				t.Fatalf("problems %v\nwant on stage %s field %s: %q", cfg.Problems, tt.stage, tt.field, tt.message)
			}
			if !strings.HasPrefix(found.Error(), "stage \""+tt.stage+"\" (Application argocd/") {
				t.Fatalf("error text %q", found.Error())
			}
			names := map[string]bool{}
			for _, s := range cfg.Specs {
				names[s.Name] = true
			}
			if !names["develop-backend"] {
				t.Fatalf("develop-backend was blocked too: specs %v problems %v", cfg.Specs, cfg.Problems)
			}
			for _, b := range append(tt.blocked, tt.stage) {
				if names[b] {
					t.Fatalf("stage %s should be left out: %v", b, cfg.Specs)
				}
				if _, ok := cfg.Bindings[b]; ok {
					t.Fatalf("stage %s has a binding", b)
				}
			}
			if err := stage.ValidateAll(cfg.Specs); err != nil {
				t.Fatalf("specs left do not validate: %v", err)
			}
		})
	}
}

func TestDerive_WarnsWithoutManifestGeneratePaths(t *testing.T) {
	a := app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend"), ManifestGeneratePaths: "\x00"})
	cfg := Derive([]*unstructured.Unstructured{a}, nil)
	if len(cfg.Specs) != 1 || len(cfg.Problems) != 0 {
		t.Fatalf("a missing manifest-generate-paths must not block: %v %v", cfg.Specs, cfg.Problems)
	}
	if len(cfg.Warnings) != 1 || cfg.Warnings[0].Field != ManifestGeneratePaths || len(cfg.Bindings["develop-frontend"].Warnings) != 1 ||
		!strings.Contains(cfg.Warnings[0].Message, "every promotion commit makes Argo CD regenerate every Application of "+testRepo) {
		t.Fatalf("warnings %v", cfg.Warnings)
	}
}

func TestDerive_ApplicationSetDefaultsAndOverrides(t *testing.T) {
	set := appset("services", map[string]string{AnnSoak: "10m", AnnConstraint: "^1.2", AnnAutoPromote: "false"})
	apps := []*unstructured.Unstructured{
		// The first stage inherits a soak that only means something downstream.
		ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend"), AnnAutoPromote: "true"}), "services"),
		ownedBy(app("staging-frontend", "staging/frontend", map[string]string{AnnImage: img("frontend"), AnnUpstream: "develop-frontend"}), "services"),
		// An empty value clears the ApplicationSet's.
		ownedBy(app("develop-backend", "develop/backend", map[string]string{AnnImage: img("backend"), AnnConstraint: ""}), "services"),
		// An ApplicationSet in another namespace does not own it.
		func() *unstructured.Unstructured {
			a := ownedBy(app("team-frontend", "team/frontend", map[string]string{AnnImage: img("frontend")}), "services")
			a.SetNamespace("team-a")
			return a
		}(),
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set})
	if len(cfg.Problems) != 0 {
		t.Fatalf("problems %v", cfg.Problems)
	}
	got := map[string]stage.Spec{}
	for _, s := range cfg.Specs {
		got[s.Name] = s
	}
	if s := got["develop-frontend"]; s.Soak != 0 || !s.AutoPromote || s.Constraint != "^1.2" {
		t.Fatalf("develop-frontend %+v", s)
	}
	if s := got["staging-frontend"]; s.Soak != 10*time.Minute || s.AutoPromote {
		t.Fatalf("staging-frontend %+v", s)
	}
	if s := got["develop-backend"]; s.Constraint != "" {
		t.Fatalf("develop-backend kept the ApplicationSet's constraint: %+v", s)
	}
	if s := got["team-frontend"]; s.Constraint != "" || !s.AutoPromote {
		t.Fatalf("team-frontend took annotations of an ApplicationSet in another namespace: %+v", s)
	}
	// Pull secrets from the ApplicationSet, a list with spaces and empty items.
	withCreds := ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "creds")
	credsSet := appset("creds", map[string]string{AnnPullSecrets: " regcred ,, mirror-creds"})
	if c := Derive([]*unstructured.Unstructured{withCreds}, []*unstructured.Unstructured{credsSet}); len(c.Problems) != 0 || !slices.Equal(c.Bindings["develop-frontend"].PullSecrets, []string{"regcred", "mirror-creds"}) {
		t.Fatalf("pull secrets %v, problems %v", c.Bindings["develop-frontend"].PullSecrets, c.Problems)
	}
	// An own soak without upstream is still a mistake.
	own := app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend"), AnnSoak: "10m"})
	if _, problems := Specs([]*unstructured.Unstructured{own}, nil); len(problems) != 1 || problems[0].Field != AnnSoak {
		t.Fatalf("problems %v", problems)
	}
}

func TestDerive_VerifyJobFromApplicationSetWithOverride(t *testing.T) {
	set := appset("frontend", map[string]string{AnnImage: img("frontend"), AnnVerifyJob: "verify"})
	dev := ownedBy(app("develop-frontend", "develop/frontend", nil), "frontend")
	staging := ownedBy(app("staging-frontend", "staging/frontend", map[string]string{AnnVerifyJob: "checks/smoke.yaml", AnnVerifyTimeout: "2m"}), "frontend")
	prod := ownedBy(app("prod-frontend", "prod/frontend", map[string]string{AnnVerifyJob: "", AnnVerifyAnalysis: "error-rate, cluster:smoke"}), "frontend")
	cfg := Derive([]*unstructured.Unstructured{dev, staging, prod}, []*unstructured.Unstructured{set})
	if len(cfg.Problems) != 0 {
		t.Fatalf("problems: %v", cfg.Problems)
	}
	// The verification runs in the Application's destination cluster (here Argo CD's own).
	inCluster := Destination{Server: InClusterServer}
	want := map[string]*Verification{
		"develop-frontend": {Job: "develop/frontend/verify", Namespace: "develop-frontend", Destination: inCluster, Timeout: 10 * time.Minute},
		"staging-frontend": {Job: "staging/frontend/checks/smoke.yaml", Namespace: "staging-frontend", Destination: inCluster, Timeout: 2 * time.Minute},
		"prod-frontend":    {Analysis: []verify.TemplateRef{{Name: "error-rate"}, {Name: "smoke", Cluster: true}}, Namespace: "prod-frontend", Destination: inCluster, Timeout: 10 * time.Minute},
	}
	for name, w := range want {
		got := cfg.Bindings[name].Verify
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: Verify = %+v, want %+v", name, got, w)
		}
	}
}

// A stage remembers where it was configured, for the pipeline page's grouping: the
// ApplicationSet owning its Application, the project and the destination namespace.
func TestDerive_OriginNamesApplicationSetProjectAndNamespace(t *testing.T) {
	set := appset("frontend", map[string]string{AnnImage: img("frontend")})
	dev := ownedBy(app("develop-frontend", "develop/frontend", nil), "frontend")
	lone := app("develop-backend", "develop/backend", map[string]string{AnnImage: img("backend")})
	specs, problems := Specs([]*unstructured.Unstructured{dev, lone}, []*unstructured.Unstructured{set})
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	want := map[string]stage.Origin{
		"develop-frontend": {ApplicationSet: "argocd/frontend", Project: "default", Namespace: "develop-frontend"},
		"develop-backend":  {Project: "default", Namespace: "develop-backend"},
	}
	for _, s := range specs {
		if s.Origin != want[s.Name] {
			t.Errorf("%s: Origin = %+v, want %+v", s.Name, s.Origin, want[s.Name])
		}
	}
}
