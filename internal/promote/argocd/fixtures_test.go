package argocd

import (
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

const testRepo = "https://git.example.com/team/gitops.git"

// app returns an Application in namespace argocd named name, deploying
// <env>/<service> of testRepo, with the given annotations.
func app(name, path string, ann map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata":   map[string]any{"name": name, "namespace": "argocd", "uid": "uid-" + name},
		"spec": map[string]any{
			"project": "default",
			"source": map[string]any{
				"repoURL": testRepo, "targetRevision": "main", "path": path,
				"plugin": map[string]any{"name": "kro"},
			},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": name},
			"syncPolicy": map[string]any{
				"automated":   map[string]any{"prune": true, "selfHeal": true},
				"syncOptions": []any{"CreateNamespace=true", "ServerSideApply=true"},
			},
		},
	}}
	a := map[string]string{ManifestGeneratePaths: "."}
	maps.Copy(a, ann)
	for k, v := range a {
		if v == "\x00" { // marks an annotation to leave out
			delete(a, k)
		}
	}
	u.SetAnnotations(a)
	return u
}

// ownedBy makes the ApplicationSet set own u.
func ownedBy(u *unstructured.Unstructured, set string) *unstructured.Unstructured {
	u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "ApplicationSet", Name: set, UID: types.UID("uid-" + set)}})
	return u
}

func appset(name string, ann map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "ApplicationSet",
		"metadata":   map[string]any{"name": name, "namespace": "argocd", "uid": "uid-" + name},
		"spec":       map[string]any{"generators": []any{}},
	}}
	u.SetAnnotations(ann)
	return u
}

func img(service string) string { return "registry.example.com/team/" + service }

func errNotFound(name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Group: "argoproj.io", Resource: "applications"}, name)
}
