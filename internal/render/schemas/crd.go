package schemas

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/yaml"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/kropipe/kropipe/internal/render/schemas/packed"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
)

// crdKind is one served version of a CRD: its schema as the apiserver would publish it, minus the
// ObjectMeta, which comes from the snapshot when the schema is first resolved.
type crdKind struct {
	name       string // CRD name, for errors
	schema     *spec.Schema
	complete   bool // schema has been given apiVersion, kind and ObjectMeta
	plural     string
	singular   string
	namespaced bool
}

// ParseCRDs reads apiextensions.k8s.io/v1 CustomResourceDefinitions from multi-document YAML
// (or JSON). Documents of other kinds are skipped; v1beta1 CRDs are an error, as no supported
// Kubernetes serves them.
func ParseCRDs(data []byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*apiextensionsv1.CustomResourceDefinition
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if head.Kind != "CustomResourceDefinition" {
			continue
		}
		if head.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
			return nil, fmt.Errorf("document %d: CustomResourceDefinition %q is %s; only %s is supported, convert it",
				doc, head.Metadata.Name, head.APIVersion, apiextensionsv1.SchemeGroupVersion)
		}
		crd := new(apiextensionsv1.CustomResourceDefinition)
		if err := yaml.Unmarshal(raw, crd); err != nil {
			return nil, fmt.Errorf("document %d: CustomResourceDefinition %q: %w", doc, head.Metadata.Name, err)
		}
		out = append(out, crd)
	}
}

// AddCRD makes every served version of crd resolvable and mappable. The schema goes through the
// same conversion the apiserver applies before publishing it (structural schema, unfolded
// int-or-string), so kro sees what it would see in a cluster.
func (s *Set) AddCRD(crd *apiextensionsv1.CustomResourceDefinition) error {
	if crd == nil {
		return errors.New("AddCRD: nil CustomResourceDefinition")
	}
	names := crd.Spec.Names
	if crd.Spec.Group == "" || names.Kind == "" || names.Plural == "" {
		return fmt.Errorf("CustomResourceDefinition %q: spec.group, spec.names.kind and spec.names.plural are required", crd.Name)
	}
	kinds := make(map[schema.GroupVersionKind]*crdKind)
	for i, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		fld := field.NewPath("spec", "versions").Index(i).Child("schema", "openAPIV3Schema")
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			return fmt.Errorf("CustomResourceDefinition %q: %s is missing; apiextensions.k8s.io/v1 requires a schema for version %s", crd.Name, fld, v.Name)
		}
		sch, err := crdSchema(v.Schema.OpenAPIV3Schema, fld)
		if err != nil {
			return fmt.Errorf("CustomResourceDefinition %q: %w", crd.Name, err)
		}
		singular := names.Singular
		if singular == "" {
			singular = strings.ToLower(names.Kind)
		}
		gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: names.Kind}
		kinds[gvk] = &crdKind{
			name:       crd.Name,
			schema:     sch,
			plural:     names.Plural,
			singular:   singular,
			namespaced: crd.Spec.Scope != apiextensionsv1.ClusterScoped,
		}
	}
	if len(kinds) == 0 {
		return fmt.Errorf("CustomResourceDefinition %q serves no version", crd.Name)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for gvk, k := range kinds {
		s.crds[gvk] = k
		delete(s.resolved, gvk) // a permissive or older schema may be cached
	}
	s.rebuildMapper()
	return nil
}

func crdSchema(props *apiextensionsv1.JSONSchemaProps, fld *field.Path) (*spec.Schema, error) {
	internal := new(apiextensions.JSONSchemaProps)
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(props, internal, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", fld, err)
	}
	ss, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fld, err)
	}
	if errs := structuralschema.ValidateStructural(fld, ss); len(errs) > 0 {
		return nil, fmt.Errorf("schema is not structural: %w", errs.ToAggregate())
	}
	return ss.Unfold().ToKubeOpenAPI(), nil
}

// crdSchemaLocked completes a CRD schema the way the apiserver's OpenAPI builder does
// (k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder): apiVersion, kind and the full
// ObjectMeta in every x-kubernetes-embedded-resource and at the root. It runs once per crdKind:
// it completes k.schema in place, which only this Set holds.
func (s *Set) crdSchemaLocked(k *crdKind) (*spec.Schema, error) {
	if k.complete {
		return k.schema, nil
	}
	objectMeta, err := s.objectMetaLocked()
	if err != nil {
		return nil, err
	}
	// Children first, then the root, so the shared ObjectMeta is never walked or modified.
	addEmbeddedProperties(k.schema, objectMeta)
	addTypeAndObjectMeta(k.schema, objectMeta, false)
	k.complete = true
	return k.schema, nil
}

// objectMetaLocked is ObjectMeta of the snapshot, taken from core/v1 which every release has.
func (s *Set) objectMetaLocked() (*spec.Schema, error) {
	b, ok := s.builtins[schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}]
	if !ok {
		return nil, fmt.Errorf("embedded schema data %s has no core/v1", s.dir)
	}
	return s.packedSchemaLocked(packed.ComponentKey(b.file, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"))
}

var stringSchema = spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"string"}}}

func addTypeAndObjectMeta(sch *spec.Schema, objectMeta *spec.Schema, required bool) {
	if sch.Properties == nil {
		sch.Properties = make(map[string]spec.Schema, 3)
	}
	sch.Properties["apiVersion"] = stringSchema
	sch.Properties["kind"] = stringSchema
	sch.Properties["metadata"] = *objectMeta
	if required {
		req := sets.New(sch.Required...)
		for _, f := range []string{"kind", "apiVersion"} {
			if !req.Has(f) {
				sch.Required = append(sch.Required, f)
			}
		}
	}
}

// addEmbeddedProperties mirrors the apiserver builder's function of the same name.
func addEmbeddedProperties(sch *spec.Schema, objectMeta *spec.Schema) {
	for name, p := range sch.Properties {
		addEmbeddedProperties(&p, objectMeta)
		sch.Properties[name] = p
	}
	if sch.Items != nil && sch.Items.Schema != nil {
		addEmbeddedProperties(sch.Items.Schema, objectMeta)
	}
	if sch.AdditionalProperties != nil && sch.AdditionalProperties.Schema != nil {
		addEmbeddedProperties(sch.AdditionalProperties.Schema, objectMeta)
	}
	if embedded, ok := sch.Extensions.GetBool("x-kubernetes-embedded-resource"); ok && embedded {
		addTypeAndObjectMeta(sch, objectMeta, true)
	}
}
