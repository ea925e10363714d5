package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kropipe/kropipe/internal/promote/verify"
	"github.com/kropipe/kropipe/internal/version"
)

// Argo CD's names for its destination clusters.
const (
	// SecretTypeCluster labels (SecretTypeLabel) a Secret holding a cluster Argo CD deploys to.
	SecretTypeCluster = "cluster"
	// InClusterServer and InClusterName are the cluster Argo CD itself runs in: for
	// kropipe, the promoter's own cluster, reached with its own service account.
	InClusterServer = "https://kubernetes.default.svc"
	InClusterName   = "in-cluster"
)

// ErrClusterUnusable is wrapped when the Argo CD cluster Secret of a stage's destination
// holds credentials kropipe cannot use (a credential plugin, a bad config) or is missing.
var ErrClusterUnusable = errors.New("destination cluster unusable for verification")

// clusterTimeout bounds each request to a destination cluster: verification runs inside
// the engine's pass, which an unreachable cluster must not hold up.
const clusterTimeout = 15 * time.Second

// Destination is an Application's spec.destination cluster: its server URL or its name
// in Argo CD.
type Destination struct {
	Server string `json:"server,omitempty"`
	Name   string `json:"name,omitempty"`
}

// InCluster reports whether d is Argo CD's in-cluster destination (or names no cluster,
// which Argo CD refuses, and kropipe treats as before: the promoter's own cluster).
func (d Destination) InCluster() bool {
	server := strings.TrimRight(d.Server, "/")
	return server == InClusterServer || server == "" && (d.Name == "" || d.Name == InClusterName)
}

func (d Destination) String() string {
	if d.Server != "" {
		return d.Server
	}
	return d.Name
}

// Clusters makes the clients of an Application's destination cluster from the cluster
// Secret Argo CD itself uses for it (labelled argocd.argoproj.io/secret-type=cluster in
// Argo CD's namespace): verification must judge the environment the Application deploys
// to. Clients are kept per Secret until its resourceVersion changes.
type Clusters struct {
	client    kubernetes.Interface
	namespace string
	connect   func(name string, cfg *rest.Config) (*verify.Cluster, error)
	log       *slog.Logger

	mu        sync.Mutex
	connected map[string]connectedCluster // by Secret name
}

type connectedCluster struct {
	resourceVersion string
	cluster         *verify.Cluster
}

// ClustersOption configures Clusters.
type ClustersOption func(*Clusters)

// WithConnect replaces how clients are made from a cluster's rest.Config (default:
// client-go's kubernetes and dynamic clients), for tests.
func WithConnect(fn func(name string, cfg *rest.Config) (*verify.Cluster, error)) ClustersOption {
	return func(c *Clusters) { c.connect = fn }
}

// WithClustersLogger sets the logger (default slog.Default()). Credentials are never
// logged, only Secret names and servers.
func WithClustersLogger(l *slog.Logger) ClustersOption { return func(c *Clusters) { c.log = l } }

// NewClusters reads the cluster Secrets of Argo CD's namespace (usually argocd) through client.
func NewClusters(client kubernetes.Interface, namespace string, opts ...ClustersOption) *Clusters {
	c := &Clusters{client: client, namespace: namespace, connect: connectCluster, log: slog.Default(), connected: map[string]connectedCluster{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// For returns the clients of dest, nil for the in-cluster destination (the promoter's own
// cluster, as before). An error wraps ErrClusterUnusable when no cluster Secret matches
// dest or its credentials are ones kropipe cannot use, and names what to do.
func (c *Clusters) For(ctx context.Context, dest Destination) (*verify.Cluster, error) {
	if dest.Server == "" && dest.Name == "" || strings.TrimRight(dest.Server, "/") == InClusterServer {
		return nil, nil
	}
	sec, err := c.find(ctx, dest)
	if err != nil {
		return nil, err
	}
	if sec == nil {
		if dest.InCluster() {
			return nil, nil
		}
		how := "server " + dest.Server
		if dest.Server == "" {
			how = "name " + dest.Name
		}
		return nil, fmt.Errorf("%w: no Argo CD cluster Secret in namespace %s (label %s=%s) has %s; register the cluster with Argo CD (argocd cluster add, or a cluster Secret) or correct the Application's spec.destination",
			ErrClusterUnusable, c.namespace, SecretTypeLabel, SecretTypeCluster, how)
	}
	if strings.TrimRight(string(sec.Data["server"]), "/") == InClusterServer {
		// Argo CD's own cluster under another name: the promoter's service account, as
		// for the in-cluster destination.
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.connected[sec.Name]; ok && cc.resourceVersion == sec.ResourceVersion {
		return cc.cluster, nil
	}
	cfg, err := clusterConfig(sec)
	if err != nil {
		return nil, err
	}
	cl, err := c.connect(clusterName(sec), cfg)
	if err != nil {
		return nil, fmt.Errorf("Argo CD cluster %s (Secret %s/%s): making its clients: %w", clusterName(sec), sec.Namespace, sec.Name, err)
	}
	c.connected[sec.Name] = connectedCluster{resourceVersion: sec.ResourceVersion, cluster: cl}
	c.log.Info("verification in an Argo CD cluster", "cluster", cl.Name, "server", cfg.Host, "secret", sec.Name)
	return cl, nil
}

// find is the cluster Secret for dest: by server (trailing slashes ignored, as Argo CD
// does) when it names one, else by name; the first by Secret name when several match.
func (c *Clusters) find(ctx context.Context, dest Destination) (*corev1.Secret, error) {
	list, err := c.client.CoreV1().Secrets(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: SecretTypeLabel + "=" + SecretTypeCluster})
	if err != nil {
		return nil, fmt.Errorf("listing Argo CD cluster Secrets in namespace %s for destination %s: %w", c.namespace, dest, err)
	}
	secrets := list.Items
	sort.Slice(secrets, func(i, j int) bool { return secrets[i].Name < secrets[j].Name })
	server := strings.TrimRight(dest.Server, "/")
	for i := range secrets {
		s := &secrets[i]
		if server != "" && strings.TrimRight(string(s.Data["server"]), "/") == server ||
			server == "" && string(s.Data["name"]) == dest.Name {
			return s, nil
		}
	}
	return nil, nil
}

// clusterConfig is Argo CD's ClusterConfig (pkg/apis/application/v1alpha1), the JSON in a
// cluster Secret's config key.
type argoClusterConfig struct {
	Username        string `json:"username"`
	Password        string `json:"password"`
	BearerToken     string `json:"bearerToken"`
	TLSClientConfig struct {
		Insecure   bool   `json:"insecure"`
		ServerName string `json:"serverName"`
		CertData   []byte `json:"certData"`
		KeyData    []byte `json:"keyData"`
		CAData     []byte `json:"caData"`
	} `json:"tlsClientConfig"`
	AWSAuthConfig      json.RawMessage `json:"awsAuthConfig"`
	ExecProviderConfig json.RawMessage `json:"execProviderConfig"`
	DisableCompression bool            `json:"disableCompression"`
	ProxyURL           string          `json:"proxyUrl"`
}

// clusterConfig makes the rest.Config Argo CD makes from its cluster Secret sec (as its
// Cluster.RawRestConfig does for a server other than in-cluster): bearer token, basic
// auth, TLS client config, proxy. Credential plugins — execProviderConfig, and
// awsAuthConfig which runs argocd-k8s-auth — are refused by name: kropipe ships none, and
// running verification elsewhere would judge the wrong environment.
func clusterConfig(sec *corev1.Secret) (*rest.Config, error) {
	name := clusterName(sec)
	where := fmt.Sprintf("Argo CD cluster %s (Secret %s/%s)", name, sec.Namespace, sec.Name)
	server := strings.TrimRight(strings.TrimSpace(string(sec.Data["server"])), "/")
	if u, err := url.Parse(server); server == "" || err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: %s has no server URL in its server key; give it the API server's https:// URL", ErrClusterUnusable, where)
	}
	var cc argoClusterConfig
	if raw := sec.Data["config"]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &cc); err != nil {
			// json's messages name a field or one character, never a value.
			return nil, fmt.Errorf("%w: %s: its config is not Argo CD's cluster config JSON: %w", ErrClusterUnusable, where, err)
		}
	}
	refuse := func(field, what string) error {
		return fmt.Errorf("%w: %s uses %s (%s), which kropipe cannot use for verification: the promoter runs no credential plugins; give the cluster Secret's config a bearerToken (a ServiceAccount token, as argocd cluster add makes) or a client certificate, or remove kropipe.io/verify-job and kropipe.io/verify-analysis from the Application",
			ErrClusterUnusable, where, field, what)
	}
	if present(cc.ExecProviderConfig) {
		return nil, refuse("execProviderConfig", "an exec credential plugin")
	}
	if present(cc.AWSAuthConfig) {
		return nil, refuse("awsAuthConfig", "EKS IAM authentication through argocd-k8s-auth")
	}
	cfg := &rest.Config{
		Host:        server,
		Username:    cc.Username,
		Password:    cc.Password,
		BearerToken: cc.BearerToken,
		TLSClientConfig: rest.TLSClientConfig{
			Insecure:   cc.TLSClientConfig.Insecure,
			ServerName: cc.TLSClientConfig.ServerName,
			CertData:   cc.TLSClientConfig.CertData,
			KeyData:    cc.TLSClientConfig.KeyData,
			CAData:     cc.TLSClientConfig.CAData,
		},
		DisableCompression: cc.DisableCompression,
		UserAgent:          "kropipe-promoter/" + version.Version,
		Timeout:            clusterTimeout,
	}
	if cc.ProxyURL != "" {
		u, err := url.Parse(cc.ProxyURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
			return nil, fmt.Errorf("%w: %s: proxyUrl is not an http, https or socks5 URL", ErrClusterUnusable, where)
		}
		cfg.Proxy = http.ProxyURL(u)
	}
	// What client-go would refuse when the first request is made (a CA that is not PEM,
	// insecure with a CA, a certificate without its key), said now, naming the Secret.
	if _, err := rest.TLSConfigFor(cfg); err != nil {
		return nil, fmt.Errorf("%w: %s: its tlsClientConfig is unusable: %w", ErrClusterUnusable, where, err)
	}
	return cfg, nil
}

// present reports whether a JSON field was given a value other than null.
func present(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

// clusterName is how Argo CD names the cluster of sec: its name key, else its server.
func clusterName(sec *corev1.Secret) string {
	if n := strings.TrimSpace(string(sec.Data["name"])); n != "" {
		return n
	}
	return strings.TrimRight(string(sec.Data["server"]), "/")
}

// connectCluster makes client-go clients for cfg.
func connectCluster(name string, cfg *rest.Config) (*verify.Cluster, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &verify.Cluster{Name: name, Kube: kube, Dynamic: dyn}, nil
}
