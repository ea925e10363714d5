package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KwokNodeName is the fake node kwok keeps Ready; every pod the tests create lands on it.
const KwokNodeName = "kwok-node-0"

func (s *Stack) startEtcd(ctx context.Context) error {
	ports, err := FreePorts(2)
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	p, err := s.start("etcd", s.Binaries.Etcd, []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(s.Dir, "etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=e2e=" + peer,
		// A throwaway store: fsync only slows a shared 2-core machine down.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	s.etcdURL = client
	return p.waitReady(ctx, 60*time.Second, httpOK(http.DefaultClient, client+"/health", ""))
}

func (s *Stack) startAPIServer(ctx context.Context) error {
	url, err := s.runAPIServer(ctx, "kube-apiserver", "/registry", s.Token)
	if err != nil {
		return err
	}
	s.APIServerURL = url
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	return os.WriteFile(s.Kubeconfig, []byte(s.kubeconfigYAML("default")), 0o600)
}

// runAPIServer starts a kube-apiserver named name keeping its objects in the stack's etcd
// under etcdPrefix — a cluster of its own for each prefix — with token as its only user (in
// system:masters), and returns its URL once it is ready.
func (s *Stack) runAPIServer(ctx context.Context, name, etcdPrefix, token string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	tokens := filepath.Join(s.Dir, "pki", name+"-tokens.csv")
	// system:masters: the harness, the controllers and Argo CD all act as cluster admin.
	if err := os.WriteFile(tokens, []byte(token+",kropipe-e2e-admin,kropipe-e2e-admin,\"system:masters\"\n"), 0o600); err != nil {
		return "", err
	}
	p, err := s.start(name, s.Binaries.KubeAPIServer, []string{
		"--etcd-servers=" + s.etcdURL, "--etcd-prefix=" + etcdPrefix,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + s.pki.ServingCert, "--tls-private-key-file=" + s.pki.ServingKey,
		"--client-ca-file=" + s.pki.CACert,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + s.pki.SAPub,
		"--service-account-signing-key-file=" + s.pki.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// No kubelet or network here: the kubernetes Service's endpoints would point at loopback,
		// which validation rejects, and pods need no token volume on a kwok node.
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}, nil)
	if err != nil {
		return "", err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.pki.caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return url, p.waitReady(ctx, 120*time.Second, httpOK(hc, url+"/readyz", token))
}

// kubeconfigYAML is a kubeconfig for the admin token with namespace as its default.
func (s *Stack) kubeconfigYAML(namespace string) string {
	return s.tokenKubeconfig(s.Token, namespace)
}

// KubeconfigFor writes a kubeconfig that authenticates with token (e.g. a ServiceAccount's,
// from a TokenRequest) with namespace as its default, and returns its path: what a process
// under test uses to act with exactly that identity's RBAC.
func (s *Stack) KubeconfigFor(name, token, namespace string) (string, error) {
	p := filepath.Join(s.Dir, "kubeconfig-"+name)
	return p, os.WriteFile(p, []byte(s.tokenKubeconfig(token, namespace)), 0o600)
}

func (s *Stack) tokenKubeconfig(token, namespace string) string {
	return s.kubeconfigAt(s.APIServerURL, token, namespace)
}

// kubeconfigAt is a kubeconfig for the API server at url (trusting the stack's CA) with
// token and namespace as its default.
func (s *Stack) kubeconfigAt(url, token, namespace string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin, namespace: %s}
current-context: e2e
`, url, base64.StdEncoding.EncodeToString(s.pki.caPEM), token, namespace)
}

// startControllers starts the hub cluster's controllers (see runControllers).
func (s *Stack) startControllers(ctx context.Context) error {
	return s.runControllers(ctx, "", s.Kubeconfig, s.Kube)
}

// runControllers starts kube-controller-manager, kube-scheduler and kwok of the cluster that
// kubeconfig and kube reach, their process names prefixed with prefix, together and waits
// for all three: none of them needs the others to come up.
func (s *Stack) runControllers(ctx context.Context, prefix, kubeconfig string, kube kubernetes.Interface) error {
	ports, err := FreePorts(3)
	if err != nil {
		return err
	}
	kcm, err := s.start(prefix+"kube-controller-manager", s.Binaries.KubeControllerManager, []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[0]),
		"--leader-elect=false",
		// The node lifecycle controller (in "*") lifts the not-ready taint once kwok reports the
		// node Ready; without it no pod is ever scheduled.
		"--controllers=*",
		"--service-account-private-key-file=" + s.pki.SAKey,
		"--root-ca-file=" + s.pki.CACert,
		"--use-service-account-credentials=false",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	sched, err := s.start(prefix+"kube-scheduler", s.Binaries.KubeScheduler, []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[1]),
		"--leader-elect=false",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	stages, err := s.writeKwokStages(ctx)
	if err != nil {
		return err
	}
	home := filepath.Join(s.Dir, prefix+"home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	kwok, err := s.start(prefix+"kwok", s.Binaries.Kwok, []string{
		"--kubeconfig=" + kubeconfig,
		"--config=" + stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--server-address=127.0.0.1:" + strconv.Itoa(ports[2]),
		"--node-ip=10.244.0.1", "--cidr=10.244.0.0/24",
		"--node-lease-duration-seconds=40",
	}, []string{"HOME=" + home})
	if err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := kcm.waitReady(ctx, 90*time.Second, httpOK(insecure, "https://127.0.0.1:"+strconv.Itoa(ports[0])+"/healthz", "")); err != nil {
		return err
	}
	if err := sched.waitReady(ctx, 90*time.Second, httpOK(insecure, "https://127.0.0.1:"+strconv.Itoa(ports[1])+"/healthz", "")); err != nil {
		return err
	}
	if err := createKwokNode(ctx, kube); err != nil {
		return err
	}
	// Ready and untainted: kwok heartbeats the node, kube-controller-manager lifts the taints.
	return kwok.waitReady(ctx, 120*time.Second, func(ctx context.Context) error {
		n, err := kube.CoreV1().Nodes().Get(ctx, KwokNodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return fmt.Errorf("node %s not Ready yet", KwokNodeName)
		}
		for _, t := range n.Spec.Taints {
			if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
				return fmt.Errorf("node %s still tainted %s", KwokNodeName, t.Key)
			}
		}
		return nil
	})
}

func createKwokNode(ctx context.Context, kube kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        KwokNodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels:      map[string]string{"kubernetes.io/hostname": KwokNodeName, "kubernetes.io/os": "linux", "type": "kwok"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	_, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create kwok node: %w", err)
	}
	return nil
}

// httpOK probes url until it answers 200.
func httpOK(hc *http.Client, url, token string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}
