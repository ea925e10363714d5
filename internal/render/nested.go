package render

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NestedMode says what happens to an RGD resource that is an instance of another RGD.
type NestedMode string

const (
	// NestedExpand renders a nested instance into its own RGD's objects, level by level as kro
	// would in the cluster, so the cluster needs neither kro nor the nested CRDs.
	NestedExpand NestedMode = "expand"
	// NestedEmit prints the nested instance itself, for clusters where kro runs.
	NestedEmit NestedMode = "emit"
)

// ParseNestedMode reads the nested-instances plugin parameter; empty means NestedExpand.
func ParseNestedMode(s string) (NestedMode, error) {
	switch NestedMode(s) {
	case "", NestedExpand:
		return NestedExpand, nil
	case NestedEmit:
		return NestedEmit, nil
	}
	return "", fmt.Errorf("nested-instances: %q is neither %q nor %q", s, NestedExpand, NestedEmit)
}

// MaxNestingDepth bounds how many RGD instances deep expansion goes (the top instance is 1).
const MaxNestingDepth = 10

var (
	// ErrNestingCycle is returned (wrapped) when an RGD's objects nest an instance of an RGD
	// already being expanded above it (A nests B nests A).
	ErrNestingCycle = errors.New("RGD nesting cycle")
	// ErrNestingTooDeep is returned (wrapped) past MaxNestingDepth levels of nested instances.
	ErrNestingTooDeep = errors.New("RGD nesting too deep")
)

// AnnotationChain names every instance from the top one down to the one that created the
// object, e.g. "App shop > Database shop-db", when the object comes from a nested instance.
const AnnotationChain = "kropipe.io/instance-chain"

// nestedObject is one rendered object with where it sits in the tree of instances.
type nestedObject struct {
	Object
	def   *Definition
	path  []string // resource ids from the top instance down, e.g. db, cm
	waves []int    // DAG depth at each level
	chain []string // "Kind name" of each instance, top first
}

// level is one instance being expanded, for cycle and depth checks and messages.
type level struct {
	gvk  schema.GroupVersionKind
	name string
}

// renderTree renders an instance and, in expand mode, every object it yields that is an
// instance of a repository RGD, recursively. The nested instance goes through the child RGD as
// kro would take it from the API server: admission (defaults, validation), then the child's
// DAG, includeWhen and forEach; it keeps the namespace kro's runtime gave it.
func (e *Engine) renderTree(ctx context.Context, where string, def *Definition, inst *unstructured.Unstructured,
	namespace string, parent *nestedObject, levels []level) ([]nestedObject, error) {
	levels = append(levels, level{gvk: def.InstanceGVK, name: inst.GetName()})
	objs, err := def.Render(ctx, where, inst, namespace)
	if err != nil {
		return nil, err
	}
	var out []nestedObject
	for _, o := range objs {
		n := nestedObject{Object: o, def: def, path: []string{o.NodeID}, waves: []int{o.Wave},
			chain: []string{def.InstanceGVK.Kind + " " + inst.GetName()}}
		if parent != nil {
			n.path = append(append([]string(nil), parent.path...), o.NodeID)
			n.waves = append(append([]int(nil), parent.waves...), o.Wave)
			n.chain = append(append([]string(nil), parent.chain...), n.chain...)
		}
		child, nested := e.nestedDefinition(o.Object)
		if !nested || e.opts.nested == NestedEmit {
			out = append(out, n)
			continue
		}
		childWhere := fmt.Sprintf("%s: %s %q: resource %q of %s (an instance of ResourceGraphDefinition %q in %s)",
			where, def.InstanceGVK.Kind, inst.GetName(), o.NodeID, def.File, child.Name, child.File)
		for _, l := range levels {
			if l.gvk == child.InstanceGVK {
				return nil, fmt.Errorf("%s: %s %q: %w: %s: an RGD must not nest an instance of itself, directly or "+
					"through others; break the loop or set the plugin parameter nested-instances: emit",
					childWhere, o.Object.GetKind(), o.Object.GetName(), ErrNestingCycle, chainText(levels, child.InstanceGVK.Kind))
			}
		}
		if len(levels) >= MaxNestingDepth {
			return nil, fmt.Errorf("%s: %s %q: %w: %s: more than %d levels of nested instances; flatten the RGDs",
				childWhere, o.Object.GetKind(), o.Object.GetName(), ErrNestingTooDeep, chainText(levels, child.InstanceGVK.Kind), MaxNestingDepth)
		}
		inner, err := e.renderTree(ctx, childWhere, child, o.Object, o.Object.GetNamespace(), &n, levels)
		if err != nil {
			return nil, err
		}
		out = append(out, inner...)
	}
	return out, nil
}

func chainText(levels []level, next string) string {
	var kinds []string
	for _, l := range levels {
		kinds = append(kinds, l.gvk.Kind)
	}
	return strings.Join(append(kinds, next), " → ")
}

// nestedDefinition returns the RGD whose instance obj is, if the repository has one.
func (e *Engine) nestedDefinition(obj *unstructured.Unstructured) (*Definition, bool) {
	gvk := obj.GroupVersionKind()
	e.mu.Lock()
	_, defined := e.sources[gvk]
	e.mu.Unlock()
	if !defined {
		return nil, false
	}
	def, err := e.Definition(gvk)
	if err != nil {
		return nil, false // the parent compiled against it, so this does not happen
	}
	return def, true
}

// waveRanks orders the objects of one top instance: by the parent's DAG depth, then, inside
// an expanded instance, by the child's, and so on. Dense ranks of those tuples become the sync
// waves, so a flat RGD keeps its DAG depths and a nested one slots its children in between.
func waveRanks(objs []nestedObject) []int {
	byKey := map[string][]int{}
	for _, o := range objs {
		byKey[waveKey(o.waves)] = o.waves
	}
	ordered := make([][]int, 0, len(byKey))
	for _, w := range byKey {
		ordered = append(ordered, w)
	}
	sort.Slice(ordered, func(i, j int) bool { return slices.Compare(ordered[i], ordered[j]) < 0 })
	rank := make(map[string]int, len(ordered))
	for i, w := range ordered {
		rank[waveKey(w)] = i
	}
	out := make([]int, len(objs))
	for i, o := range objs {
		out[i] = rank[waveKey(o.waves)]
	}
	return out
}

func waveKey(waves []int) string { return fmt.Sprint(waves) }

// decorateNested labels an object with the top instance, the RGD that created it and its
// resource path from the top (ids joined with "."), and gives it its sync wave.
func (e *Engine) decorateNested(o nestedObject, top string, wave int) {
	obj := o.Object.Object
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelInstance] = labelValue(top)
	labels[LabelRGD] = labelValue(o.def.Name)
	labels[LabelResource] = labelValue(strings.Join(o.path, "."))
	obj.SetLabels(labels)
	ann := obj.GetAnnotations()
	if len(o.chain) > 1 {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[AnnotationChain] = strings.Join(o.chain, " > ")
	}
	if e.opts.syncWaves {
		if _, explicit := ann[SyncWaveAnnotation]; !explicit {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[SyncWaveAnnotation] = strconv.Itoa(wave)
		}
	}
	if ann != nil {
		obj.SetAnnotations(ann)
	}
	e.checkServed(fmt.Sprintf("%s %q", obj.GetKind(), obj.GetName()), obj.GetAPIVersion(), obj.GetKind())
}
