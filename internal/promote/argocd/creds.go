package argocd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	gogitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

// Argo CD's names for its repository Secrets and ConfigMaps.
const (
	SecretTypeLabel = "argocd.argoproj.io/secret-type"
	// Write credentials (Argo CD 3's source hydrator) are preferred: read-only
	// deploy keys are common for the others, and kropipe pushes.
	SecretTypeRepositoryWrite = "repository-write"
	SecretTypeRepoWriteCreds  = "repo-write-creds"
	SecretTypeRepository      = "repository"
	SecretTypeRepoCreds       = "repo-creds"

	KnownHostsConfigMap = "argocd-ssh-known-hosts-cm"
	TLSCertsConfigMap   = "argocd-tls-certs-cm"
)

// Credentials finds Git credentials for a repository URL in Argo CD's own
// Secrets, matching URLs as Argo CD does: a repository Secret by its exact
// (normalised) URL, else the repo-creds Secret with the longest URL prefix.
type Credentials struct {
	client    kubernetes.Interface
	namespace string
	http      *http.Client
	log       *slog.Logger
}

// CredentialsOption configures Credentials.
type CredentialsOption func(*Credentials)

// WithProbeClient sets the HTTP client that asks an https repository without a
// matching Secret whether it wants credentials (default: 10s timeout).
func WithProbeClient(c *http.Client) CredentialsOption {
	return func(cr *Credentials) { cr.http = c }
}

// WithCredentialsLogger sets the logger (default slog.Default()). Secret values
// are never logged, only Secret names.
func WithCredentialsLogger(l *slog.Logger) CredentialsOption {
	return func(cr *Credentials) { cr.log = l }
}

// NewCredentials reads Secrets and ConfigMaps of Argo CD's namespace (usually argocd).
func NewCredentials(client kubernetes.Interface, namespace string, opts ...CredentialsOption) *Credentials {
	c := &Credentials{client: client, namespace: namespace, http: &http.Client{Timeout: 10 * time.Second}, log: slog.Default()}
	for _, o := range opts {
		o(c)
	}
	return c
}

// GitOptions returns the gitwrite options that authenticate to repoURL; pass it
// to stage.WithGitOptionsFor. A repository without a matching Secret gets no
// options when it lets anyone push (a test server) and a clear error when it
// wants credentials.
func (c *Credentials) GitOptions(ctx context.Context, repoURL string) ([]gitwrite.Option, error) {
	if u, err := url.Parse(repoURL); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return nil, nil // credentials in the URL; gitwrite uses and strips them
		}
	}
	sec, err := c.match(ctx, repoURL)
	if err != nil {
		return nil, err
	}
	if sec == nil {
		return nil, c.noSecret(ctx, repoURL)
	}
	var opts []gitwrite.Option
	if pem := c.caBundle(ctx, repoURL); pem != nil {
		opts = append(opts, gitwrite.WithCABundle(pem))
	}
	d := func(k string) string { return strings.TrimSpace(string(sec.Data[k])) }
	where := fmt.Sprintf("Argo CD Secret %s/%s", sec.Namespace, sec.Name)
	switch {
	case d("sshPrivateKey") != "":
		auth, err := c.sshAuth(ctx, repoURL, sec.Data["sshPrivateKey"], d("insecureIgnoreHostKey") == "true")
		if err != nil {
			return nil, fmt.Errorf("%s for %s: %w", where, gitwrite.Redact(repoURL), err)
		}
		opts = append(opts, gitwrite.WithAuth(auth))
	case d("password") != "":
		opts = append(opts, gitwrite.WithCredentials(gitwrite.Credentials{Username: d("username"), Password: d("password")}))
	case d("bearerToken") != "":
		opts = append(opts, gitwrite.WithCredentials(gitwrite.Credentials{Token: d("bearerToken"), Username: d("username")}))
	case d("githubAppID") != "" || d("githubAppPrivateKey") != "":
		// Git pushes as the app's installation: x-access-token and a token minted from the
		// private key, renewed before its hour is up.
		app, err := githubApp(sec, where)
		if err != nil {
			return nil, err
		}
		token, err := forge.GitHubAppToken(*app, d("githubAppEnterpriseBaseUrl"), c.caBundle(ctx, repoURL))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		opts = append(opts, gitwrite.WithAuth(&gitwrite.RefreshingToken{Username: "x-access-token", Token: token}))
	case d("username") == "" && c.noSecret(ctx, repoURL) == nil:
		// Only the URL: how Argo CD registers a public repository, or the anonymous target of
		// its hydrator's write credentials. A server that lets anyone push needs nothing more.
		c.log.Info("Argo CD Secret without credentials; pushing without", "repo", gitwrite.Redact(repoURL), "secret", sec.Name, "type", sec.Labels[SecretTypeLabel])
		return opts, nil
	default:
		return nil, fmt.Errorf("%s matches %s but has neither password nor sshPrivateKey; add one of them", where, gitwrite.Redact(repoURL))
	}
	if d("githubAppID") != "" {
		c.log.Warn("GitHub App fields of the Argo CD Secret are ignored; its username/password or sshPrivateKey is used", "secret", sec.Name, "repo", gitwrite.Redact(repoURL))
	}
	c.log.Info("Git credentials from Argo CD", "repo", gitwrite.Redact(repoURL), "secret", sec.Name, "type", sec.Labels[SecretTypeLabel])
	return opts, nil
}

// ForgeConfig returns how to reach the forge hosting repoURL for pull-request mode: the token
// of the repository Secret Argo CD (and kropipe) push with — its password or bearerToken, with
// its username — or its GitHub App (githubAppID, githubAppInstallationID, githubAppPrivateKey,
// githubAppEnterpriseBaseUrl), and the CA Argo CD trusts for the host. A repository without a
// Secret gets no credentials: the forge then answers what an anonymous client may do.
func (c *Credentials) ForgeConfig(ctx context.Context, repoURL string) (forge.Config, error) {
	var cfg forge.Config
	cfg.CABundle = c.caBundle(ctx, repoURL)
	sec, err := c.match(ctx, repoURL)
	if err != nil || sec == nil {
		return cfg, err
	}
	d := func(k string) string { return strings.TrimSpace(string(sec.Data[k])) }
	where := fmt.Sprintf("Argo CD Secret %s/%s", sec.Namespace, sec.Name)
	switch {
	case d("githubAppID") != "":
		app, err := githubApp(sec, where)
		if err != nil {
			return cfg, err
		}
		cfg.GitHubApp = app
		cfg.APIURL = d("githubAppEnterpriseBaseUrl")
	case d("password") != "":
		cfg.Username, cfg.Token = d("username"), d("password")
	case d("bearerToken") != "":
		cfg.Username, cfg.Token = d("username"), d("bearerToken")
	}
	return cfg, nil
}

// githubApp reads a repository Secret's GitHub App fields.
func githubApp(sec *corev1.Secret, where string) (*forge.GitHubApp, error) {
	d := func(k string) string { return strings.TrimSpace(string(sec.Data[k])) }
	app := &forge.GitHubApp{PrivateKey: sec.Data["githubAppPrivateKey"]}
	var err error
	if app.AppID, err = strconv.ParseInt(d("githubAppID"), 10, 64); err != nil {
		return nil, fmt.Errorf("%s: githubAppID %q is not a number; give the app's id", where, d("githubAppID"))
	}
	if app.InstallationID, err = strconv.ParseInt(d("githubAppInstallationID"), 10, 64); err != nil {
		return nil, fmt.Errorf("%s: githubAppInstallationID %q is not a number; give the installation id of the app on the repository's owner", where, d("githubAppInstallationID"))
	}
	if len(app.PrivateKey) == 0 {
		return nil, fmt.Errorf("%s: githubAppPrivateKey is empty; give the app's PEM private key", where)
	}
	return app, nil
}

// match finds the Secret for repoURL: write credentials before read ones, an
// exact repository URL before the longest repo-creds prefix.
func (c *Credentials) match(ctx context.Context, repoURL string) (*corev1.Secret, error) {
	want := NormalizeURL(repoURL)
	list, err := c.client.CoreV1().Secrets(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: SecretTypeLabel})
	if err != nil {
		return nil, fmt.Errorf("listing Argo CD repository Secrets in namespace %s for %s: %w", c.namespace, gitwrite.Redact(repoURL), err)
	}
	secrets := list.Items
	sort.Slice(secrets, func(i, j int) bool { return secrets[i].Name < secrets[j].Name })
	for _, pair := range [][2]string{{SecretTypeRepositoryWrite, SecretTypeRepoWriteCreds}, {SecretTypeRepository, SecretTypeRepoCreds}} {
		var best *corev1.Secret
		bestLen := -1
		for i := range secrets {
			s := &secrets[i]
			u := NormalizeURL(string(s.Data["url"]))
			if u == "" {
				continue
			}
			switch s.Labels[SecretTypeLabel] {
			case pair[0]:
				if u == want {
					return s, nil
				}
			case pair[1]:
				if strings.HasPrefix(want, u) && len(u) > bestLen {
					best, bestLen = s, len(u)
				}
			}
		}
		if best != nil {
			return best, nil
		}
	}
	return nil, nil
}

// noSecret explains a missing Secret, unless the repository needs none: an
// https server that answers a push probe without asking for credentials.
func (c *Credentials) noSecret(ctx context.Context, repoURL string) error {
	create := fmt.Sprintf("create a Secret in namespace %s labelled %s=%s (or %s) with url: %s and",
		c.namespace, SecretTypeLabel, SecretTypeRepository, SecretTypeRepositoryWrite, gitwrite.Redact(repoURL))
	u, err := url.Parse(repoURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		if strings.HasPrefix(repoURL, "file://") || strings.HasPrefix(repoURL, "/") {
			return nil
		}
		return fmt.Errorf("no Argo CD repository Secret matches %s, and SSH needs a key: %s sshPrivateKey", gitwrite.Redact(repoURL), create)
	}
	probe := strings.TrimSuffix(u.String(), "/") + "/info/refs?service=git-receive-pack"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe, nil)
	if err != nil {
		return nil
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil // unreachable now; Git will say why when it tries
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s asks for credentials (HTTP %d) and no Argo CD repository Secret matches it: %s username and password (a token that may push)",
			gitwrite.Redact(repoURL), resp.StatusCode, create)
	}
	return nil
}

// caBundle returns the certificates Argo CD trusts for the URL's host
// (argocd-tls-certs-cm, one key per host name), or nil.
func (c *Credentials) caBundle(ctx context.Context, repoURL string) []byte {
	u, err := url.Parse(repoURL)
	if err != nil || u.Scheme != "https" {
		return nil
	}
	cm, err := c.client.CoreV1().ConfigMaps(c.namespace).Get(ctx, TLSCertsConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	if pem := cm.Data[u.Hostname()]; pem != "" {
		return []byte(pem)
	}
	return nil
}

// sshAuth builds key authentication checked against Argo CD's known hosts.
func (c *Credentials) sshAuth(ctx context.Context, repoURL string, key []byte, insecure bool) (*gogitssh.PublicKeys, error) {
	user := "git"
	if i := strings.Index(repoURL, "@"); i > 0 && !strings.Contains(repoURL[:i], "/") {
		user = repoURL[:i] // user@host:path
	} else if u, err := url.Parse(repoURL); err == nil && u.User != nil {
		user = u.User.Username()
	}
	auth, err := gogitssh.NewPublicKeys(user, key, "")
	if err != nil {
		// The parser's message can quote key material; say only what is wrong.
		return nil, errors.New("sshPrivateKey is not a PEM private key without a passphrase")
	}
	if insecure {
		auth.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // the Secret asks for it, as in Argo CD
		return auth, nil
	}
	cm, err := c.client.CoreV1().ConfigMaps(c.namespace).Get(ctx, KnownHostsConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return auth, nil // go-git falls back to $SSH_KNOWN_HOSTS / ~/.ssh/known_hosts
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s: %w", KnownHostsConfigMap, err)
	}
	cb, err := hostKeyCallback([]byte(cm.Data["ssh_known_hosts"]))
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s key ssh_known_hosts: %w", KnownHostsConfigMap, err)
	}
	auth.HostKeyCallback = cb
	return auth, nil
}

// hostKeyCallback accepts the host keys of known_hosts data (plain host
// patterns, as Argo CD writes them).
func hostKeyCallback(data []byte) (ssh.HostKeyCallback, error) {
	keys := map[string][][]byte{}
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		_, hosts, key, _, next, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			keys[h] = append(keys[h], key.Marshal())
		}
		rest = next
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		for _, name := range []string{knownhosts.Normalize(hostname), knownhosts.Normalize(remote.String())} {
			for _, k := range keys[name] {
				if bytes.Equal(k, key.Marshal()) {
					return nil
				}
			}
		}
		return fmt.Errorf("host key of %s is not in ConfigMap %s; add it (ssh-keyscan %s)", hostname, KnownHostsConfigMap, hostname)
	}, nil
}

// NormalizeURL makes URLs comparable the way Argo CD does: scheme and host in
// lower case, user@host:path written as ssh://user@host/path, trailing "/" and
// ".git" dropped. It returns "" for what is not a URL.
func NormalizeURL(raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "://") {
		if i := strings.Index(s, ":"); i > 0 && !strings.Contains(s[:i], "/") {
			s = "ssh://" + s[:i] + "/" + strings.TrimPrefix(s[i+1:], "/")
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return ""
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git")
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String()
}
