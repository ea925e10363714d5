package gitwrite

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Credentials are the ways kropipe can authenticate to a Git server. Set one group:
// Username+Password, Token (with an optional Username, default "x-access-token", which
// GitHub, GitLab and Gitea all accept), or SSHKeyPath.
type Credentials struct {
	Username string
	Password string
	Token    string

	SSHKeyPath       string // private key file
	SSHKeyPassphrase string
	SSHUser          string // default "git"
	SSHKnownHosts    string // known_hosts file; default: $SSH_KNOWN_HOSTS or ~/.ssh/known_hosts
}

// CredentialsFromEnv reads credentials from the environment, with every name prefixed
// by prefix (for example "KROPIPE_GIT_"): USERNAME, PASSWORD, TOKEN, SSH_KEY (a path),
// SSH_KEY_PASSPHRASE, SSH_KNOWN_HOSTS. PASSWORD_FILE, TOKEN_FILE and
// SSH_KEY_PASSPHRASE_FILE name files to read instead, which is how Kubernetes secrets
// are usually mounted.
func CredentialsFromEnv(prefix string) (Credentials, error) {
	var c Credentials
	var err error
	get := func(name string) string {
		if err != nil {
			return ""
		}
		if v := os.Getenv(prefix + name); v != "" {
			return v
		}
		file := os.Getenv(prefix + name + "_FILE")
		if file == "" {
			return ""
		}
		b, e := os.ReadFile(file)
		if e != nil {
			// Name the variable, not the content: the path is not a secret, the file is.
			err = fmt.Errorf("reading %s%s_FILE: %w", prefix, name, e)
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	}
	c.Username = get("USERNAME")
	c.Password = get("PASSWORD")
	c.Token = get("TOKEN")
	c.SSHKeyPath = os.Getenv(prefix + "SSH_KEY")
	c.SSHKeyPassphrase = get("SSH_KEY_PASSPHRASE")
	c.SSHKnownHosts = os.Getenv(prefix + "SSH_KNOWN_HOSTS")
	return c, err
}

func (c Credentials) empty() bool {
	return c.Username == "" && c.Password == "" && c.Token == "" && c.SSHKeyPath == ""
}

// secrets lists the strings that must never reach a log or an error.
func (c Credentials) secrets() []string {
	var s []string
	vals := []string{c.Password, c.Token, c.SSHKeyPassphrase}
	if c.Password == "" && c.Token == "" && len(c.Username) >= 16 {
		vals = append(vals, c.Username) // https://TOKEN@host: the user name is the token
	}
	for _, v := range vals {
		if len(v) >= 3 { // shorter strings would scrub ordinary words
			s = append(s, v)
		}
	}
	return s
}

// authMethod turns credentials into a go-git AuthMethod for the given URL scheme.
func (c Credentials) authMethod(rawURL string) (transport.AuthMethod, error) {
	if c.empty() {
		return nil, nil
	}
	if c.SSHKeyPath != "" {
		user := c.SSHUser
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, c.SSHKeyPath, c.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("reading SSH key %s: %s", c.SSHKeyPath, scrubString(err.Error(), c.secrets()))
		}
		if c.SSHKnownHosts != "" {
			cb, err := gitssh.NewKnownHostsCallback(c.SSHKnownHosts)
			if err != nil {
				return nil, fmt.Errorf("reading SSH known hosts %s: %w", c.SSHKnownHosts, err)
			}
			keys.HostKeyCallback = cb
		}
		return keys, nil
	}
	if isSSH(rawURL) {
		return nil, fmt.Errorf("%s is an SSH URL but only a username/password or token is configured", Redact(rawURL))
	}
	if c.Token != "" {
		user := c.Username
		if user == "" {
			user = "x-access-token"
		}
		return &githttp.BasicAuth{Username: user, Password: c.Token}, nil
	}
	return &githttp.BasicAuth{Username: c.Username, Password: c.Password}, nil
}

func isSSH(raw string) bool {
	if strings.HasPrefix(raw, "ssh://") || strings.HasPrefix(raw, "git+ssh://") {
		return true
	}
	// scp-like syntax: user@host:path
	return !strings.Contains(raw, "://") && strings.Contains(raw, "@") && strings.Contains(raw, ":")
}

// splitUserinfo removes user:password from an http(s) URL and returns them as
// credentials, so the URL handed to go-git (which may echo it in errors) holds none.
func splitUserinfo(raw string) (string, Credentials) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return raw, Credentials{}
	}
	var c Credentials
	c.Username = u.User.Username()
	c.Password, _ = u.User.Password()
	u.User = nil
	return u.String(), c
}

var userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@\s]*)@`)

// Redact hides the password (and a token used as user name) in every URL inside s. It
// works on whole error messages too, so any text about to be logged can go through it.
// SSH user names ("git@host:…", "ssh://git@…") are kept: they are not secrets.
func Redact(s string) string {
	return userinfoRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRE.FindStringSubmatch(m)
		scheme, info := sub[1], sub[2]
		user, _, hasPass := strings.Cut(info, ":")
		if strings.HasPrefix(scheme, "ssh") && !hasPass {
			return m
		}
		if hasPass {
			return scheme + user + ":***@"
		}
		// A lone user in an http URL is very often a token.
		return scheme + "***@"
	})
}

func scrubString(s string, secrets []string) string {
	s = Redact(s)
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return s
}

// RefreshingToken authenticates over http(s) with a token that expires and is renewed — a
// GitHub App installation token — asked for on every request, so a clone opened once keeps
// pushing past the token's hour. A token that cannot be had sends none: the server's 401 says
// so, and the error the caller sees names the repository, never a token.
type RefreshingToken struct {
	Username string // x-access-token for GitHub
	Token    func(ctx context.Context) (string, error)
}

func (a *RefreshingToken) Name() string   { return "http-refreshing-token" }
func (a *RefreshingToken) String() string { return a.Username + ":***" }

// SetAuth puts the current token on r (go-git's http AuthMethod).
func (a *RefreshingToken) SetAuth(r *http.Request) {
	tok, err := a.Token(r.Context())
	if err != nil || tok == "" {
		return
	}
	r.SetBasicAuth(a.Username, tok)
}
