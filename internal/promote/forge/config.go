package forge

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config says how to reach a repository's forge. The zero value detects the forge from
// the repository URL and uses no credentials (reads of public repositories only).
type Config struct {
	// Kind overrides detection (kropipe.io/forge, forge: in promoter.yaml).
	Kind Kind
	// APIURL overrides the API base derived from the repository URL: https://api.github.com
	// or https://HOST/api/v3 (Enterprise), https://HOST/api/v4 (GitLab),
	// https://HOST/api/v1 (Gitea, Forgejo), https://api.bitbucket.org/2.0.
	APIURL string
	// Token is a personal, project or installation access token. Bitbucket takes an app
	// password with Username, or an access token alone.
	Token    string
	Username string
	// GitHubApp, when set, authenticates as a GitHub App installation: the token is minted
	// from the app's private key and renewed before it expires.
	GitHubApp *GitHubApp
	// CABundle is trusted beside the system's roots (a private forge's CA).
	CABundle []byte
	// HTTPClient replaces the client built from CABundle (tests, proxies).
	HTTPClient *http.Client
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
}

// GitHubApp is a GitHub App installation kropipe acts as.
type GitHubApp struct {
	AppID          int64
	InstallationID int64
	PrivateKey     []byte // PEM
}

// DefaultTimeout bounds one forge request: a forge that does not answer in that time is
// retried on a later pass, it does not hold the pass.
const DefaultTimeout = 30 * time.Second

// Repo is where a repository lives on its forge.
type Repo struct {
	// Host is the forge's host (and port), from the repository URL.
	Host string
	// Scheme is https unless the repository URL is plain http (a forge on a test machine).
	Scheme string
	// Path is the repository's path without .git: owner/name, or group/sub/name on GitLab.
	Path string
}

// Owner is the path up to its last element; Name the last element.
func (r Repo) Owner() string { o, _ := splitLast(r.Path); return o }
func (r Repo) Name() string  { _, n := splitLast(r.Path); return n }

func splitLast(p string) (string, string) {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// ParseRepo reads the host and repository path of a Git URL: https://host/owner/name(.git),
// ssh://git@host[:port]/owner/name.git or git@host:owner/name.git.
func ParseRepo(repoURL string) (Repo, error) {
	raw := strings.TrimSpace(repoURL)
	var r Repo
	switch {
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return Repo{}, fmt.Errorf("repository URL %q: %w", redact(raw), err)
		}
		r.Host, r.Path = u.Host, u.Path
		r.Scheme = "https"
		if u.Scheme == "http" {
			r.Scheme = "http"
		}
		if strings.HasPrefix(u.Scheme, "ssh") || u.Scheme == "git+ssh" {
			r.Host = u.Hostname() // an SSH port is not the API's
		}
	default: // scp-like: git@host:owner/name.git
		at := strings.LastIndex(raw, "@")
		hostPath := raw[at+1:]
		host, p, ok := strings.Cut(hostPath, ":")
		if !ok {
			return Repo{}, fmt.Errorf("repository URL %q is neither a URL nor user@host:path", redact(raw))
		}
		r.Host, r.Path, r.Scheme = host, p, "https"
	}
	r.Path = strings.TrimSuffix(strings.Trim(r.Path, "/"), ".git")
	r.Path = strings.TrimPrefix(r.Path, "scm/") // Bitbucket Server style prefixes are not repository path
	if r.Host == "" || !strings.Contains(r.Path, "/") {
		return Repo{}, fmt.Errorf("repository URL %q does not name owner/repository", redact(raw))
	}
	return r, nil
}

// Detect tells the forge from the repository URL's host: github.com, gitlab.com,
// bitbucket.org, codeberg.org, and hosts whose name contains github, gitlab, gitea,
// forgejo or bitbucket. Anything else needs Config.Kind.
func Detect(repoURL string) (Kind, error) {
	r, err := ParseRepo(repoURL)
	if err != nil {
		return "", err
	}
	host := strings.ToLower(r.Host)
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	switch {
	case host == "github.com" || strings.HasSuffix(host, ".ghe.com") || strings.Contains(host, "github"):
		return GitHub, nil
	case strings.Contains(host, "gitlab"):
		return GitLab, nil
	case host == "bitbucket.org" || strings.Contains(host, "bitbucket"):
		return Bitbucket, nil
	case host == "codeberg.org" || strings.Contains(host, "forgejo"):
		return Forgejo, nil
	case strings.Contains(host, "gitea"):
		return Gitea, nil
	}
	return "", fmt.Errorf("%w %s from its host %q: set kropipe.io/forge (or forge: in promoter.yaml) to one of github, gitlab, gitea, forgejo, bitbucket, and kropipe.io/forge-api-url when the API is not at the usual place", ErrUnknownForge, redact(repoURL), r.Host)
}

// ParseKind reads a forge name as users write it.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(strings.TrimSpace(s)))
	for _, known := range Kinds {
		if k == known {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown forge %q: write one of github, gitlab, gitea, forgejo, bitbucket", s)
}

// New returns the forge client for the repository at repoURL.
func New(repoURL string, c Config) (Forge, error) {
	r, err := ParseRepo(repoURL)
	if err != nil {
		return nil, err
	}
	kind := c.Kind
	if kind == "" {
		if kind, err = Detect(repoURL); err != nil {
			return nil, err
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	switch kind {
	case GitHub:
		return newGitHub(r, c, hc)
	case GitLab:
		return newGitLab(r, c, hc)
	case Gitea, Forgejo:
		return newGitea(kind, r, c, hc)
	case Bitbucket:
		return newBitbucket(r, c, hc)
	}
	return nil, fmt.Errorf("unknown forge %q: write one of github, gitlab, gitea, forgejo, bitbucket", kind)
}

// redact drops user information from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}
