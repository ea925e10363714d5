// Package config reads promoter.yaml, the local-mode description of the Git
// repository, the registries and the stages, and refuses anything it does not know.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/signing"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/suggest"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// DefaultCredentialsEnv is the prefix of the environment variables Git credentials
// are read from when git.credentials names none.
const DefaultCredentialsEnv = "KROPIPE_GIT_"

// Config is a loaded, validated promoter.yaml.
type Config struct {
	// Path is the file it was read from, for messages.
	Path       string
	Git        Git
	Registries []Registry
	// Stages have their defaults filled and the Git URL and branch of Git.
	Stages []stage.Spec
	// Interval is the poll interval the file asks for (0: the command line's).
	Interval time.Duration
	// Groups are the release groups: stages that move together as one set. How they
	// relate to the stages is the engine's to check, so a bad group holds only itself.
	Groups []stage.GroupSpec
	// SignaturePolicies are signaturePolicies:, by name, their key material read; the
	// stages' Signatures hold copies of those they name.
	SignaturePolicies map[string]signature.Policy
}

// Git is the repository the stages write to.
type Git struct {
	URL    string
	Branch string
	Author Author
	// Credentials say where secrets come from; the secrets themselves are read by
	// Credentials() only when needed, so a Config can be printed safely.
	Credentials CredentialSources
	// Signing names the key every commit is signed with (git.signing); read by Signer().
	Signing SigningSources
}

// SigningSources names the private key (SSH or OpenPGP) that signs the promoter's
// commits and the file holding its passphrase, if it has one.
type SigningSources struct {
	KeyFile        string
	PassphraseFile string
}

// Author signs the promoter's commits.
type Author struct{ Name, Email string }

// CredentialSources names files and an environment prefix holding Git credentials.
type CredentialSources struct {
	Env               string // prefix, default KROPIPE_GIT_
	Username          string // not a secret
	PasswordFile      string
	TokenFile         string
	SSHKeyFile        string
	SSHKnownHostsFile string
	// ForgeTokenFile and ForgeUsername are the forge API's credentials for stages in
	// pull-request mode; see ForgeCredentials for the environment and the fallback.
	ForgeTokenFile string
	ForgeUsername  string // Bitbucket app passwords only; not a secret
	// GitHubApp, when set, makes kropipe act on GitHub as an App installation.
	GitHubApp *GitHubAppSource
}

// GitHubAppSource names a GitHub App installation and the file holding its private key.
type GitHubAppSource struct {
	AppID          int64
	InstallationID int64
	PrivateKeyFile string
}

// ForgeCredentialsEnv is the prefix of the environment variables the forge token is read
// from: KROPIPE_FORGE_TOKEN (or KROPIPE_FORGE_TOKEN_FILE naming a file) and
// KROPIPE_FORGE_USERNAME.
const ForgeCredentialsEnv = "KROPIPE_FORGE_"

// Registry is how to reach one registry host.
type Registry struct {
	Host      string
	Insecure  bool
	RateLimit float64
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading promoter config: %w", err)
	}
	return Parse(data, path)
}

// Error is a problem in the config file, with its position when known.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Parse reads a promoter.yaml held in data; file names it in errors.
func Parse(data []byte, file string) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, &Error{File: file, Err: fmt.Errorf("not valid YAML: %w", err)}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{File: file, Err: errors.New("expected a mapping with git, registries and stages")}
	}
	p := &parser{file: file}
	cfg := p.config(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	cfg.Path = file
	if err := stage.ValidateAll(cfg.Stages); err != nil {
		return nil, &Error{File: file, Err: err}
	}
	return cfg, nil
}

// parser walks the YAML tree, collecting every error instead of stopping at the first.
type parser struct {
	file string
	errs []error
	// refsOnly: signature key material is named, not read (a --signature-policies file).
	refsOnly bool
	// policies are signaturePolicies:, which stages name.
	policies map[string]signature.Policy
}

func (p *parser) fail(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Err: fmt.Errorf(format, args...)})
}

// fields checks a mapping's keys against known ones and returns key → value node.
// where names the place in the user's words ("git", `stage "develop-frontend"`).
func (p *parser) fields(n *yaml.Node, where string, known ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.fail(n, "%s: expected a mapping of %s", where, strings.Join(known, ", "))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(known, k.Value) {
			msg := fmt.Sprintf("%s: unknown field %q", where, k.Value)
			if s := suggest.Closest(k.Value, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += "; known fields are " + strings.Join(known, ", ")
			}
			p.fail(k, "%s", msg)
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.fail(k, "%s: field %q is given twice", where, k.Value)
		}
		out[k.Value] = v
	}
	return out
}

func (p *parser) str(m map[string]*yaml.Node, key, where string) string {
	n, ok := m[key]
	if !ok || n.Tag == "!!null" {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.fail(n, "%s: %s must be a string", where, key)
		return ""
	}
	return n.Value
}

func (p *parser) boolean(m map[string]*yaml.Node, key, where string, def bool) bool {
	n, ok := m[key]
	if !ok || n.Tag == "!!null" {
		return def
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.fail(n, "%s: %s must be true or false, not %q", where, key, n.Value)
		return def
	}
	return b
}

func (p *parser) number(m map[string]*yaml.Node, key, where string) float64 {
	n, ok := m[key]
	if !ok || n.Tag == "!!null" {
		return 0
	}
	var f float64
	if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil {
		p.fail(n, "%s: %s must be a number (requests per second), not %q", where, key, n.Value)
		return 0
	}
	return f
}

func (p *parser) duration(m map[string]*yaml.Node, key, where string) time.Duration {
	s := p.str(m, key, where)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		p.fail(m[key], "%s: %s %q is not a duration; write one such as 30s, 10m or 1h30m", where, key, s)
		return 0
	}
	return d
}

func (p *parser) list(m map[string]*yaml.Node, key, where string) []*yaml.Node {
	n, ok := m[key]
	if !ok || n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "%s: %s must be a list", where, key)
		return nil
	}
	return n.Content
}

// strings reads a list of strings.
func (p *parser) strings(m map[string]*yaml.Node, key, where string) []string {
	var out []string
	for _, n := range p.list(m, key, where) {
		if n.Kind != yaml.ScalarNode {
			p.fail(n, "%s: %s must be a list of names, e.g. [alice, org/sre]", where, key)
			continue
		}
		out = append(out, n.Value)
	}
	return out
}

func (p *parser) config(root *yaml.Node) *Config {
	cfg := &Config{}
	top := p.fields(root, "top level", fieldNames("")...)
	if n, ok := top["signaturePolicies"]; ok {
		p.policies = p.signaturePolicies(n)
		cfg.SignaturePolicies = p.policies
	}
	cfg.Interval = p.duration(top, "interval", "top level")
	if n, ok := top["git"]; ok {
		cfg.Git = p.git(n)
	} else {
		p.fail(root, "git is missing; give git.url (and branch) of the GitOps repository")
	}
	for _, n := range p.list(top, "registries", "top level") {
		m := p.fields(n, "registries entry", fieldNames("registries[]")...)
		r := Registry{Host: p.str(m, "host", "registries entry"), Insecure: p.boolean(m, "insecure", "registry", false), RateLimit: p.number(m, "rateLimit", "registry")}
		if r.Host == "" {
			p.fail(n, "registries entry: host is missing; write it as in image names, e.g. 127.0.0.1:5000 or ghcr.io")
		} else if strings.Contains(r.Host, "/") {
			p.fail(n, "registry %q: host must not contain a scheme or path; write e.g. 127.0.0.1:5000 and set insecure: true for plain HTTP", r.Host)
		}
		cfg.Registries = append(cfg.Registries, r)
	}
	stages := p.list(top, "stages", "top level")
	if len(stages) == 0 && top["stages"] == nil {
		p.fail(root, "stages is missing; list at least one stage with a name, an image and a file")
	}
	for i, n := range stages {
		cfg.Stages = append(cfg.Stages, p.stage(n, i, cfg.Git))
	}
	for i, n := range p.list(top, "groups", "top level") {
		cfg.Groups = append(cfg.Groups, p.group(n, i))
	}
	return cfg
}

func (p *parser) git(n *yaml.Node) Git {
	m := p.fields(n, "git", fieldNames("git")...)
	g := Git{URL: p.str(m, "url", "git"), Branch: p.str(m, "branch", "git")}
	if g.Branch == "" {
		g.Branch = stage.DefaultBranch
	}
	if g.URL == "" {
		p.fail(n, "git.url is missing; give the GitOps repository's clone URL (https, http, ssh or file)")
	} else if err := checkGitURL(g.URL); err != nil {
		p.fail(m["url"], "git.url: %v", err)
	}
	if a, ok := m["author"]; ok {
		am := p.fields(a, "git.author", fieldNames("git.author")...)
		g.Author = Author{Name: p.str(am, "name", "git.author"), Email: p.str(am, "email", "git.author")}
	}
	if g.Author.Name == "" {
		g.Author.Name = "kropipe"
	}
	if g.Author.Email == "" {
		g.Author.Email = "kropipe@localhost"
	}
	g.Credentials.Env = DefaultCredentialsEnv
	if c, ok := m["credentials"]; ok {
		cm := p.fields(c, "git.credentials", fieldNames("git.credentials")...)
		w := "git.credentials"
		g.Credentials = CredentialSources{
			Env: p.str(cm, "env", w), Username: p.str(cm, "username", w),
			PasswordFile: p.str(cm, "passwordFile", w), TokenFile: p.str(cm, "tokenFile", w),
			SSHKeyFile: p.str(cm, "sshKeyFile", w), SSHKnownHostsFile: p.str(cm, "sshKnownHostsFile", w),
			ForgeTokenFile: p.str(cm, "forgeTokenFile", w), ForgeUsername: p.str(cm, "forgeUsername", w),
		}
		if a, ok := cm["githubApp"]; ok {
			w := "git.credentials.githubApp"
			am := p.fields(a, w, fieldNames("git.credentials.githubApp")...)
			app := &GitHubAppSource{AppID: int64(p.number(am, "appID", w)), InstallationID: int64(p.number(am, "installationID", w)), PrivateKeyFile: p.str(am, "privateKeyFile", w)}
			if app.AppID <= 0 || app.InstallationID <= 0 || app.PrivateKeyFile == "" {
				p.fail(a, "%s: give appID, installationID (numbers from the App's settings and its installation URL) and privateKeyFile (the App's PEM private key)", w)
			}
			g.Credentials.GitHubApp = app
		}
		if g.Credentials.Env == "" {
			g.Credentials.Env = DefaultCredentialsEnv
		}
	}
	if sn, ok := m["signing"]; ok {
		sm := p.fields(sn, "git.signing", fieldNames("git.signing")...)
		g.Signing = SigningSources{KeyFile: p.str(sm, "keyFile", "git.signing"), PassphraseFile: p.str(sm, "passphraseFile", "git.signing")}
		if g.Signing.KeyFile == "" {
			p.fail(sn, "git.signing: keyFile is missing; give the file of the private key (SSH or OpenPGP) that signs kropipe's commits")
		}
	}
	return g
}

// checkGitURL accepts what gitwrite.Open accepts, and refuses a password in the
// file: config files get committed and shared.
func checkGitURL(raw string) error {
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			// url.Error repeats the URL, password included: keep only the reason.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return fmt.Errorf("%q is not a URL: %w", gitwrite.Redact(raw), err)
		}
		switch u.Scheme {
		case "http", "https", "ssh", "file":
		default:
			return fmt.Errorf("scheme %q is not supported; use https, http, ssh or file", u.Scheme)
		}
		if _, hasPw := u.User.Password(); hasPw {
			return errors.New("the URL holds a password; remove it and use git.credentials (passwordFile, tokenFile or the KROPIPE_GIT_* environment)")
		}
		return nil
	}
	if strings.Contains(raw, "@") && strings.Contains(raw, ":") {
		return nil // scp-like ssh: git@host:org/repo.git
	}
	return fmt.Errorf("%q is not a clone URL; write https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git or file:///path/repo.git", raw)
}

var stageFields = fieldNames("stages[]")

func (p *parser) stage(n *yaml.Node, i int, g Git) stage.Spec {
	where := fmt.Sprintf("stage %d", i+1)
	if n.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == "name" && n.Content[j+1].Value != "" {
				where = fmt.Sprintf("stage %q", n.Content[j+1].Value)
			}
		}
	}
	m := p.fields(n, where, stageFields...)
	s := stage.Spec{
		Name: p.str(m, "name", where), Image: p.str(m, "image", where),
		Strategy: p.str(m, "strategy", where), Constraint: p.str(m, "constraint", where),
		AllowTags: p.str(m, "allowTags", where), IgnoreTags: p.str(m, "ignoreTags", where),
		Platform: p.str(m, "platform", where),
		RepoURL:  g.URL, Branch: g.Branch,
		File: p.str(m, "file", where), Key: p.str(m, "key", where),
		AutoPromote: p.boolean(m, "autoPromote", where, true),
		Upstream:    p.str(m, "upstream", where),
		Soak:        p.duration(m, "soak", where),
		Interval:    p.duration(m, "interval", where),
		Origin:      stage.Origin{File: p.file},
	}
	if v, ok := m["verify"]; ok {
		vm := p.fields(v, where+": verify", fieldNames("stages[].verify")...)
		vs := &stage.VerifySpec{Timeout: p.duration(vm, "timeout", where+": verify")}
		if c, ok := vm["command"]; ok {
			switch c.Kind {
			case yaml.SequenceNode:
				for _, a := range c.Content {
					vs.Command = append(vs.Command, a.Value)
				}
			case yaml.ScalarNode:
				// A plain string runs through the shell, as users expect from one line.
				vs.Command = []string{"sh", "-c", c.Value}
			default:
				p.fail(c, "%s: verify.command must be a list such as [./smoke-test.sh, --quick]", where)
			}
		}
		s.Verify = vs
	}
	if sn, ok := m["signature"]; ok {
		s.Signatures = p.stageSignatures(sn, where, s.Name, p.policies)
	}
	s.Write = p.str(m, "write", where)
	s.CommitVia = p.str(m, "commitVia", where)
	if n, ok := m["pullRequest"]; ok {
		w := where + ": pullRequest"
		pm := p.fields(n, w, fieldNames("stages[].pullRequest")...)
		s.PullRequest = stage.PullRequestSpec{
			Branch: p.str(pm, "branch", w), Merge: p.str(pm, "merge", w), Method: p.str(pm, "method", w),
			Labels: p.strings(pm, "labels", w), Reviewers: p.strings(pm, "reviewers", w),
			Forge: p.str(pm, "forge", w), ForgeAPIURL: p.str(pm, "forgeAPIURL", w),
		}
	}
	return s.WithDefaults()
}

// Credentials reads the Git credentials the config names: the environment first,
// then the files, which win. Errors name the file, never its content.
func (c *Config) Credentials() (gitwrite.Credentials, error) {
	src := c.Git.Credentials
	creds, err := gitwrite.CredentialsFromEnv(src.Env)
	if err != nil {
		return creds, err
	}
	if src.Username != "" {
		creds.Username = src.Username
	}
	read := func(field, path string, into *string) error {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%s: git.credentials.%s: %w", c.Path, field, err)
		}
		*into = strings.TrimRight(string(b), "\r\n")
		return nil
	}
	if err := read("passwordFile", src.PasswordFile, &creds.Password); err != nil {
		return creds, err
	}
	if err := read("tokenFile", src.TokenFile, &creds.Token); err != nil {
		return creds, err
	}
	if src.SSHKeyFile != "" {
		creds.SSHKeyPath = src.SSHKeyFile
	}
	if src.SSHKnownHostsFile != "" {
		creds.SSHKnownHosts = src.SSHKnownHostsFile
	}
	return creds, nil
}

// Signer loads the key git.signing names, nil when it names none. A key that cannot
// sign fails here, before anything is written; errors name the file, never its content.
func (c *Config) Signer() (signing.Signer, error) {
	src := c.Git.Signing
	if src.KeyFile == "" {
		return nil, nil
	}
	s, err := signing.LoadFile(src.KeyFile, src.PassphraseFile)
	if err != nil {
		return nil, fmt.Errorf("%s: git.signing: %w", c.Path, err)
	}
	return s, nil
}

// ForgeCredentials reads the credentials of the forge API that stages in pull-request mode
// use: the token from KROPIPE_FORGE_TOKEN (or the file KROPIPE_FORGE_TOKEN_FILE names),
// git.credentials.forgeTokenFile winning; without one, the Git token or password, which
// most forges accept for their API too (as Argo CD's repository Secrets are used in the
// cluster). A GitHub App's private key is read from githubApp.privateKeyFile. The caller
// sets Kind and APIURL per stage. Errors name the file or variable, never the content.
func (c *Config) ForgeCredentials() (forge.Config, error) {
	src := c.Git.Credentials
	env, err := gitwrite.CredentialsFromEnv(ForgeCredentialsEnv)
	if err != nil {
		return forge.Config{}, err
	}
	fc := forge.Config{Token: env.Token, Username: env.Username}
	if src.ForgeUsername != "" {
		fc.Username = src.ForgeUsername
	}
	if src.ForgeTokenFile != "" {
		b, err := os.ReadFile(src.ForgeTokenFile)
		if err != nil {
			return forge.Config{}, fmt.Errorf("%s: git.credentials.forgeTokenFile: %w", c.Path, err)
		}
		fc.Token = strings.TrimRight(string(b), "\r\n")
	}
	if a := src.GitHubApp; a != nil {
		key, err := os.ReadFile(a.PrivateKeyFile)
		if err != nil {
			return forge.Config{}, fmt.Errorf("%s: git.credentials.githubApp.privateKeyFile: %w", c.Path, err)
		}
		fc.GitHubApp = &forge.GitHubApp{AppID: a.AppID, InstallationID: a.InstallationID, PrivateKey: key}
	}
	if fc.Token == "" && fc.GitHubApp == nil {
		git, err := c.Credentials()
		if err != nil {
			return forge.Config{}, err
		}
		switch {
		case git.Token != "":
			fc.Token = git.Token
		case git.Password != "":
			fc.Token, fc.Username = git.Password, git.Username
		}
	}
	return fc, nil
}

// WarehouseOptions configures a warehouse for the registries listed.
func (c *Config) WarehouseOptions() []warehouse.Option {
	var opts []warehouse.Option
	for _, r := range c.Registries {
		opts = append(opts, warehouse.WithRegistry(r.Host, warehouse.RegistryConfig{Insecure: r.Insecure, RateLimit: r.RateLimit}))
	}
	return opts
}

// GitOptions are the gitwrite options for the configured author and credentials.
func (c *Config) GitOptions() ([]gitwrite.Option, error) {
	creds, err := c.Credentials()
	if err != nil {
		return nil, err
	}
	return []gitwrite.Option{gitwrite.WithAuthor(c.Git.Author.Name, c.Git.Author.Email), gitwrite.WithCredentials(creds)}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// group reads one groups: entry: name, members (a list of stage names), requireAll and
// subject.
func (p *parser) group(n *yaml.Node, i int) stage.GroupSpec {
	where := fmt.Sprintf("group %d", i+1)
	if n.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == "name" && n.Content[j+1].Value != "" {
				where = fmt.Sprintf("group %q", n.Content[j+1].Value)
			}
		}
	}
	m := p.fields(n, where, fieldNames("groups[]")...)
	g := stage.GroupSpec{
		Name:       p.str(m, "name", where),
		RequireAll: p.boolean(m, "requireAll", where, false),
		Subject:    p.str(m, "subject", where),
	}
	if g.Name == "" {
		p.fail(n, "%s: name is missing; name the group after its environment and what it ships, e.g. develop/shop", where)
	}
	for _, mn := range p.list(m, "members", where) {
		if mn.Kind != yaml.ScalarNode || mn.Value == "" {
			p.fail(mn, "%s: members must be a list of stage names, e.g. [develop-frontend, develop-backend]", where)
			continue
		}
		g.Members = append(g.Members, mn.Value)
	}
	if _, ok := m["members"]; !ok {
		p.fail(n, "%s: members is missing; list the stages that move together, e.g. [develop-frontend, develop-backend]", where)
	}
	return g
}
