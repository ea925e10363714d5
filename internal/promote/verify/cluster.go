package verify

import (
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Cluster is where a stage's verification runs: the clients of its Application's
// destination cluster. A Request without one runs in the runner's own cluster, the
// promoter's (Argo CD's in-cluster destination).
type Cluster struct {
	// Name says which cluster in messages: Argo CD's name for it, else its server.
	Name string
	// Kube creates and reads Jobs and pods; its discovery says whether Argo Rollouts is
	// installed there.
	Kube kubernetes.Interface
	// Dynamic creates and reads AnalysisRuns and their templates.
	Dynamic dynamic.Interface
}
