// Package verify runs a stage's verification in the cluster once its Application is Synced
// and Healthy at the promotion commit: Kubernetes Jobs read from Git, each telling whether
// the freight passed, failed or is still being verified.
package verify
