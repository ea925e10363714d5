// Package charts holds no Go code: the folder carries kropipe's Helm chart (kropipe/) and the
// values that add kropipe's sidecar through the official argo-cd chart (argo-cd-values/), and
// this package exists so their tests run. It is a module of its own because the Helm library
// needs newer Kubernetes modules (k8s.io v0.37) than the promoter builds with.
package charts
