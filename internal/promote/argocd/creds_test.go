package argocd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

func secret(name, typ string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "argocd", Labels: map[string]string{SecretTypeLabel: typ}},
		Data:       map[string][]byte{},
	}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

// authServer is a Git server on 127.0.0.1 that wants kropipe/s3cret.
func authServer(t *testing.T) string {
	t.Helper()
	srv := gitserver.StartTB(t, gitserver.WithBasicAuth("kropipe", "s3cret"))
	if _, err := srv.NewBareRepo(context.Background(), "team/gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	return srv.URL("team/gitops.git")
}

// readWith opens url with opts and reads the seed's tag: the credentials work.
func readWith(t *testing.T, url string, opts []gitwrite.Option) error {
	t.Helper()
	r, err := gitwrite.Open(context.Background(), t.TempDir(), url, append(opts, gitwrite.WithLogger(quiet()))...)
	if err != nil {
		return err
	}
	v, _, err := r.Read(context.Background(), "main", "develop/frontend/instance.yaml", "spec.values.deployment.tag")
	if err == nil && v != "1.2.1" {
		t.Fatalf("read %q", v)
	}
	return err
}

func TestCredentials_MatchLikeArgoCD(t *testing.T) {
	url := authServer(t)
	// The Secret's URL differs as Argo CD allows: host case, .git and trailing slash.
	loose := strings.Replace(strings.TrimSuffix(url, ".git"), "127.0.0.1", "127.0.0.1", 1) + "/"
	host := url[:strings.Index(url, "/team/")]
	tests := []struct {
		name    string
		secrets []runtime.Object
	}{
		{name: "repository by exact normalised URL", secrets: []runtime.Object{
			secret("repo-gitops", SecretTypeRepository, map[string]string{"url": loose, "username": "kropipe", "password": "s3cret"}),
		}},
		{name: "repo-creds by longest prefix", secrets: []runtime.Object{
			secret("creds-host", SecretTypeRepoCreds, map[string]string{"url": strings.ToUpper(host[:4]) + host[4:], "username": "kropipe", "password": "wrong"}),
			secret("creds-team", SecretTypeRepoCreds, map[string]string{"url": host + "/team", "username": "kropipe", "password": "s3cret"}),
		}},
		{name: "repository wins over repo-creds", secrets: []runtime.Object{
			secret("creds-team", SecretTypeRepoCreds, map[string]string{"url": host + "/team", "username": "kropipe", "password": "wrong"}),
			secret("repo-gitops", SecretTypeRepository, map[string]string{"url": url, "username": "kropipe", "password": "s3cret"}),
		}},
		{name: "write credentials win over read-only ones", secrets: []runtime.Object{
			secret("repo-gitops", SecretTypeRepository, map[string]string{"url": url, "username": "reader", "password": "wrong"}),
			secret("repo-gitops-write", SecretTypeRepositoryWrite, map[string]string{"url": url, "username": "kropipe", "password": "s3cret"}),
		}},
		{name: "GitHub App fields next to a password are ignored", secrets: []runtime.Object{
			secret("repo-gitops", SecretTypeRepository, map[string]string{"url": url, "username": "kropipe", "password": "s3cret", "githubAppID": "1"}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCredentials(kubefake.NewClientset(tt.secrets...), "argocd", WithCredentialsLogger(quiet()))
			opts, err := c.GitOptions(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			if err := readWith(t, url, opts); err != nil {
				t.Fatalf("credentials did not work: %v", err)
			}
		})
	}
}

func TestCredentials_MissingOrUnusableSecretSaysWhatToCreate(t *testing.T) {
	url := authServer(t)
	open := gitserver.StartTB(t)
	if _, err := open.NewBareRepo(context.Background(), "gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		url     string
		secrets []runtime.Object
		want    string // "" means no error, no options
	}{
		{name: "https server asking for credentials", url: url,
			secrets: []runtime.Object{secret("other", SecretTypeRepository, map[string]string{"url": "https://example.com/x.git", "password": "s3cret"})},
			want:    url + " asks for credentials (HTTP 401) and no Argo CD repository Secret matches it: create a Secret in namespace argocd labelled argocd.argoproj.io/secret-type=repository (or repository-write) with url: " + url + " and username and password"},
		{name: "ssh without a key", url: "git@git.example.com:team/gitops.git",
			want: "no Argo CD repository Secret matches git@git.example.com:team/gitops.git, and SSH needs a key: create a Secret in namespace argocd labelled argocd.argoproj.io/secret-type=repository"},
		{name: "GitHub App with a key that does not parse", url: url,
			secrets: []runtime.Object{secret("gh", SecretTypeRepository, map[string]string{"url": url, "githubAppID": "1", "githubAppInstallationID": "2", "githubAppPrivateKey": "s3cret"})},
			want:    "Argo CD Secret argocd/gh: GitHub App 1 installation 2: the private key does not parse"},
		{name: "GitHub App without its installation", url: url,
			secrets: []runtime.Object{secret("gh", SecretTypeRepository, map[string]string{"url": url, "githubAppID": "1", "githubAppPrivateKey": "s3cret"})},
			want:    `Argo CD Secret argocd/gh: githubAppInstallationID "" is not a number`},
		{name: "no password nor key", url: url,
			secrets: []runtime.Object{secret("empty", SecretTypeRepository, map[string]string{"url": url, "username": "kropipe"})},
			want:    "has neither password nor sshPrivateKey"},
		{name: "broken ssh key", url: "ssh://git@git.example.com/team/gitops.git",
			secrets: []runtime.Object{secret("key", SecretTypeRepoCreds, map[string]string{"url": "ssh://git@git.example.com/team", "sshPrivateKey": "s3cret"})},
			want:    "sshPrivateKey is not a PEM private key"},
		{name: "server letting anyone push needs nothing", url: open.URL("gitops.git")},
		// Argo CD registers a public repository, or a hydrator's anonymous write target, with a
		// Secret holding only its URL.
		{name: "a Secret with only the URL, on a server letting anyone push", url: open.URL("gitops.git"),
			secrets: []runtime.Object{secret("write-creds", SecretTypeRepoWriteCreds, map[string]string{"url": strings.TrimSuffix(open.URL("gitops.git"), "gitops.git")})}},
		{name: "a Secret with only the URL, on a server asking for credentials", url: url,
			secrets: []runtime.Object{secret("public", SecretTypeRepository, map[string]string{"url": url})},
			want:    "Argo CD Secret argocd/public matches " + url + " but has neither password nor sshPrivateKey; add one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCredentials(kubefake.NewClientset(tt.secrets...), "argocd", WithCredentialsLogger(quiet()))
			opts, err := c.GitOptions(context.Background(), tt.url)
			if tt.want == "" {
				if err != nil || opts != nil {
					t.Fatalf("opts %v err %v, want neither", opts, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks a secret value: %v", err)
			}
		})
	}
}

func TestCredentials_SSHKeyWithArgoCDKnownHosts(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	_ = hostPriv
	hk, _ := ssh.NewPublicKey(hostPub)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(otherPub)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: KnownHostsConfigMap, Namespace: "argocd"},
		Data:       map[string]string{"ssh_known_hosts": "# Argo CD defaults\ngit.example.com " + string(ssh.MarshalAuthorizedKey(hk))},
	}
	sec := secret("key", SecretTypeRepository, map[string]string{"url": "git@GIT.example.com:team/gitops", "sshPrivateKey": string(pem.EncodeToMemory(block))})
	c := NewCredentials(kubefake.NewClientset(sec, cm), "argocd", WithCredentialsLogger(quiet()))
	opts, err := c.GitOptions(context.Background(), "git@git.example.com:team/gitops.git")
	if err != nil || len(opts) != 1 {
		t.Fatalf("opts %d err %v", len(opts), err)
	}
	auth, err := c.sshAuth(context.Background(), "git@git.example.com:team/gitops.git", sec.Data["sshPrivateKey"], false)
	if err != nil {
		t.Fatal(err)
	}
	if auth.User != "git" {
		t.Fatalf("user %q", auth.User)
	}
	addr := fakeAddr("10.0.0.1:22")
	if err := auth.HostKeyCallback("git.example.com:22", addr, hk); err != nil {
		t.Fatalf("known host refused: %v", err)
	}
	if err := auth.HostKeyCallback("git.example.com:22", addr, other); err == nil || !strings.Contains(err.Error(), "is not in ConfigMap argocd-ssh-known-hosts-cm") {
		t.Fatalf("unknown host key accepted or unclear: %v", err)
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://GitHub.com/Org/Repo.git/": "https://github.com/Org/Repo",
		"https://github.com/Org/Repo":      "https://github.com/Org/Repo",
		"git@github.com:org/repo.git":      "ssh://git@github.com/org/repo",
		"ssh://git@GITHUB.com/org/repo":    "ssh://git@github.com/org/repo",
		"not a url":                        "",
	} {
		if got := NormalizeURL(in); got != want {
			t.Errorf("NormalizeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// A repository Secret holding only a GitHub App pushes as the app's installation: Git gets a
// token minted from the app's private key (x-access-token), asked for again once it expired.
func TestCredentials_GitHubAppPushesWithAnInstallationToken(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var minted atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/app/installations/678/access_tokens" || !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		minted.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"ghs_installation","expires_at":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	defer api.Close()
	srv := gitserver.StartTB(t, gitserver.WithBasicAuth("x-access-token", "ghs_installation"))
	if _, err := srv.NewBareRepo(context.Background(), "team/gitops.git", "testdata/seed"); err != nil {
		t.Fatal(err)
	}
	url := srv.URL("team/gitops.git")
	c := NewCredentials(kubefake.NewClientset(secret("gh-app", SecretTypeRepository, map[string]string{
		"url": url, "githubAppID": "12345", "githubAppInstallationID": "678", "githubAppPrivateKey": string(pemKey), "githubAppEnterpriseBaseUrl": api.URL,
	})), "argocd", WithCredentialsLogger(quiet()))
	opts, err := c.GitOptions(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	r, err := gitwrite.Open(context.Background(), t.TempDir(), url, append(opts, gitwrite.WithLogger(quiet()))...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Apply(context.Background(), "main", gitwrite.Change{Stage: "develop-frontend", File: "develop/frontend/instance.yaml", Key: "spec.values.deployment.tag", Image: "registry.example.com/team/frontend", Tag: "1.2.2"})
	if err != nil || res[0].Commit == "" {
		t.Fatalf("push as the app: %v %+v", err, res)
	}
	if n := minted.Load(); n != 1 {
		t.Fatalf("%d installation tokens minted, want 1 (kept until it expires)", n)
	}
}
