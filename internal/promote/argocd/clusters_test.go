package argocd

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/cert"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

// clusterSecret is an Argo CD cluster Secret as `argocd cluster add` or a declarative
// setup writes it.
func clusterSecret(name, clusterName, server, config string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "argocd", ResourceVersion: "1", Labels: map[string]string{SecretTypeLabel: SecretTypeCluster}},
		Data:       map[string][]byte{"name": []byte(clusterName), "server": []byte(server), "config": []byte(config)},
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestClusterConfig(t *testing.T) {
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey("spoke.example.com", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tls := `"tlsClientConfig":{"insecure":false,"caData":"` + b64(certPEM) + `"}`
	tests := []struct {
		name, server, config string
		check                func(t *testing.T, c *rest.Config)
		wantErr              string // "" when the config is usable
	}{
		{
			name: "BearerTokenAndCA", server: "https://spoke.example.com:6443/", config: `{"bearerToken":"t0k3n",` + tls + `}`,
			check: func(t *testing.T, c *rest.Config) {
				if c.Host != "https://spoke.example.com:6443" || c.BearerToken != "t0k3n" || string(c.CAData) != string(certPEM) || c.Insecure {
					t.Errorf("config = host %q, token set %v, CA %d bytes, insecure %v", c.Host, c.BearerToken != "", len(c.CAData), c.Insecure)
				}
			},
		},
		{
			name: "ClientCertificateAndServerName", server: "https://10.0.0.1",
			config: `{"tlsClientConfig":{"caData":"` + b64(certPEM) + `","certData":"` + b64(certPEM) + `","keyData":"` + b64(keyPEM) + `","serverName":"spoke.example.com"}}`,
			check: func(t *testing.T, c *rest.Config) {
				if string(c.CertData) != string(certPEM) || string(c.KeyData) != string(keyPEM) || c.ServerName != "spoke.example.com" || c.BearerToken != "" {
					t.Errorf("TLS client config = %+v", c.TLSClientConfig)
				}
			},
		},
		{
			name: "BasicAuthInsecure", server: "https://spoke.example.com", config: `{"username":"admin","password":"pw","tlsClientConfig":{"insecure":true}}`,
			check: func(t *testing.T, c *rest.Config) {
				if c.Username != "admin" || c.Password != "pw" || !c.Insecure {
					t.Errorf("config = user %q, insecure %v", c.Username, c.Insecure)
				}
			},
		},
		{
			name: "ProxyAndCompression", server: "https://spoke.example.com", config: `{"bearerToken":"t","proxyUrl":"http://proxy.example.com:3128","disableCompression":true,` + tls + `}`,
			check: func(t *testing.T, c *rest.Config) {
				if c.Proxy == nil {
					t.Fatal("no proxy")
				}
				req, _ := http.NewRequest(http.MethodGet, c.Host, nil)
				if u, err := c.Proxy(req); err != nil || u.Host != "proxy.example.com:3128" || !c.DisableCompression {
					t.Errorf("proxy set %v, disableCompression %v", c.Proxy != nil, c.DisableCompression)
				}
			},
		},
		{
			name: "ExplicitNullPluginsAreNone", server: "https://spoke.example.com", config: `{"bearerToken":"t","execProviderConfig":null,"awsAuthConfig":null,` + tls + `}`,
			check: func(t *testing.T, c *rest.Config) {
				if c.ExecProvider != nil || c.AuthProvider != nil {
					t.Errorf("a credential plugin was configured: %v %v", c.ExecProvider, c.AuthProvider)
				}
			},
		},
		{
			name: "ExecProviderIsRefusedByName", server: "https://gke.example.com",
			config:  `{"execProviderConfig":{"command":"argocd-k8s-auth","args":["gcp"],"apiVersion":"client.authentication.k8s.io/v1beta1"},` + tls + `}`,
			wantErr: "Argo CD cluster spoke (Secret argocd/cluster-spoke) uses execProviderConfig (an exec credential plugin), which kropipe cannot use for verification",
		},
		{
			name: "AWSAuthIsRefusedByName", server: "https://eks.example.com",
			config:  `{"awsAuthConfig":{"clusterName":"prod","roleARN":"arn:aws:iam::1:role/argocd"},` + tls + `}`,
			wantErr: "uses awsAuthConfig (EKS IAM authentication through argocd-k8s-auth), which kropipe cannot use for verification",
		},
		{name: "ConfigNotJSON", server: "https://spoke.example.com", config: `bearerToken: t`, wantErr: "its config is not Argo CD's cluster config JSON"},
		{name: "NoServer", server: "", config: `{"bearerToken":"t"}`, wantErr: "has no server URL in its server key"},
		{name: "ProxyScheme", server: "https://spoke.example.com", config: `{"bearerToken":"t","proxyUrl":"ftp://proxy"}`, wantErr: "proxyUrl is not an http, https or socks5 URL"},
		{name: "CANotPEM", server: "https://spoke.example.com", config: `{"bearerToken":"t","tlsClientConfig":{"caData":"` + b64([]byte("not a certificate")) + `"}}`, wantErr: "its tlsClientConfig is unusable"},
		{name: "InsecureWithCA", server: "https://spoke.example.com", config: `{"bearerToken":"t","tlsClientConfig":{"insecure":true,"caData":"` + b64(certPEM) + `"}}`, wantErr: "its tlsClientConfig is unusable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := clusterConfig(clusterSecret("cluster-spoke", "spoke", tt.server, tt.config))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrClusterUnusable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrClusterUnusable saying %q", err, tt.wantErr)
				}
				for _, secret := range []string{"t0k3n", "pw", "arn:aws"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error shows the Secret's config: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Timeout == 0 {
				t.Error("no request timeout: an unreachable cluster would hold the pass")
			}
			tt.check(t, c)
		})
	}
}

// The rest.Config made from a cluster Secret is what client-go connects with: the Secret's
// CA is trusted and its token sent.
func TestClusterConfig_ConnectsWithTheSecretsCAAndToken(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer spoke-token" {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":401}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"major":"1","minor":"36","gitVersion":"v1.36.0"}`))
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg, err := clusterConfig(clusterSecret("cluster-spoke", "spoke", srv.URL, `{"bearerToken":"spoke-token","tlsClientConfig":{"caData":"`+b64(ca)+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := kube.Discovery().ServerVersion(); err != nil || v.GitVersion != "v1.36.0" {
		t.Fatalf("ServerVersion = %v, %v", v, err)
	}
}

// fakeConnect gives each cluster a fake clientset and counts the clients made.
type fakeConnect struct {
	made    int
	cluster map[string]*fake.Clientset // by cluster name
}

func (f *fakeConnect) connect(name string, _ *rest.Config) (*verify.Cluster, error) {
	f.made++
	if f.cluster == nil {
		f.cluster = map[string]*fake.Clientset{}
	}
	if f.cluster[name] == nil {
		f.cluster[name] = fake.NewClientset()
	}
	return &verify.Cluster{Name: name, Kube: f.cluster[name]}, nil
}

func TestClusters_For(t *testing.T) {
	const token = `{"bearerToken":"t","tlsClientConfig":{"insecure":true}}`
	secrets := []*corev1.Secret{
		clusterSecret("cluster-spoke", "spoke", "https://spoke.example.com:6443", token),
		clusterSecret("cluster-hub", "hub", InClusterServer, ""),
		clusterSecret("cluster-gke", "gke", "https://gke.example.com", `{"execProviderConfig":{"command":"gke-gcloud-auth-plugin"}}`),
	}
	tests := []struct {
		name        string
		dest        Destination
		wantCluster string // "" for the promoter's own cluster
		wantErr     string
	}{
		{name: "InClusterServer", dest: Destination{Server: "https://kubernetes.default.svc/"}},
		{name: "InClusterName", dest: Destination{Name: "in-cluster"}},
		{name: "NoDestination", dest: Destination{}},
		{name: "ArgoCDsOwnClusterUnderAnotherName", dest: Destination{Name: "hub"}},
		{name: "ByServerTrailingSlashIgnored", dest: Destination{Server: "https://spoke.example.com:6443/"}, wantCluster: "spoke"},
		{name: "ByName", dest: Destination{Name: "spoke"}, wantCluster: "spoke"},
		{name: "UnknownServer", dest: Destination{Server: "https://elsewhere.example.com"}, wantErr: "no Argo CD cluster Secret in namespace argocd (label argocd.argoproj.io/secret-type=cluster) has server https://elsewhere.example.com; register the cluster"},
		{name: "UnknownName", dest: Destination{Name: "prod"}, wantErr: "has name prod"},
		{name: "CredentialPlugin", dest: Destination{Name: "gke"}, wantErr: "Argo CD cluster gke (Secret argocd/cluster-gke) uses execProviderConfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for _, s := range secrets {
				objs = append(objs, s)
			}
			fc := &fakeConnect{}
			c := NewClusters(fake.NewClientset(objs...), "argocd", WithConnect(fc.connect), WithClustersLogger(quiet()))
			got, err := c.For(context.Background(), tt.dest)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrClusterUnusable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("For(%v) = %v, %v; want ErrClusterUnusable saying %q", tt.dest, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if name := clusterNameOf(got); name != tt.wantCluster {
				t.Fatalf("For(%v) = cluster %q, want %q", tt.dest, name, tt.wantCluster)
			}
		})
	}
}

func clusterNameOf(c *verify.Cluster) string {
	if c == nil {
		return ""
	}
	return c.Name
}

// Clients are made once per cluster Secret and again only when the Secret changed.
func TestClusters_KeepsClientsUntilTheSecretChanges(t *testing.T) {
	ctx := context.Background()
	sec := clusterSecret("cluster-spoke", "spoke", "https://spoke.example.com", `{"bearerToken":"old","tlsClientConfig":{"insecure":true}}`)
	kube := fake.NewClientset(sec)
	fc := &fakeConnect{}
	c := NewClusters(kube, "argocd", WithConnect(fc.connect), WithClustersLogger(quiet()))
	for range 3 {
		if _, err := c.For(ctx, Destination{Name: "spoke"}); err != nil {
			t.Fatal(err)
		}
	}
	if fc.made != 1 {
		t.Fatalf("clients made %d times for an unchanged Secret, want 1", fc.made)
	}
	sec = sec.DeepCopy()
	sec.ResourceVersion, sec.Data["config"] = "2", []byte(`{"bearerToken":"rotated","tlsClientConfig":{"insecure":true}}`)
	if _, err := kube.CoreV1().Secrets("argocd").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.For(ctx, Destination{Name: "spoke"}); err != nil {
		t.Fatal(err)
	}
	if fc.made != 2 {
		t.Fatalf("clients made %d times after the token was rotated, want 2", fc.made)
	}
}

// The gate runs a stage's verification Job in its Application's destination cluster, with
// the clients made from Argo CD's cluster Secret, and none in the promoter's own.
func TestHealthGate_VerificationRunsInTheDestinationCluster(t *testing.T) {
	f := newVerifyFixture(t, "verify")
	ctx := context.Background()
	b := f.apps["develop-frontend"]
	b.Verify.Destination = Destination{Server: "https://spoke.example.com"}
	f.apps["develop-frontend"] = b
	fc := &fakeConnect{}
	clusters := NewClusters(fake.NewClientset(clusterSecret("cluster-spoke", "spoke", "https://spoke.example.com", `{"bearerToken":"t","tlsClientConfig":{"insecure":true}}`)),
		"argocd", WithConnect(fc.connect), WithClustersLogger(quiet()))
	g := f.gateFixture.gate(WithVerification(f.source, verify.NewJobRunner(f.kube, verify.WithClock(f.clock))), WithClusters(clusters))
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); !errors.Is(err, stage.ErrPending) || err.Error() != "verifying: job "+f.jobName()+" (running 0s) in Argo CD cluster spoke" {
		t.Fatalf("Verify = %v, want the Job running in the destination cluster, saying so", err)
	}
	spoke := fc.cluster["spoke"]
	if f.jobCreates() != 0 || spoke == nil {
		t.Fatalf("%d Jobs created in the promoter's cluster; destination clients %v", f.jobCreates(), fc.cluster)
	}
	j, err := spoke.BatchV1().Jobs("develop-frontend").Get(ctx, f.jobName(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no Job in the destination cluster: %v", err)
	}
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	if _, err := spoke.BatchV1().Jobs("develop-frontend").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.Verify(ctx, spec("develop-frontend"), fr, f.commit); err != nil {
		t.Fatalf("Verify = %v, want passed by the destination's Job", err)
	}
	// promoter verify deletes the run where it ran.
	if err := g.Reverify(ctx, "develop-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	if list, _ := spoke.BatchV1().Jobs("develop-frontend").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("promoter verify left %d Jobs in the destination", len(list.Items))
	}
}

// A destination the promoter cannot reach the way Argo CD does is a named problem on that
// stage: no Job anywhere, nothing rolled back (the freight was not judged).
func TestHealthGate_UnusableDestinationIsANamedProblem(t *testing.T) {
	tests := []struct {
		name     string
		clusters bool
		want     string
	}{
		{"CredentialPlugin", true, `stage "develop-frontend": destination cluster unusable for verification: Argo CD cluster gke (Secret argocd/cluster-gke) uses execProviderConfig (an exec credential plugin), which kropipe cannot use for verification`},
		{"NoClusters", false, `stage "develop-frontend": destination cluster unusable for verification: the Application deploys to https://gke.example.com and this promoter reaches no cluster but its own`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newVerifyFixture(t, "verify")
			b := f.apps["develop-frontend"]
			b.Verify.Destination = Destination{Server: "https://gke.example.com"}
			f.apps["develop-frontend"] = b
			fc := &fakeConnect{}
			opts := []GateOption{WithVerification(f.source, verify.NewJobRunner(f.kube, verify.WithClock(f.clock)))}
			if tt.clusters {
				opts = append(opts, WithClusters(NewClusters(fake.NewClientset(clusterSecret("cluster-gke", "gke", "https://gke.example.com", `{"execProviderConfig":{"command":"gke-gcloud-auth-plugin"}}`)),
					"argocd", WithConnect(fc.connect), WithClustersLogger(quiet()))))
			}
			g := f.gateFixture.gate(opts...)
			err := g.Verify(context.Background(), spec("develop-frontend"), fr, f.commit)
			if err == nil || errors.Is(err, stage.ErrPending) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want %q", err, tt.want)
			}
			if f.jobCreates() != 0 || fc.made != 0 {
				t.Errorf("%d Jobs created in the promoter's cluster, %d destination clients made; want none", f.jobCreates(), fc.made)
			}
			if fails := g.TakeFailures(); len(fails) != 0 {
				t.Errorf("an unusable destination must not roll back the freight: %v", fails)
			}
		})
	}
}
