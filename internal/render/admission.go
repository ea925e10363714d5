package render

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	schemacel "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
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
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *schemacel.Validator
}

func newAdmission(crd *apiextensionsv1.CustomResourceDefinition) (*admission, error) {
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Schema == nil {
		return nil, fmt.Errorf("kro produced an instance CRD without exactly one versioned schema")
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
		structural: structural,
		validator:  validator,
		cel:        schemacel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// admit prunes, defaults and validates inst in place, as the API server would on create.
// Unknown fields are an error rather than silently pruned: a typo in instance.yaml must not
// quietly render the default.
func (a *admission) admit(ctx context.Context, inst *unstructured.Unstructured) error {
	var errs field.ErrorList
	if name := inst.GetName(); name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "every instance needs a name"))
	} else {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(name, false) {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), name, msg))
		}
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
		errs = append(errs, apiservervalidation.ValidateCustomResource(nil, inst.Object, a.validator)...)
		if len(errs) == 0 {
			celErrs, _ := a.cel.Validate(ctx, nil, a.structural, inst.Object, nil, celconfig.RuntimeCELCostBudget)
			errs = append(errs, celErrs...)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", formatFieldErrors(errs))
	}
	return nil
}

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
	return "\n  - " + strings.Join(lines, "\n  - ")
}
