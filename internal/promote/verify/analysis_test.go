package verify_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/verify"
)

// template is an AnalysisTemplate (namespace "") or ClusterAnalysisTemplate (namespace
// "-") with one web metric per name and the given args.
func template(kind, namespace, name string, metrics []string, args ...map[string]any) *unstructured.Unstructured {
	var ms, as []any
	for _, m := range metrics {
		ms = append(ms, map[string]any{"name": m, "provider": map[string]any{"web": map[string]any{"url": "http://127.0.0.1/{{args.value}}"}}, "successCondition": "result == 'ok'"})
	}
	for _, a := range args {
		as = append(as, a)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"metrics": ms, "args": as},
	}}
	if namespace != "" {
		u.SetNamespace(namespace)
	}
	return u
}

type analysisFixture struct {
	dyn   *dynamicfake.FakeDynamicClient
	disc  *fakediscovery.FakeDiscovery
	clock *clocktesting.FakeClock
}

func newAnalysisFixture(rollouts bool, objs ...runtime.Object) *analysisFixture {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		verify.AnalysisRunGVR:             "AnalysisRunList",
		verify.AnalysisTemplateGVR:        "AnalysisTemplateList",
		verify.ClusterAnalysisTemplateGVR: "ClusterAnalysisTemplateList",
	}, objs...)
	disc := fake.NewClientset().Discovery().(*fakediscovery.FakeDiscovery)
	if rollouts {
		disc.Resources = []*metav1.APIResourceList{{GroupVersion: "argoproj.io/v1alpha1", APIResources: []metav1.APIResource{
			{Name: "analysisruns", Namespaced: true, Kind: "AnalysisRun"},
			{Name: "analysistemplates", Namespaced: true, Kind: "AnalysisTemplate"},
		}}}
	}
	return &analysisFixture{dyn: dyn, disc: disc, clock: clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))}
}

func (f *analysisFixture) runner() *verify.AnalysisRunner {
	return verify.NewAnalysisRunner(f.dyn, f.disc, verify.WithClock(f.clock))
}

func (f *analysisFixture) run(t *testing.T, req verify.Request) *unstructured.Unstructured {
	t.Helper()
	u, err := f.dyn.Resource(verify.AnalysisRunGVR).Namespace(ns).Get(context.Background(), verify.RunName(req.Stage, req.Freight.ID(), req.Commit), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *analysisFixture) setPhase(t *testing.T, req verify.Request, phase, message string) {
	t.Helper()
	u := f.run(t, req)
	u.Object["status"] = map[string]any{"phase": phase, "message": message}
	if _, err := f.dyn.Resource(verify.AnalysisRunGVR).Namespace(ns).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *analysisFixture) count(verb string) int {
	n := 0
	for _, a := range f.dyn.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == "analysisruns" {
			n++
		}
	}
	return n
}

func TestAnalysisRunner(t *testing.T) {
	req := request("c0ffee")
	name := verify.RunName(req.Stage, req.Freight.ID(), req.Commit)
	tests := []struct {
		name, phase, message string
		step                 time.Duration
		want                 verify.Phase
		wantMessage          string
		terminated           bool
	}{
		{name: "PassesWhenSuccessful", phase: "Successful", want: verify.Passed, wantMessage: "analysis " + name + " successful"},
		{name: "FailsWhenFailed", phase: "Failed", message: "Metric \"http\" assessed Failed", want: verify.Failed, wantMessage: "analysis " + name + " failed: Metric \"http\" assessed Failed"},
		{name: "FailsOnError", phase: "Error", message: "connection refused", want: verify.Failed, wantMessage: "analysis " + name + " error: connection refused"},
		{name: "InconclusiveHoldsForAHuman", phase: "Inconclusive", want: verify.Inconclusive, wantMessage: "analysis " + name + " inconclusive"},
		{name: "RunsUntilTheTimeout", phase: "Running", step: 9 * time.Minute, want: verify.Running, wantMessage: "analysis " + name + " (running 9m0s)"},
		{name: "FailsAndTerminatesAtTheTimeout", phase: "Running", step: 10 * time.Minute, want: verify.Failed, wantMessage: "did not finish within 10m0s", terminated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAnalysisFixture(true,
				template("AnalysisTemplate", ns, "http", []string{"http"}, map[string]any{"name": "value"}, map[string]any{"name": "stage"}, map[string]any{"name": "threshold", "value": "0.95"}),
				template("ClusterAnalysisTemplate", "", "smoke", []string{"smoke"}, map[string]any{"name": "commit"}, map[string]any{"name": "value"}),
			)
			refs, err := verify.ParseTemplates("http, cluster:smoke")
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			res, err := f.runner().Run(ctx, req, refs)
			if err != nil || res.Phase != verify.Running || res.Message != "analysis "+name+" (pending 0s)" {
				t.Fatalf("first Run = %+v, %v", res, err)
			}
			run := f.run(t, req)
			args, _, _ := unstructured.NestedSlice(run.Object, "spec", "args")
			got := map[string]any{}
			for _, a := range args {
				m := a.(map[string]any)
				got[m["name"].(string)] = m["value"]
			}
			want := map[string]any{"value": "1.2.2", "stage": "develop-frontend", "threshold": "0.95", "commit": "c0ffee"}
			if len(got) != len(want) {
				t.Errorf("args %v, want %v", got, want)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("arg %s = %v, want %v", k, got[k], v)
				}
			}
			if ms, _, _ := unstructured.NestedSlice(run.Object, "spec", "metrics"); len(ms) != 2 {
				t.Errorf("metrics %v, want both templates'", ms)
			}
			f.setPhase(t, req, tt.phase, tt.message)
			f.clock.Step(tt.step)
			// A second runner is a restarted promoter: it adopts the run.
			res, err = f.runner().Run(ctx, req, refs)
			if err != nil || res.Phase != tt.want || !strings.Contains(res.Message, tt.wantMessage) {
				t.Fatalf("Run = %+v, %v; want %s %q", res, err, tt.want, tt.wantMessage)
			}
			if n := f.count("create"); n != 1 {
				t.Errorf("%d AnalysisRuns created, want 1", n)
			}
			if got := f.count("patch") == 1; got != tt.terminated {
				t.Errorf("terminated = %v, want %v", got, tt.terminated)
			}
		})
	}
}

func TestAnalysisRunner_BadInput(t *testing.T) {
	tests := []struct {
		name, templates string
		rollouts        bool
		objs            []runtime.Object
		want            string
		is              error
	}{
		{name: "RolloutsNotInstalled", templates: "http", want: "the cluster serves no analysisruns.argoproj.io", is: verify.ErrNoRollouts},
		{name: "UnknownTemplate", templates: "http", rollouts: true, want: "AnalysisTemplate http not found in namespace " + ns, is: verify.ErrBadAnalysis},
		{name: "UnknownClusterTemplate", templates: "cluster:http", rollouts: true, objs: []runtime.Object{template("AnalysisTemplate", ns, "http", []string{"http"})}, want: "ClusterAnalysisTemplate http not found", is: verify.ErrBadAnalysis},
		{
			name: "RequiredArgumentNotPassed", templates: "http", rollouts: true,
			objs: []runtime.Object{template("AnalysisTemplate", ns, "http", []string{"http"}, map[string]any{"name": "service-name"})},
			want: `argument "service-name" has no value and kropipe does not pass it`, is: verify.ErrBadAnalysis,
		},
		{
			name: "SameMetricTwice", templates: "a,b", rollouts: true,
			objs: []runtime.Object{template("AnalysisTemplate", ns, "a", []string{"http"}), template("AnalysisTemplate", ns, "b", []string{"http"})},
			want: `AnalysisTemplate a and AnalysisTemplate b both have the metric "http"`, is: verify.ErrBadAnalysis,
		},
		{
			name: "ConflictingArgumentValues", templates: "a,b", rollouts: true,
			objs: []runtime.Object{
				template("AnalysisTemplate", ns, "a", []string{"a"}, map[string]any{"name": "threshold", "value": "1"}),
				template("AnalysisTemplate", ns, "b", []string{"b"}, map[string]any{"name": "threshold", "value": "2"}),
			},
			want: `argument "threshold" is given the values "1" and "2"`, is: verify.ErrBadAnalysis,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAnalysisFixture(tt.rollouts, tt.objs...)
			refs, err := verify.ParseTemplates(tt.templates)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.runner().Run(context.Background(), request("c0ffee"), refs)
			if err == nil || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q wrapping %v", err, tt.want, tt.is)
			}
			if n := f.count("create"); n != 0 {
				t.Errorf("%d AnalysisRuns created from bad input", n)
			}
		})
	}
}

func TestParseTemplates(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "http", want: "AnalysisTemplate http"},
		{in: " http , cluster:smoke ", want: "AnalysisTemplate http,ClusterAnalysisTemplate smoke"},
		{in: "Http_Check", err: `"Http_Check" is not a template name`},
		{in: " , ", err: "names no template"},
	}
	for _, tt := range tests {
		refs, err := verify.ParseTemplates(tt.in)
		var got []string
		for _, r := range refs {
			got = append(got, r.String())
		}
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseTemplates(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != tt.want {
			t.Errorf("ParseTemplates(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestAnalysisRunner_KeepsTheLastFinishedRunsPerStage(t *testing.T) {
	f := newAnalysisFixture(true, template("AnalysisTemplate", ns, "http", []string{"http"}))
	refs := []verify.TemplateRef{{Name: "http"}}
	r := verify.NewAnalysisRunner(f.dyn, f.disc, verify.WithClock(f.clock), verify.WithKeep(2))
	ctx := context.Background()
	var names []string
	for _, tag := range []string{"1.2.1", "1.2.2", "1.2.3", "1.2.4"} {
		req := request("c1")
		req.Freight.Tag, req.Value = tag, tag
		names = append(names, verify.RunName(req.Stage, req.Freight.ID(), req.Commit))
		if _, err := r.Run(ctx, req, refs); err != nil {
			t.Fatal(err)
		}
		f.setPhase(t, req, "Successful", "")
		if res, err := r.Run(ctx, req, refs); err != nil || res.Phase != verify.Passed {
			t.Fatalf("Run(%s) = %+v, %v", tag, res, err)
		}
		f.clock.Step(time.Minute)
	}
	list, err := f.dyn.Resource(verify.AnalysisRunGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, u := range list.Items {
		left = append(left, u.GetName())
	}
	slices.Sort(left)
	want := slices.Sorted(slices.Values(names[2:]))
	if !slices.Equal(left, want) {
		t.Errorf("AnalysisRuns left = %v, want the newest two %v", left, want)
	}
}

// As for Jobs: an AnalysisRun judges the freight at one promotion commit.
func TestAnalysisRunner_VerdictsAreBoundToThePromotionCommit(t *testing.T) {
	f := newAnalysisFixture(true, template("AnalysisTemplate", ns, "http", []string{"http"}))
	refs := []verify.TemplateRef{{Name: "http"}}
	ctx := context.Background()
	first, again := request("1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), request("2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	if _, err := f.runner().Run(ctx, first, refs); err != nil {
		t.Fatal(err)
	}
	list, err := f.dyn.Resource(verify.AnalysisRunGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("AnalysisRuns = %v, %v", list, err)
	}
	u := list.Items[0]
	u.Object["status"] = map[string]any{"phase": "Successful"}
	if _, err := f.dyn.Resource(verify.AnalysisRunGVR).Namespace(ns).Update(ctx, &u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Hour)
	res, err := f.runner().Run(ctx, again, refs)
	if err != nil || res.Phase != verify.Running {
		t.Fatalf("Run at the new commit = %+v, %v; want a new AnalysisRun running", res, err)
	}
	if n := f.count("create"); n != 2 {
		t.Fatalf("%d AnalysisRuns created, want 2: one per promotion commit", n)
	}
	if res, err := f.runner().Run(ctx, first, refs); err != nil || res.Phase != verify.Passed {
		t.Errorf("Run at the earlier commit = %+v, %v; want Passed from its own run", res, err)
	}
	if n := f.count("create"); n != 2 {
		t.Errorf("%d AnalysisRuns created, want 2: the same commit adopts", n)
	}
}

// Two commits that start alike give their AnalysisRuns the same name: the earlier one's run
// is replaced, never adopted.
func TestAnalysisRunner_ReplacesARunOfAnotherCommitWithTheSameName(t *testing.T) {
	f := newAnalysisFixture(true, template("AnalysisTemplate", ns, "http", []string{"http"}))
	refs := []verify.TemplateRef{{Name: "http"}}
	ctx := context.Background()
	first, again := request("aaaaaaaa1111111111111111111111111111111"), request("aaaaaaaa2222222222222222222222222222222")
	if _, err := f.runner().Run(ctx, first, refs); err != nil {
		t.Fatal(err)
	}
	f.setPhase(t, first, "Successful", "")
	res, err := f.runner().Run(ctx, again, refs)
	if err != nil || res.Phase != verify.Running || !strings.Contains(res.Message, "waiting for the previous run to be deleted") {
		t.Fatalf("Run = %+v, %v; want the other commit's run deleted, not adopted", res, err)
	}
	if res, err := f.runner().Run(ctx, again, refs); err != nil || res.Phase != verify.Running || f.count("create") != 2 {
		t.Fatalf("Run = %+v, %v, %d creates; want the new commit's run", res, err, f.count("create"))
	}
}
