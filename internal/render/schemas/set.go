// Package schemas gives kro's graph builder the OpenAPI schemas and REST mappings a cluster would,
// without a cluster: built-in kinds from embedded Kubernetes release snapshots, the rest from CRDs.
package schemas

import (
	"fmt"
	"path"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/kube-openapi/pkg/validation/spec"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/kropipe/kropipe/internal/render/schemas/packed"
)

// Set resolves schemas and REST mappings for one Kubernetes version plus the CRDs added to it.
// Built-in schemas are parsed on first use and cached, so a process that renders one instance pays
// only for the group-versions it touches. All methods are safe for concurrent use.
type Set struct {
	kubeVersion string
	dir         string // embedded snapshot directory
	builtins    map[schema.GroupVersionKind]builtinKind
	index       *index // the snapshot's, shared by its Sets
	warn        func(msg string)

	mu       sync.Mutex
	kinds    *packed.Archive // packed built-in schemas, opened on first use
	resolved map[schema.GroupVersionKind]*spec.Schema
	crds     map[schema.GroupVersionKind]*crdKind
	warned   map[schema.GroupVersionKind]bool
	mapper   *meta.DefaultRESTMapper // rebuilt by AddCRD; read under mu
}

var _ resolver.SchemaResolver = (*Set)(nil)

type options struct {
	kubeVersion string
	crds        []*apiextensionsv1.CustomResourceDefinition
	warn        func(string)
}

// Option configures New.
type Option func(*options)

// WithKubeVersion selects the embedded snapshot closest to v ("v1.34.2", "1.34",
// "v1.34.0+k3s1"): the same minor, else the nearest lower one, else the oldest. "" selects the
// newest.
func WithKubeVersion(v string) Option { return func(o *options) { o.kubeVersion = v } }

// WithCRDs adds CRDs as AddCRD does; New fails if one of them is invalid.
func WithCRDs(crds ...*apiextensionsv1.CustomResourceDefinition) Option {
	return func(o *options) { o.crds = append(o.crds, crds...) }
}

// WithWarnings receives one message per kind that is neither built in nor defined by a CRD, and
// so is not type-checked; the message names the kind.
func WithWarnings(f func(msg string)) Option { return func(o *options) { o.warn = f } }

// New selects a snapshot and adds the given CRDs. It parses no schema yet.
func New(opts ...Option) (*Set, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	all, err := embeddedSnapshots()
	if err != nil {
		return nil, err
	}
	snap, err := pickSnapshot(o.kubeVersion, all)
	if err != nil {
		return nil, err
	}
	dir := path.Join("data", snap.name)
	idx, err := cachedIndex(dir)
	if err != nil {
		return nil, err
	}
	s := &Set{
		kubeVersion: idx.kubeVersion,
		dir:         dir,
		builtins:    idx.builtins, // shared by every Set of the snapshot: only read
		index:       idx,
		warn:        o.warn,
		resolved:    make(map[schema.GroupVersionKind]*spec.Schema),
		crds:        make(map[schema.GroupVersionKind]*crdKind),
		warned:      make(map[schema.GroupVersionKind]bool),
	}
	s.rebuildMapper()
	for _, crd := range o.crds {
		if err := s.AddCRD(crd); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// KubeVersion is the Kubernetes release whose built-in schemas the Set serves, e.g. "v1.34.4".
func (s *Set) KubeVersion() string { return s.kubeVersion }

// Known reports whether gvk has a real schema: built into the snapshot or defined by a CRD.
func (s *Set) Known(gvk schema.GroupVersionKind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.knownLocked(gvk)
}

func (s *Set) knownLocked(gvk schema.GroupVersionKind) bool {
	if _, ok := s.crds[gvk]; ok {
		return true
	}
	_, ok := s.builtins[gvk]
	return ok
}

// ResolveSchema returns the schema of gvk with every $ref inlined, as kro's builder expects it.
// A kind without a schema gets a permissive object schema (x-kubernetes-preserve-unknown-fields),
// which kro type-checks as dyn, and the warning callback hears about it once.
// Returned schemas are shared: callers must not modify them.
func (s *Set) ResolveSchema(gvk schema.GroupVersionKind) (*spec.Schema, error) {
	s.mu.Lock()
	sch, msg, err := s.resolveLocked(gvk)
	s.mu.Unlock()
	if msg != "" && s.warn != nil {
		s.warn(msg)
	}
	return sch, err
}

func (s *Set) resolveLocked(gvk schema.GroupVersionKind) (*spec.Schema, string, error) {
	if sch, ok := s.resolved[gvk]; ok {
		return sch, "", nil
	}
	var (
		sch *spec.Schema
		msg string
		err error
	)
	if crd, ok := s.crds[gvk]; ok {
		sch, err = s.crdSchemaLocked(crd)
	} else if b, ok := s.builtins[gvk]; ok {
		sch, err = s.builtinSchemaLocked(gvk, b)
	} else {
		sch, msg = permissiveSchema(), s.unknownKindLocked(gvk)
	}
	if err != nil {
		return nil, "", fmt.Errorf("schema of %s (Kubernetes %s): %w", describe(gvk), s.kubeVersion, err)
	}
	s.resolved[gvk] = sch
	return sch, msg, nil
}

// builtinSchemaLocked decodes the schema ./gen resolved for a built-in kind with the API
// server's own resolver (resolver.PopulateRefs: allOf-wrapped refs unwrapped, reference cycles
// such as JSONSchemaProps broken with a plain object).
func (s *Set) builtinSchemaLocked(gvk schema.GroupVersionKind, b builtinKind) (*spec.Schema, error) {
	return s.packedSchemaLocked(packed.KindKey(b.file, gvk.Kind))
}

// packedSchemaLocked decodes the schema stored under key in the snapshot's archive.
func (s *Set) packedSchemaLocked(key string) (*spec.Schema, error) {
	if s.kinds == nil {
		a, err := loadKinds(s.dir)
		if err != nil {
			return nil, err
		}
		s.kinds = a
	}
	sch, ok, err := s.kinds.Schema(key)
	if err != nil {
		return nil, fmt.Errorf("embedded schema data %s: %w", s.dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("embedded schema data %s has no schema %s: run go generate in internal/render/schemas", s.dir, key)
	}
	return sch, nil
}

// permissiveSchema accepts any object. kro parses templates under it without a schema and types
// references to its fields as dyn, which is what a kind nobody described deserves.
func permissiveSchema() *spec.Schema {
	sch := &spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}}}
	sch.AddExtension("x-kubernetes-preserve-unknown-fields", true)
	return sch
}

// unknownKindLocked returns the warning for a kind the Set cannot describe fully, or "" if the
// kind was already reported. One message covers both a missing schema and a guessed mapping,
// because kro asks for both.
func (s *Set) unknownKindLocked(gvk schema.GroupVersionKind) string {
	if s.warned[gvk] {
		return ""
	}
	s.warned[gvk] = true
	plural, _ := meta.UnsafeGuessKindToResource(gvk)
	_, mapErr := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case !s.knownLocked(gvk) && mapErr != nil:
		return fmt.Sprintf("%s is not built into Kubernetes %s and no CRD defines it: its fields are not type-checked, and it is assumed namespaced with resource %q; add its CRD to check it",
			describe(gvk), s.kubeVersion, plural.Resource)
	case mapErr != nil:
		return fmt.Sprintf("%s has no REST resource in Kubernetes %s: it is assumed namespaced with resource %q", describe(gvk), s.kubeVersion, plural.Resource)
	default:
		return fmt.Sprintf("%s has no schema in Kubernetes %s: its fields are not type-checked", describe(gvk), s.kubeVersion)
	}
}

// describe names a kind the way a manifest does: kind Deployment (apps/v1).
func describe(gvk schema.GroupVersionKind) string {
	return fmt.Sprintf("kind %s (%s)", gvk.Kind, gvk.GroupVersion().String())
}
