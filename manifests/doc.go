// Package manifests holds no Go code: the folder carries kropipe's kustomize manifests (the
// cmp-sidecar component and an install overlay), and this package exists so their tests can run.
package manifests
