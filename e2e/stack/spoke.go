package stack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// SpokeClusterName is the Argo CD cluster Secret name (and the cluster's name in it) of the
// spoke cluster that WithSpokeCluster starts.
const SpokeClusterName = "spoke"

// Spoke is a second Kubernetes cluster, as Argo CD's hub-and-spoke layout deploys to: its own
// kube-apiserver (on the stack's etcd under its own prefix), kube-controller-manager,
// kube-scheduler and kwok node, reached only with its own token — which the stack gives Argo
// CD in the cluster Secret SpokeClusterName of each installation's namespace.
type Spoke struct {
	APIServerURL string
	Token        string
	Kubeconfig   string
	Kube         kubernetes.Interface
}

// WithSpokeCluster also starts a Spoke cluster (Stack.Spoke) and registers it with Argo CD.
func WithSpokeCluster() Option { return func(o *options) { o.spoke = true } }

// spokeProcesses are the spoke's components, for Stop's order.
var spokeProcesses = struct{ controllers, apiserver []string }{
	controllers: []string{"spoke-kube-controller-manager", "spoke-kube-scheduler", "spoke-kwok"},
	apiserver:   []string{"spoke-kube-apiserver"},
}

func (s *Stack) startSpoke(ctx context.Context) error {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	url, err := s.runAPIServer(ctx, "spoke-kube-apiserver", "/spoke", token)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(s.Dir, "spoke-kubeconfig")
	yaml := s.kubeconfigAt(url, token, "default")
	if err := os.WriteFile(kubeconfig, []byte(yaml), 0o600); err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(yaml))
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := s.runControllers(ctx, "spoke-", kubeconfig, kube); err != nil {
		return err
	}
	s.Spoke = &Spoke{APIServerURL: url, Token: token, Kubeconfig: kubeconfig, Kube: kube}
	return nil
}

// spokeClusterSecret is the Argo CD cluster Secret of the spoke, for namespace ns.
func (s *Stack) spokeClusterSecret(ns string) *corev1.Secret {
	config, _ := json.Marshal(map[string]any{
		"bearerToken":     s.Spoke.Token,
		"tlsClientConfig": map[string]any{"caData": base64.StdEncoding.EncodeToString(s.pki.caPEM)},
	})
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-" + SpokeClusterName, Namespace: ns,
			Labels: map[string]string{"argocd.argoproj.io/secret-type": "cluster"}},
		StringData: map[string]string{"name": SpokeClusterName, "server": s.Spoke.APIServerURL, "config": string(config)},
	}
}
