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
func Connect(kubeconfig string) (kubernetes.Interface, dynamic.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, nil, "", fmt.Errorf("no Kubernetes connection: %w; pass --kubeconfig, or run in a pod with a service account", err)
	}
	cfg.UserAgent = "kropipe-promoter/" + version.Version
	// Informers do the reading; writes are a few patches per promotion.
	cfg.QPS, cfg.Burst = 20, 40
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	ns, _, _ := cc.Namespace()
	return kube, dyn, ns, nil
}
