package render

import (
	"context"
	"fmt"
	"strings"

	kroruntime "github.com/kubernetes-sigs/kro/pkg/runtime"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Object is one rendered Kubernetes object with the RGD node it came from.
type Object struct {
	NodeID string
	// Wave is the node's depth in the RGD's dependency DAG.
	Wave   int
	Object *unstructured.Unstructured
}

// Render evaluates the definition for one instance and returns its objects in kro's
// topological order. The instance is admitted first (defaults and validation, as the API server
// would) and given namespace when it has none and the RGD is namespaced. where names the
// instance in errors, e.g. its file.
func (d *Definition) Render(ctx context.Context, where string, instance *unstructured.Unstructured, namespace string) ([]Object, error) {
	inst := instance.DeepCopy()
	where = fmt.Sprintf("%s: %s %q", where, d.InstanceGVK.Kind, inst.GetName())
	if gvk := inst.GroupVersionKind(); gvk != d.InstanceGVK {
		return nil, fmt.Errorf("%s: apiVersion/kind %s is not %s of ResourceGraphDefinition %q (%s)",
			where, gvk, d.InstanceGVK, d.Name, d.File)
	}
	// As the API server does on create (rest.BeforeCreate): a namespaced object without a
	// namespace gets the request's, a cluster-scoped one loses any it names.
	if !d.Namespaced {
		inst.SetNamespace("")
	} else if inst.GetNamespace() == "" {
		inst.SetNamespace(namespace)
	}
	if err := d.admission.admit(ctx, inst); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}

	rt, err := kroruntime.FromGraph(d.graph, kroConfig, kroruntime.WithInstance(inst))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var out []Object
	for _, node := range rt.Nodes() {
		id := node.Spec.Meta.ID
		if isExternal(node.Spec) {
			continue // read from the cluster by kro, never applied
		}
		refs := d.clusterOnly[id]
		for _, r := range refs {
			if r.Field == "includeWhen" {
				return nil, r.error(where, id)
			}
		}
		ignored, err := node.IsIgnored()
		if err != nil {
			return nil, d.evalError(where, id, err)
		}
		if ignored {
			continue
		}
		if len(refs) > 0 {
			return nil, refs[0].error(where, id)
		}
		desired, err := node.GetDesired()
		if err != nil {
			return nil, d.evalError(where, id, err)
		}
		observed := make([]*unstructured.Unstructured, len(desired))
		for i, o := range desired {
			observed[i] = o.DeepCopy()
			out = append(out, Object{NodeID: id, Wave: d.waves[id], Object: o})
		}
		node.SetObserved(observed)
	}
	return out, nil
}

// evalError explains a runtime failure. Data kro would wait for in a cluster never arrives
// offline, so "pending" becomes an error rather than an empty field.
func (d *Definition) evalError(where, id string, err error) error {
	if strings.Contains(err.Error(), "cost limit exceeded") {
		return fmt.Errorf("%s: resource %q: a CEL expression exceeds the cost limit of %d (the Kubernetes "+
			"per-call limit for CEL rules): simplify it or bound its loops: %w", where, id, DefaultCostLimit, err)
	}
	if kroruntime.IsDataPending(err) {
		return &NeedsClusterError{Err: fmt.Errorf("%s: resource %q needs data only a live cluster can provide: %w", where, id, err)}
	}
	return fmt.Errorf("%s: resource %q: %w", where, id, err)
}
