package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/kubernetes-sigs/kro/api/v1alpha1"
	krocel "github.com/kubernetes-sigs/kro/pkg/cel"
	"github.com/kubernetes-sigs/kro/pkg/graph"
	"github.com/kubernetes-sigs/kro/pkg/metadata"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kropipe/kropipe/internal/render/schemas"
)

// DefaultCostLimit bounds the evaluation cost of each CEL expression of a template, in the
// units of the Kubernetes API server's per-call limit for CRD validation rules. kro itself sets
// no limit; an offline renderer inside the repo-server must not spin on a hostile expression.
const DefaultCostLimit uint64 = 1_000_000

// kroConfig mirrors the kro controller's default flags (--rgd-max-collection-size,
// --rgd-max-collection-dimension-size), so forEach expands exactly as in the cluster.
var kroConfig = graph.Config{MaxCollectionSize: 1000, MaxCollectionDimensionSize: 10}

// Definition is a compiled ResourceGraphDefinition: built once, rendered for many instances.
// It is safe for concurrent use.
type Definition struct {
	// Name is the RGD's metadata.name and File the repository path it was read from.
	Name string
	File string
	// InstanceGVK is the apiVersion/kind of the instances it renders.
	InstanceGVK schema.GroupVersionKind
	// Namespaced reports whether instances (and so their default namespace) are namespaced.
	Namespaced bool

	graph       *graph.Graph
	admission   *admission
	waves       map[string]int
	clusterOnly map[string][]clusterRef
}

// decodeRGD turns a YAML document into kro's API type, refusing unknown fields: a typo such as
// `includewhen` would otherwise be dropped silently and render something else.
func decodeRGD(doc document) (*v1alpha1.ResourceGraphDefinition, error) {
	data, err := json.Marshal(doc.obj.Object)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doc.where(), err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rgd v1alpha1.ResourceGraphDefinition
	if err := dec.Decode(&rgd); err != nil {
		return nil, fmt.Errorf("%s: ResourceGraphDefinition %q: %w", doc.where(), doc.obj.GetName(), err)
	}
	if rgd.Spec.Schema == nil {
		return nil, fmt.Errorf("%s: ResourceGraphDefinition %q: spec.schema is required", doc.where(), rgd.Name)
	}
	// The defaults the API server applies from kro's RGD CRD (+kubebuilder:default markers).
	if rgd.Spec.Schema.Group == "" {
		rgd.Spec.Schema.Group = metadata.KROInstancesGroupSuffix
	}
	if rgd.Spec.Schema.Scope == "" {
		rgd.Spec.Schema.Scope = v1alpha1.ResourceScopeNamespaced
	}
	return &rgd, nil
}

// instanceGVK is the apiVersion/kind instances of rgd carry, as kro derives it.
func instanceGVK(rgd *v1alpha1.ResourceGraphDefinition) schema.GroupVersionKind {
	group := rgd.Spec.Schema.Group
	if group == "" {
		group = metadata.KROInstancesGroupSuffix
	}
	return schema.GroupVersionKind{Group: group, Version: rgd.Spec.Schema.APIVersion, Kind: rgd.Spec.Schema.Kind}
}

// Compile builds a Definition with kro's graph builder against the offline schemas: SimpleSchema,
// CEL type checking, the resource DAG, includeWhen and forEach all come from kro itself.
func Compile(rgd *v1alpha1.ResourceGraphDefinition, file string, set *schemas.Set) (*Definition, error) {
	return compile(rgd, file, set, DefaultCostLimit)
}

// compile is Compile with a chosen cost limit; 0 keeps kro's own unbounded programs.
func compile(rgd *v1alpha1.ResourceGraphDefinition, file string, set *schemas.Set, costLimit uint64) (*Definition, error) {
	builder, err := graph.NewBuilder(nil, nil, graph.WithSchemaResolver(set), graph.WithRESTMapper(set.RESTMapper()))
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s: ResourceGraphDefinition %q", file, rgd.Name)
	g, err := builder.NewResourceGraphDefinition(rgd, kroConfig)
	if err != nil {
		return nil, &InvalidRGDError{Where: where, Err: err}
	}
	adm, err := newAdmission(g.CRD)
	if err != nil {
		return nil, &InvalidRGDError{Where: where, Err: err}
	}
	d := &Definition{
		Name:        rgd.Name,
		File:        file,
		InstanceGVK: instanceGVK(rgd),
		Namespaced:  rgd.Spec.Schema.Scope != v1alpha1.ResourceScopeCluster,
		graph:       g,
		admission:   adm,
		waves:       dagDepths(g),
	}
	if d.clusterOnly, err = findClusterOnly(g); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	// Offline, every rendered dependency counts as observed in its desired state, so readiness
	// gates (which read live status) are dropped; status and externalRef reads are refused
	// above instead of waiting forever.
	for _, n := range g.Nodes {
		n.ReadyWhen = nil
	}
	if costLimit > 0 {
		if err := limitCost(g, costLimit); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return d, nil
}

// InvalidRGDError is an RGD kro's graph builder refuses (the kro controller would mark it
// Inactive), or whose synthesized instance CRD the API server would refuse.
type InvalidRGDError struct {
	Where string // file and RGD name
	Err   error
}

func (e *InvalidRGDError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *InvalidRGDError) Unwrap() error { return e.Err }

// CRD is the instance CustomResourceDefinition kro synthesizes for the RGD.
func (d *Definition) CRD() *apiextensionsv1.CustomResourceDefinition { return d.graph.CRD }

// dagDepths gives each node its depth in the dependency DAG: 0 for nodes that depend on
// nothing but the instance, else one more than their deepest dependency. It becomes the
// Argo CD sync wave, so Argo CD applies in kro's order.
func dagDepths(g *graph.Graph) map[string]int {
	depths := make(map[string]int, len(g.TopologicalOrder))
	for _, id := range g.TopologicalOrder { // dependencies come first
		d := 0
		for _, dep := range g.Nodes[id].Meta.Dependencies {
			if dd, ok := depths[dep]; ok && dd+1 > d {
				d = dd + 1
			}
		}
		depths[id] = d
	}
	return depths
}

// limitCost recompiles every template, includeWhen and forEach expression with a runtime cost
// limit. kro's builder has already type-checked them against the schemas; the programs built
// here are checked against kro's own environment with every identifier dynamic, which yields
// the same values at runtime, only bounded.
func limitCost(g *graph.Graph, limit uint64) error {
	// `runtime` is declared by kro's base environment itself.
	ids := []string{graph.SchemaVarName, graph.EachVarName}
	for id, n := range g.Nodes {
		ids = append(ids, id)
		for _, dim := range n.ForEach {
			ids = append(ids, dim.Name)
		}
	}
	sort.Strings(ids)
	ids = dedupe(ids)
	env, err := krocel.DefaultEnvironment(krocel.WithResourceIDs(ids))
	if err != nil {
		return err
	}
	compile := func(e *krocel.Expression) error {
		ast, iss := env.Compile(e.Original)
		if iss != nil && iss.Err() != nil {
			return fmt.Errorf("expression %q: %w", e.UserExpression(), iss.Err())
		}
		prg, err := env.Program(ast, cel.CostLimit(limit))
		if err != nil {
			return fmt.Errorf("expression %q: %w", e.UserExpression(), err)
		}
		e.Program = prg
		return nil
	}
	for _, n := range g.Nodes {
		for _, v := range n.Variables {
			if err := compile(v.Expression); err != nil {
				return err
			}
		}
		for _, e := range n.IncludeWhen {
			if err := compile(e); err != nil {
				return err
			}
		}
		for _, dim := range n.ForEach {
			if err := compile(dim.Expression); err != nil {
				return err
			}
		}
	}
	return nil
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// displayExpr shows an expression the way its author wrote it in the RGD.
func displayExpr(e *krocel.Expression) string {
	if e.OriginalTemplate != "" {
		return e.OriginalTemplate
	}
	if strings.HasPrefix(e.Original, "${") {
		return e.Original
	}
	return "${" + e.Original + "}"
}
