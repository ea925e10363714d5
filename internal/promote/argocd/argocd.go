// Package argocd runs the promoter inside an Argo CD installation: it reads stages
// from kropipe.io/* annotations on Applications and ApplicationSets, finds Git
// credentials in Argo CD's repository Secrets, syncs only the promoted Application
// and verifies freight from that Application's sync and health status.
//
// Argo CD's Go types are not imported (their Kubernetes dependencies clash with
// ours): objects are unstructured and read by field path.
package argocd

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Resources the package reads and patches.
var (
	ApplicationGVR    = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	ApplicationSetGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applicationsets"}
	// ListKinds maps the resources to their list kinds, which a fake dynamic client
	// cannot guess for types it has no scheme for.
	ListKinds = map[schema.GroupVersionResource]string{
		ApplicationGVR:    "ApplicationList",
		ApplicationSetGVR: "ApplicationSetList",
	}
)

// AppRef names an Application.
type AppRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// UID, when known, ties Events to this incarnation of the Application.
	UID types.UID `json:"uid,omitempty"`
}

func (r AppRef) String() string { return r.Namespace + "/" + r.Name }

func refOf(u *unstructured.Unstructured) AppRef {
	return AppRef{Namespace: u.GetNamespace(), Name: u.GetName(), UID: u.GetUID()}
}

// str reads a string field, "" when absent or not a string.
func str(obj map[string]any, fields ...string) string {
	v, _, _ := unstructured.NestedString(obj, fields...)
	return v
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}
