package verify

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/clock"
)

// Argo Rollouts' resources, read and written as unstructured objects: kropipe does not
// depend on the Rollouts Go module.
var (
	AnalysisRunGVR             = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}
	AnalysisTemplateGVR        = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysistemplates"}
	ClusterAnalysisTemplateGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "clusteranalysistemplates"}
)

// Inconclusive is an analysis that could not decide: it holds the stage for a human.
const Inconclusive Phase = "Inconclusive"

// ErrNoRollouts is wrapped when the cluster has no Argo Rollouts AnalysisRun resource.
var ErrNoRollouts = errors.New("argo Rollouts is not installed")

// ErrBadAnalysis is wrapped when the analysis templates cannot make an AnalysisRun: a
// template missing, an argument kropipe cannot give, two metrics of the same name.
var ErrBadAnalysis = errors.New("analysis templates unusable")

// TemplateRef names an AnalysisTemplate, or with Cluster a ClusterAnalysisTemplate.
type TemplateRef struct {
	Name    string
	Cluster bool
}

func (t TemplateRef) String() string {
	if t.Cluster {
		return "ClusterAnalysisTemplate " + t.Name
	}
	return "AnalysisTemplate " + t.Name
}

// ParseTemplates reads kropipe.io/verify-analysis: names separated by commas, a
// ClusterAnalysisTemplate's with the prefix "cluster:".
func ParseTemplates(s string) ([]TemplateRef, error) {
	var out []TemplateRef
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ref := TemplateRef{Name: part}
		if n, ok := strings.CutPrefix(part, "cluster:"); ok {
			ref = TemplateRef{Name: strings.TrimSpace(n), Cluster: true}
		}
		if errs := validation.IsDNS1123Subdomain(ref.Name); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a template name (%s); list AnalysisTemplate names separated by commas, ClusterAnalysisTemplates as cluster:NAME", part, strings.Join(errs, "; "))
		}
		out = append(out, ref)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q names no template; list AnalysisTemplate names separated by commas, ClusterAnalysisTemplates as cluster:NAME", s)
	}
	return out, nil
}

// Args are the arguments kropipe passes to a template that declares them, named as
// Kargo users' templates expect them.
func Args(req Request) map[string]string {
	return map[string]string{
		"stage": req.Stage, "image": req.Freight.Image, "value": req.Value,
		"previous": req.Previous, "commit": req.Commit,
	}
}

// AnalysisRunner creates an Argo Rollouts AnalysisRun from a stage's templates for its
// freight and reads its phase. Like JobRunner it keeps no state: the run is named by stage,
// freight and promotion commit and adopted after a restart.
type AnalysisRunner struct {
	client    dynamic.Interface
	discovery discovery.DiscoveryInterface
	clock     clock.PassiveClock
	keep      int
}

// NewAnalysisRunner returns a runner using client, asking disc whether Rollouts is installed.
func NewAnalysisRunner(client dynamic.Interface, disc discovery.DiscoveryInterface, opts ...JobOption) *AnalysisRunner {
	j := &JobRunner{clock: clock.RealClock{}, keep: DefaultKeep}
	for _, o := range opts {
		o(j)
	}
	return &AnalysisRunner{client: client, discovery: disc, clock: j.clock, keep: j.keep}
}

// RunName is the AnalysisRun made for stage and freight id promoted at commit.
func RunName(stage, id, commit string) string { return JobName(stage, "analysis", id, commit) }

// Run makes sure the request's AnalysisRun exists and returns its outcome: Passed when
// Successful, Failed when Failed or Error or past the timeout (the run is then
// terminated), Inconclusive, else Running.
func (r *AnalysisRunner) Run(ctx context.Context, req Request, templates []TemplateRef) (Result, error) {
	r = r.in(req.Cluster)
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	id := req.Freight.ID()
	name := RunName(req.Stage, id, req.Commit)
	runs := r.client.Resource(AnalysisRunGVR).Namespace(req.Namespace)
	run, err := runs.Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		if run.GetLabels()[LabelFreight] != id || run.GetLabels()[LabelStage] != labelValue(req.Stage) {
			return Result{}, fmt.Errorf("AnalysisRun %s/%s exists but was not created by kropipe for stage %q and freight %s; delete or rename it", req.Namespace, name, req.Stage, id)
		}
		if run.GetDeletionTimestamp() != nil {
			return Result{Phase: Running, Message: fmt.Sprintf("analysis %s (waiting for the previous run to be deleted)", name)}, nil
		}
		if got := run.GetAnnotations()[AnnCommit]; got != req.Commit {
			// Ours, for another promotion commit whose name is the same: no verdict on
			// this one. The new run is made once it is gone.
			if err := runs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return Result{}, fmt.Errorf("AnalysisRun %s/%s judged commit %s, not %s, and could not be deleted: %w", req.Namespace, name, orNone(got), req.Commit, err)
			}
			return Result{Phase: Running, Message: fmt.Sprintf("analysis %s (waiting for the previous run to be deleted)", name)}, nil
		}
	case apierrors.IsNotFound(err):
		if err := r.installed(); err != nil {
			return Result{}, err
		}
		want, err := r.build(ctx, req, name, templates)
		if err != nil {
			return Result{}, err
		}
		run, err = runs.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			run, err = runs.Get(ctx, name, metav1.GetOptions{})
		}
		if err != nil {
			return Result{}, fmt.Errorf("creating AnalysisRun %s/%s: %w", req.Namespace, name, err)
		}
	default:
		return Result{}, fmt.Errorf("reading AnalysisRun %s/%s: %w", req.Namespace, name, err)
	}
	phase, _, _ := unstructured.NestedString(run.Object, "status", "phase")
	message, _, _ := unstructured.NestedString(run.Object, "status", "message")
	what := "analysis " + name
	started, err := time.Parse(time.RFC3339, run.GetAnnotations()[AnnStarted])
	if err != nil {
		started = run.GetCreationTimestamp().Time
	}
	switch phase {
	case "Successful", "Failed", "Error", "Inconclusive":
		r.cleanUp(ctx, req)
	}
	switch phase { // Argo Rollouts' AnalysisPhase values
	case "Successful":
		return Result{Phase: Passed, Message: what + " successful", Started: started}, nil
	case "Failed", "Error":
		return Result{Phase: Failed, Message: fmt.Sprintf("%s %s", what, strings.ToLower(phase)) + orMessage(message), Started: started}, nil
	case "Inconclusive":
		return Result{Phase: Inconclusive, Message: what + " inconclusive" + orMessage(message), Started: started}, nil
	}
	ran := r.clock.Since(started)
	if !started.IsZero() && ran >= timeout {
		// Stop its measurements: nobody waits for them any more.
		_, _ = runs.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"terminate":true}}`), metav1.PatchOptions{})
		return Result{Phase: Failed, Message: fmt.Sprintf("%s did not finish within %s (kropipe.io/verify-timeout)", what, timeout), Started: started}, nil
	}
	return Result{Phase: Running, Message: fmt.Sprintf("%s (%s %s)", what, strings.ToLower(orDefault(phase, "pending")), ran.Round(time.Second)), Started: started}, nil
}

// Forget deletes the stage's AnalysisRuns for value in namespace of cluster (nil: the
// runner's own), so the next Run starts a new one (promoter verify). A cluster without
// Rollouts has none to delete.
func (r *AnalysisRunner) Forget(ctx context.Context, cluster *Cluster, namespace, stage, value string) (int, error) {
	runs := r.in(cluster).client.Resource(AnalysisRunGVR).Namespace(namespace)
	list, err := runs.List(ctx, metav1.ListOptions{LabelSelector: LabelStage + "=" + labelValue(stage)})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("listing the AnalysisRuns of stage %q in %s: %w", stage, namespace, err)
	}
	n := 0
	for _, u := range list.Items {
		if u.GetAnnotations()[AnnValue] != value || u.GetDeletionTimestamp() != nil {
			continue
		}
		if err := runs.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return n, fmt.Errorf("deleting AnalysisRun %s/%s: %w", namespace, u.GetName(), err)
		}
		n++
	}
	return n, nil
}

// in is the runner working in cluster: the same runner with the cluster's clients, itself
// for nil.
func (r *AnalysisRunner) in(cluster *Cluster) *AnalysisRunner {
	if cluster == nil {
		return r
	}
	c := *r
	c.client, c.discovery = cluster.Dynamic, cluster.Kube.Discovery()
	return &c
}

// cleanUp deletes the stage's finished AnalysisRuns of other freight or commits beyond the
// newest r.keep (the freight being verified at its commit counts as one). Failures are
// ignored: the next verification tries again.
func (r *AnalysisRunner) cleanUp(ctx context.Context, req Request) {
	runs := r.client.Resource(AnalysisRunGVR).Namespace(req.Namespace)
	list, err := runs.List(ctx, metav1.ListOptions{LabelSelector: LabelStage + "=" + labelValue(req.Stage)})
	if err != nil {
		return
	}
	var finished []unstructured.Unstructured
	for _, u := range list.Items {
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		if !current(u.GetLabels(), u.GetAnnotations(), req) && (phase == "Successful" || phase == "Failed" || phase == "Error" || phase == "Inconclusive") {
			finished = append(finished, u)
		}
	}
	startedOf := func(u *unstructured.Unstructured) time.Time {
		if t, err := time.Parse(time.RFC3339, u.GetAnnotations()[AnnStarted]); err == nil {
			return t
		}
		return u.GetCreationTimestamp().Time
	}
	sort.Slice(finished, func(i, j int) bool { return startedOf(&finished[i]).After(startedOf(&finished[j])) })
	for i := max(r.keep-1, 0); i < len(finished); i++ {
		_ = runs.Delete(ctx, finished[i].GetName(), metav1.DeleteOptions{})
	}
}

// installed reports ErrNoRollouts when the API server does not serve AnalysisRuns.
func (r *AnalysisRunner) installed() error {
	list, err := r.discovery.ServerResourcesForGroupVersion(AnalysisRunGVR.GroupVersion().String())
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("asking the cluster whether Argo Rollouts is installed: %w", err)
	}
	if list != nil {
		for _, res := range list.APIResources {
			if res.Name == AnalysisRunGVR.Resource {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: the cluster serves no analysisruns.argoproj.io; install Argo Rollouts' CRDs or remove kropipe.io/verify-analysis", ErrNoRollouts)
}

// build makes the AnalysisRun from the templates as Kargo does: their metrics, dry-run and
// measurement-retention rules concatenated (a name twice is an error), their arguments
// merged, then kropipe's arguments given to those the templates declare; an argument left
// without a value is an error.
func (r *AnalysisRunner) build(ctx context.Context, req Request, name string, templates []TemplateRef) (*unstructured.Unstructured, error) {
	var metrics, dryRun, retention, args []any
	seen := map[string]map[string]string{"metric": {}, "dryRun": {}, "measurementRetention": {}}
	add := func(kind, key, from string, items []any, to *[]any) error {
		for _, it := range items {
			m, _ := it.(map[string]any)
			n, _ := m[key].(string)
			if prev, dup := seen[kind][n]; dup {
				return fmt.Errorf("%w: %s and %s both have the %s %q; rename one", ErrBadAnalysis, prev, from, kind, n)
			}
			seen[kind][n] = from
			*to = append(*to, it)
		}
		return nil
	}
	for _, ref := range templates {
		gvr, ns := AnalysisTemplateGVR, req.Namespace
		if ref.Cluster {
			gvr, ns = ClusterAnalysisTemplateGVR, ""
		}
		t, err := r.client.Resource(gvr).Namespace(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			where := " in namespace " + req.Namespace
			if ref.Cluster {
				where = ""
			}
			return nil, fmt.Errorf("%w: %s not found%s", ErrBadAnalysis, ref, where)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", ref, err)
		}
		spec, _, _ := unstructured.NestedMap(t.Object, "spec")
		ms, _ := spec["metrics"].([]any)
		dr, _ := spec["dryRun"].([]any)
		mr, _ := spec["measurementRetention"].([]any)
		if err := add("metric", "name", ref.String(), ms, &metrics); err != nil {
			return nil, err
		}
		if err := add("dryRun", "metricName", ref.String(), dr, &dryRun); err != nil {
			return nil, err
		}
		if err := add("measurementRetention", "metricName", ref.String(), mr, &retention); err != nil {
			return nil, err
		}
		as, _ := spec["args"].([]any)
		for _, a := range as {
			var err error
			if args, err = mergeArg(args, a, ref); err != nil {
				return nil, err
			}
		}
	}
	ours := Args(req)
	for _, a := range args {
		m := a.(map[string]any)
		n, _ := m["name"].(string)
		if v, ok := ours[n]; ok {
			m["value"] = v
			delete(m, "valueFrom")
			continue
		}
		if _, ok := m["value"]; !ok && m["valueFrom"] == nil {
			return nil, fmt.Errorf("%w: argument %q has no value and kropipe does not pass it (it passes stage, image, value, previous and commit); give it a value in the template", ErrBadAnalysis, n)
		}
	}
	spec := map[string]any{"metrics": metrics}
	if len(args) > 0 {
		spec["args"] = args
	}
	if len(dryRun) > 0 {
		spec["dryRun"] = dryRun
	}
	if len(retention) > 0 {
		spec["measurementRetention"] = retention
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "AnalysisRun",
		"spec":       spec,
	}}
	u.SetName(name)
	u.SetNamespace(req.Namespace)
	u.SetLabels(runLabels(req))
	u.SetAnnotations(map[string]string{AnnStarted: r.clock.Now().UTC().Format(time.RFC3339), AnnValue: req.Value, AnnCommit: req.Commit})
	return u, nil
}

// mergeArg adds a template's argument, as Kargo's flattenArgs: the same name twice must
// not have two different values; a value wins over none.
func mergeArg(args []any, a any, from TemplateRef) ([]any, error) {
	m, _ := a.(map[string]any)
	n, _ := m["name"].(string)
	for i, prev := range args {
		p := prev.(map[string]any)
		if p["name"] != n {
			continue
		}
		pv, pok := p["value"]
		nv, nok := m["value"]
		if pok && nok && pv != nv {
			return nil, fmt.Errorf("%w: argument %q is given the values %q and %q (the second in %s)", ErrBadAnalysis, n, pv, nv, from)
		}
		if !pok {
			args[i] = copyMap(m)
		}
		return args, nil
	}
	return append(args, copyMap(m)), nil
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func orMessage(m string) string {
	if m == "" {
		return ""
	}
	return ": " + m
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
