// Package verify runs a stage's verification in its Application's destination cluster once
// the Application is Synced and Healthy at the promotion commit: Kubernetes Jobs read from Git
// and Argo Rollouts AnalysisRuns, each telling whether the freight passed, failed or is still
// being verified at that commit.
package verify
