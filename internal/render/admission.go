package render

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	schemacel "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
)

// admission does offline what the API server does to an instance before kro ever sees it,
// with the API server's own code: the instance CRD kro synthesizes is validated as at CRD
// creation, then each instance is pruned, defaulted and validated (OpenAPI and
// x-kubernetes-validations CEL rules) against it.
type admission struct {
	namespaced bool
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *schemacel.Validator
}

func newAdmission(generated *apiextensionsv1.CustomResourceDefinition) (*admission, error) {
	if len(generated.Spec.Versions) != 1 || generated.Spec.Versions[0].Schema == nil {
		return nil, fmt.Errorf("kro produced an instance CRD without exactly one versioned schema")
	}
	crd, err := asServerStores(generated)
	if err != nil {
		return nil, err
	}
	var internalCRD apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, &internalCRD, nil); err != nil {
		return nil, fmt.Errorf("instance schema: %w", err)
	}
	// The API server would refuse this CRD (and kro would report the RGD inactive) for these
	// errors, e.g. a validation= rule that does not compile or is too expensive.
	internalCRD.Status.StoredVersions = []string{crd.Spec.Versions[0].Name}
	if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), &internalCRD); len(errs) > 0 {
		return nil, fmt.Errorf("the instance schema would be rejected by the API server: %s", formatFieldErrors(errs))
	}
	// The internal form hoists a schema shared by all versions to spec.validation.
	var props *apiextensions.JSONSchemaProps
	if v := internalCRD.Spec.Versions[0].Schema; v != nil {
		props = v.OpenAPIV3Schema
	} else if internalCRD.Spec.Validation != nil {
		props = internalCRD.Spec.Validation.OpenAPIV3Schema
	}
	if props == nil {
		return nil, fmt.Errorf("kro produced an instance CRD without a schema")
	}
	structural, err := structuralschema.NewStructural(props)
	if err != nil {
		return nil, fmt.Errorf("instance schema: %w", err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(props)
	if err != nil {
		return nil, fmt.Errorf("instance schema: %w", err)
	}
	return &admission{
		namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		structural: structural,
		validator:  validator,
		cel:        schemacel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// asServerStores returns the CRD as the API server holds it once kro has created it: kro sends
// it as JSON, and the JSON form differs from kro's Go value. kro builds map fields as
// additionalProperties {Schema: …} with Allows unset; in JSON a schema means "allowed", so the
// API server accepts `labels: {team: a}` where the in-memory value would forbid every key.
func asServerStores(generated *apiextensionsv1.CustomResourceDefinition) (*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := json.Marshal(generated)
	if err != nil {
		return nil, fmt.Errorf("instance CRD: %w", err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := json.Unmarshal(data, &crd); err != nil {
		return nil, fmt.Errorf("instance CRD: %w", err)
	}
	return &crd, nil
}

// admit prunes, defaults and validates inst in place, as the API server would on create.
// Unknown fields are an error rather than silently pruned: a typo in instance.yaml must not
// quietly render the default. The checks are the custom resource strategy's
// (k8s.io/apiextensions-apiserver/pkg/registry/customresource): object metadata, OpenAPI
// schema, embedded resources, list sets and maps, then CEL rules.
func (a *admission) admit(ctx context.Context, inst *unstructured.Unstructured) error {
	var errs field.ErrorList
	if inst.GetName() == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "every instance needs a name"))
	}
	unknown := structuralpruning.PruneWithOptions(inst.Object, a.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range unknown {
		if p == "status" || strings.HasPrefix(p, "status.") {
			continue // status is the controller's; the API server drops it on create
		}
		errs = append(errs, &field.Error{Type: errorTypeUnknownField, Field: p,
			Detail: "unknown field: remove it or fix its spelling"})
	}
	if len(errs) == 0 {
		structuraldefaulting.Default(inst.Object, a.structural)
		errs = append(errs, apimachineryvalidation.ValidateObjectMetaAccessor(inst, a.namespaced,
			apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
		errs = append(errs, apiservervalidation.ValidateCustomResource(nil, inst.Object, a.validator)...)
		errs = append(errs, schemaobjectmeta.Validate(nil, inst.Object, a.structural, false)...)
		errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, a.structural, inst.Object)...)
		if len(errs) == 0 {
			celErrs, _ := a.cel.Validate(ctx, nil, a.structural, inst.Object, nil, celconfig.RuntimeCELCostBudget)
			errs = append(errs, celErrs...)
		}
	}
	if len(errs) > 0 {
		return &InvalidInstanceError{Errors: errs}
	}
	return nil
}

// InvalidInstanceError is an instance the API server would refuse, with its field errors.
type InvalidInstanceError struct {
	Errors field.ErrorList
}

func (e *InvalidInstanceError) Error() string { return formatFieldErrors(e.Errors) }

// errorTypeUnknownField marks fields the API server would prune (or refuse under kubectl's
// strict field validation).
const errorTypeUnknownField field.ErrorType = "UnknownField"

// formatFieldErrors renders API-server style field errors, one per line when there are several.
func formatFieldErrors(errs field.ErrorList) string {
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		if e.Type == errorTypeUnknownField {
			lines = append(lines, e.Field+": "+e.Detail)
			continue
		}
		lines = append(lines, e.Error())
	}
	if len(lines) == 1 {
		return lines[0]
	}
	// The schema validator walks maps, so its errors come in a random order; Argo CD shows the
	// message as the app's condition, which must not change between two refreshes.
	slices.Sort(lines)
	return "\n  - " + strings.Join(lines, "\n  - ")
}
