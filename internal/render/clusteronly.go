package render

import (
	"fmt"
	"sort"
	"strings"

	krocel "github.com/kubernetes-sigs/kro/pkg/cel"
	"github.com/kubernetes-sigs/kro/pkg/cel/ast"
	"github.com/kubernetes-sigs/kro/pkg/cel/library"
	"github.com/kubernetes-sigs/kro/pkg/graph"
)

// serverSetMetadata are the metadata fields only the API server fills in: offline they do not
// exist, for the instance or for any rendered resource.
var serverSetMetadata = map[string]bool{
	"uid": true, "resourceVersion": true, "generation": true, "creationTimestamp": true,
	"deletionTimestamp": true, "managedFields": true, "selfLink": true,
}

// clusterRef is one expression of a node that reads data only a live cluster can provide.
type clusterRef struct {
	Field     string // the template path, or includeWhen / forEach.<name>
	Expr      string // as written in the RGD
	Reference string // the access path, e.g. deployment.status.availableReplicas
	Why       string
}

// NeedsClusterError is a render that needs data only a live cluster has: another resource's
// status, server-set metadata, externalRef data, or a field kro would wait for.
type NeedsClusterError struct{ Err error }

func (e *NeedsClusterError) Error() string { return e.Err.Error() }
func (e *NeedsClusterError) Unwrap() error { return e.Err }

func (r clusterRef) error(where, nodeID string) error {
	return &NeedsClusterError{Err: fmt.Errorf("%s: resource %q field %s: expression %s reads %s, %s. cmp-sidecar renders "+
		"offline and never emits a manifest with this field missing: compute the value from the "+
		"instance spec or from another resource's spec or metadata instead",
		where, nodeID, r.Field, r.Expr, r.Reference, r.Why)}
}

// findClusterOnly inspects every expression of every resource node and records the ones that
// read another resource's status, server-set metadata, or an externalRef's data. The check is
// static so the error can name the field and the expression; it fires only when the node is
// actually rendered (an includeWhen may exclude it).
func findClusterOnly(g *graph.Graph) (map[string][]clusterRef, error) {
	ids := []string{graph.SchemaVarName, graph.EachVarName}
	for id := range g.Nodes {
		ids = append(ids, id)
	}
	env, err := krocel.DefaultEnvironment(krocel.WithResourceIDs(ids))
	if err != nil {
		return nil, err
	}
	inspector := ast.NewInspectorWithEnv(env, append(ids, library.RuntimeVarName))

	out := map[string][]clusterRef{}
	for id, n := range g.Nodes {
		if isExternal(n) {
			continue
		}
		check := func(field string, e *krocel.Expression) error {
			insp, err := inspector.Inspect(e.Original)
			if err != nil {
				return fmt.Errorf("resource %q field %s: %w", id, field, err)
			}
			for _, dep := range insp.ResourceDependencies {
				if why := clusterOnlyReason(g, id, dep.ID, dep.Path); why != "" {
					out[id] = append(out[id], clusterRef{Field: field, Expr: displayExpr(e), Reference: dep.Path, Why: why})
					return nil
				}
			}
			return nil
		}
		for _, e := range n.IncludeWhen {
			if err := check("includeWhen", e); err != nil {
				return nil, err
			}
		}
		for _, dim := range n.ForEach {
			if err := check("forEach."+dim.Name, dim.Expression); err != nil {
				return nil, err
			}
		}
		for _, v := range n.Variables {
			if err := check(v.Path, v.Expression); err != nil {
				return nil, err
			}
		}
	}
	for id := range out {
		refs := out[id]
		sort.SliceStable(refs, func(i, j int) bool { return refs[i].Field < refs[j].Field })
	}
	return out, nil
}

func isExternal(n *graph.Node) bool {
	return n.Meta.Type == graph.NodeTypeExternal || n.Meta.Type == graph.NodeTypeExternalCollection
}

// clusterOnlyReason says why path (rooted at ref) cannot be answered offline, or "".
func clusterOnlyReason(g *graph.Graph, self, ref, path string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(path, ref), ".")
	first, second, _ := strings.Cut(rest, ".")
	switch {
	case ref == graph.SchemaVarName:
		if first == "metadata" && serverSetMetadata[second] {
			return "the instance's metadata." + second + ", which the API server sets"
		}
		return ""
	case ref == graph.EachVarName || ref == library.RuntimeVarName:
		return ""
	}
	n, ok := g.Nodes[ref]
	if !ok || ref == self {
		return ""
	}
	if isExternal(n) {
		return fmt.Sprintf("data of the externalRef %q, which exists only in the cluster", ref)
	}
	if first == "status" {
		return fmt.Sprintf("the status of resource %q, which only its controller in a live cluster writes", ref)
	}
	if first == "metadata" && serverSetMetadata[second] {
		return fmt.Sprintf("metadata.%s of resource %q, which the API server sets", second, ref)
	}
	return ""
}
