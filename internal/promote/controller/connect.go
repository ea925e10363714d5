package controller

import (
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kropipe/kropipe/internal/version"
)

// Connect builds the Kubernetes clients from kubeconfig (empty: $KUBECONFIG, ~/.kube/config,
// else the in-cluster service account) and says which namespace that configuration is in.
// leases is a client of its own for the Leases: its rate limit is not shared with the
// promotions' patches and Events, so a burst of thousands of promotions never delays a
// renewal past the renew deadline.
func Connect(kubeconfig string) (kube kubernetes.Interface, dyn dynamic.Interface, leases kubernetes.Interface, ns string, err error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("no Kubernetes connection: %w; pass --kubeconfig, or run in a pod with a service account", err)
	}
	cfg.UserAgent = "kropipe-promoter/" + version.Version
	// Informers do the reading; writes are a few patches and an Event per promotion. Argo CD's
	// application-controller defaults (ARGOCD_K8S_CLIENT_QPS 50, burst 100): at 20/s a replica
	// synced ~10 promotions/s, the tail of a large round (BenchmarkShards); the API server's
	// priority and fairness still protects itself.
	cfg.QPS, cfg.Burst = 50, 100
	if kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, nil, nil, "", err
	}
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, nil, nil, "", err
	}
	if leases, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, nil, nil, "", err
	}
	ns, _, _ = cc.Namespace()
	return kube, dyn, leases, ns, nil
}
