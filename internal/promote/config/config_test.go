package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestLoad_IssueExampleWithDefaults(t *testing.T) {
	cfg, err := Load("testdata/promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Git.URL != "http://127.0.0.1:8081/gitops.git" || cfg.Git.Branch != "main" || cfg.Git.Author.Email != "kropipe@example.com" {
		t.Fatalf("git %+v", cfg.Git)
	}
	if len(cfg.Registries) != 1 || !cfg.Registries[0].Insecure || cfg.Registries[0].Host != "127.0.0.1:5000" {
		t.Fatalf("registries %+v", cfg.Registries)
	}
	if len(cfg.Stages) != 3 {
		t.Fatalf("%d stages", len(cfg.Stages))
	}
	dev, stg, prod := cfg.Stages[0], cfg.Stages[1], cfg.Stages[2]
	if dev.Key != "spec.values.deployment.tag" || dev.Constraint != "^1.2" || !dev.AutoPromote || dev.RepoURL != cfg.Git.URL {
		t.Fatalf("develop %+v", dev)
	}
	if stg.Upstream != "develop-frontend" || stg.Soak != 10*time.Minute || stg.Key != stage.DefaultKey || stg.Strategy != "semver" {
		t.Fatalf("staging %+v", stg)
	}
	if stg.Verify == nil || strings.Join(stg.Verify.Command, " ") != "./smoke-test.sh --quick" || stg.Verify.Timeout != 2*time.Minute {
		t.Fatalf("staging verify %+v", stg.Verify)
	}
	if prod.AutoPromote {
		t.Fatal("prod autoPromote: false was ignored")
	}
	if dev.Origin.File != "testdata/promoter.yaml" {
		t.Errorf("develop's origin %+v, want the file it is written in (the pipeline page groups by it)", dev.Origin)
	}
}

const head = `git: {url: "https://git.example.com/org/gitops.git"}
stages:
`

func TestParse_BadInputNamesStageFieldAndFix(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown strategy", head + "  - {name: dev, image: r.example.com/a, strategy: newest-first, file: d.yaml}\n",
			[]string{`stage "dev"`, `strategy "newest-first" is unknown`}},
		{"invalid constraint", head + "  - {name: dev, image: r.example.com/a, constraint: '^^1', file: d.yaml}\n",
			[]string{`stage "dev"`, `constraint "^^1"`}},
		{"invalid allowTags regex", head + "  - {name: dev, image: r.example.com/a, allowTags: '(', file: d.yaml}\n",
			[]string{`stage "dev"`, "allowTags", "invalid regex"}},
		{"invalid ignoreTags regex", head + "  - {name: dev, image: r.example.com/a, ignoreTags: '[a', file: d.yaml}\n",
			[]string{`stage "dev"`, "ignoreTags", "invalid regex"}},
		{"two stages writing the same file", head + "  - {name: dev, image: r.example.com/a, file: dev/instance.yaml}\n  - {name: dev2, image: r.example.com/b, file: ./dev/instance.yaml}\n",
			[]string{`stage "dev2"`, "dev/instance.yaml", `already written by stage "dev"`}},
		{"two stages on the default file", head + "  - {name: dev, image: r.example.com/a}\n  - {name: stg, image: r.example.com/b}\n",
			[]string{`stage "stg"`, "instance.yaml", `already written by stage "dev"`}},
		{"absolute file path", head + "  - {name: dev, image: r.example.com/a, file: /etc/passwd}\n",
			[]string{`stage "dev"`, "file", "absolute"}},
		{"file path escaping with ..", head + "  - {name: dev, image: r.example.com/a, file: ../other/instance.yaml}\n",
			[]string{`stage "dev"`, "file", "outside the repository"}},
		{"missing image", head + "  - {name: dev, file: d.yaml}\n",
			[]string{`stage "dev"`, "image", "missing"}},
		{"upstream naming a missing stage", head + "  - {name: stg, image: r.example.com/a, upstream: develop, file: s.yaml}\n",
			[]string{`stage "stg"`, "upstream", `"develop", which is not a stage`}},
		{"cycle of upstreams", head + "  - {name: a, image: r.example.com/a, upstream: b, file: a.yaml}\n  - {name: b, image: r.example.com/a, upstream: a, file: b.yaml}\n",
			[]string{"upstream", "cycle"}},
		{"unknown stage field", head + "  - name: dev\n    image: r.example.com/a\n    constrant: ^1\n",
			[]string{`stage "dev"`, `unknown field "constrant"`, `did you mean "constraint"`, ":5:"}},
		{"unknown top-level field", "gti: {}\n" + head + "  - {name: dev, image: r.example.com/a}\n",
			[]string{`unknown field "gti"`, `did you mean "git"`}},
		{"bad soak", head + "  - {name: a, image: r.example.com/a, file: a.yaml}\n  - {name: b, image: r.example.com/a, upstream: a, soak: ten minutes, file: b.yaml}\n",
			[]string{`stage "b"`, "soak", "not a duration"}},
		{"autoPromote not a bool", head + "  - {name: dev, image: r.example.com/a, autoPromote: sometimes}\n",
			[]string{`stage "dev"`, "autoPromote", "true or false"}},
		{"password in git url", "git: {url: 'https://bob:hunter2@git.example.com/gitops.git'}\nstages: [{name: dev, image: r.example.com/a}]\n",
			[]string{"git.url", "password", "git.credentials"}},
		{"unsupported git url", "git: {url: 'ftp://git.example.com/gitops.git'}\nstages: [{name: dev, image: r.example.com/a}]\n",
			[]string{"git.url", `scheme "ftp"`}},
		{"missing git", "stages: [{name: dev, image: r.example.com/a}]\n",
			[]string{"git is missing"}},
		{"registry with scheme", head + "  - {name: dev, image: r.example.com/a}\nregistries: [{host: 'http://127.0.0.1:5000'}]\n",
			[]string{"registry", "insecure: true"}},
		{"not YAML", "git: [\n", []string{"not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "promoter.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "promoter.yaml") {
				t.Errorf("error %q does not start with the file name", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
}

func TestCredentials_FilesWinOverEnvironment(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KROPIPE_GIT_TOKEN", "from-env")
	t.Setenv("KROPIPE_GIT_USERNAME", "env-user")
	cfg, err := Parse([]byte("git:\n  url: https://git.example.com/gitops.git\n  credentials: {tokenFile: "+tok+"}\nstages: [{name: dev, image: r.example.com/a}]\n"), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Credentials()
	if err != nil || c.Token != "s3cret" || c.Username != "env-user" {
		t.Fatalf("credentials %+v, %v", c, err)
	}
	cfg.Git.Credentials.PasswordFile = filepath.Join(dir, "missing")
	if _, err := cfg.Credentials(); err == nil || !strings.Contains(err.Error(), "passwordFile") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParse_Groups(t *testing.T) {
	stages := head + "  - {name: develop-frontend, image: r.example.com/frontend, file: f.yaml}\n  - {name: develop-backend, image: r.example.com/backend, file: b.yaml}\n"
	cfg, err := Parse([]byte(stages+"groups:\n  - {name: develop/shop, members: [develop-frontend, develop-backend], requireAll: true, subject: 'Ship {{.Name}}'}\n"), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := stage.GroupSpec{Name: "develop/shop", Members: []string{"develop-frontend", "develop-backend"}, RequireAll: true, Subject: "Ship {{.Name}}"}
	if len(cfg.Groups) != 1 || cfg.Groups[0].Name != want.Name || strings.Join(cfg.Groups[0].Members, ",") != "develop-frontend,develop-backend" || !cfg.Groups[0].RequireAll || cfg.Groups[0].Subject != want.Subject {
		t.Fatalf("groups %+v", cfg.Groups)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"groups:\n  - {name: develop/shop, member: [develop-frontend]}\n", `group "develop/shop": unknown field "member"; did you mean "members"?`},
		{"groups:\n  - {name: develop/shop}\n", `group "develop/shop": members is missing`},
		{"groups:\n  - {members: [develop-frontend]}\n", "group 1: name is missing"},
	} {
		_, err := Parse([]byte(stages+tt.yaml), "promoter.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "promoter.yaml:") {
			t.Errorf("%q: error %v, want %q with the file and line", tt.yaml, err, tt.want)
		}
	}
}

// git.signing names the key and its passphrase file; Signer loads it, and a key it cannot
// sign with is an error naming promoter.yaml, the field and the file.
func TestSigner_LoadsGitSigningOrNamesTheProblem(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.key")
	if err := os.WriteFile(key, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("git:\n  url: https://git.example.com/gitops.git\n  signing: {keyFile: "+key+", passphraseFile: "+filepath.Join(dir, "pass")+"}\nstages: [{name: dev, image: r.example.com/a}]\n"), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Git.Signing.KeyFile != key || cfg.Git.Signing.PassphraseFile != filepath.Join(dir, "pass") {
		t.Fatalf("signing %+v", cfg.Git.Signing)
	}
	// The passphrase file is missing: named.
	if _, err := cfg.Signer(); err == nil || !strings.HasPrefix(err.Error(), "promoter.yaml: git.signing: ") || !strings.Contains(err.Error(), "pass") {
		t.Errorf("missing passphrase file: %v", err)
	}
	cfg.Git.Signing.PassphraseFile = ""
	if _, err := cfg.Signer(); err == nil || !strings.HasPrefix(err.Error(), "promoter.yaml: git.signing: signing key "+key+": not an SSH or OpenPGP private key") {
		t.Errorf("not a key: %v", err)
	}
	cfg.Git.Signing = SigningSources{}
	if s, err := cfg.Signer(); s != nil || err != nil {
		t.Errorf("no git.signing: %v, %v; want no signer", s, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"  signing: {passphraseFile: p}\n", "git.signing: keyFile is missing"},
		{"  signing: {keyfile: k}\n", `did you mean "keyFile"`},
	} {
		_, err := Parse([]byte("git:\n  url: https://git.example.com/gitops.git\n"+tc.yaml+"stages: [{name: dev, image: r.example.com/a}]\n"), "promoter.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParse_PullRequestStage(t *testing.T) {
	yaml := head + `  - name: prod-frontend
    image: r.example.com/frontend
    write: pull-request
    pullRequest:
      branch: promote/{{.Stage}}
      merge: auto
      method: squash
      labels: [promotion, prod]
      reviewers: [alice, org/sre]
      forge: gitea
      forgeAPIURL: https://git.example.com/api/v1
`
	cfg, err := Parse([]byte(yaml), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Stages[0]
	want := stage.PullRequestSpec{Branch: "promote/{{.Stage}}", Merge: "auto", Method: "squash", Labels: []string{"promotion", "prod"}, Reviewers: []string{"alice", "org/sre"}, Forge: "gitea", ForgeAPIURL: "https://git.example.com/api/v1"}
	if s.Write != stage.WritePullRequest || !reflect.DeepEqual(s.PullRequest, want) {
		t.Fatalf("stage %q %+v", s.Write, s.PullRequest)
	}
	cfg, err = Parse([]byte(head+"  - {name: prod, image: r.example.com/a, write: pull-request}\n"), "promoter.yaml")
	if err != nil || cfg.Stages[0].PullRequest.Merge != stage.MergeManual || cfg.Stages[0].PullRequest.Branch != stage.DefaultPullRequestBranch {
		t.Fatalf("defaults %+v, %v", cfg.Stages, err)
	}
}

func TestParse_CommitViaGitHubAPI(t *testing.T) {
	// A pushing stage on a GitHub Enterprise host the URL does not show names its forge.
	yaml := head + "  - {name: prod, image: r.example.com/a, commitVia: github-api, pullRequest: {forge: github, forgeAPIURL: https://git.example.com/api/v3}}\n"
	cfg, err := Parse([]byte(yaml), "promoter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Stages[0]; s.Write != stage.WritePush || s.CommitVia != stage.CommitViaGitHubAPI || s.PullRequest.Forge != "github" {
		t.Fatalf("stage %+v", s)
	}
}

func TestParse_BadPullRequestSettingsNameStageFieldAndFix(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown write mode", "  - {name: prod, image: r.example.com/a, write: pr}\n", []string{`stage "prod"`, "write", `"pr" is not a write mode`}},
		{"pull request on a pushing stage", "  - {name: prod, image: r.example.com/a, pullRequest: {merge: auto}}\n", []string{`stage "prod"`, "pullRequest.merge", "set write: pull-request"}},
		{"unknown pullRequest field", "  - name: prod\n    image: r.example.com/a\n    write: pull-request\n    pullRequest: {merg: auto}\n", []string{`stage "prod": pullRequest`, `unknown field "merg"`, `did you mean "merge"?`, ":6:"}},
		{"labels not a list", "  - {name: prod, image: r.example.com/a, write: pull-request, pullRequest: {labels: prod}}\n", []string{`stage "prod": pullRequest`, "labels must be a list"}},
		{"branch equal to the target", "  - {name: prod, image: r.example.com/a, write: pull-request, pullRequest: {branch: main}}\n", []string{`stage "prod"`, "pullRequest.branch", "the branch the stage deploys from"}},
		{"unknown forge", "  - {name: prod, image: r.example.com/a, write: pull-request, pullRequest: {forge: gogs}}\n", []string{"pullRequest.forge", `unknown forge "gogs"`}},
		{"commitVia github-api off GitHub", "  - {name: prod, image: r.example.com/a, commitVia: github-api}\n", []string{`stage "prod"`, "commitVia", "does not show GitHub", "forge: github"}},
		{"commitVia github-api on GitLab", "  - {name: prod, image: r.example.com/a, commitVia: github-api, pullRequest: {forge: gitlab}}\n", []string{"commitVia", "forge is gitlab"}},
		{"unknown commitVia", "  - {name: prod, image: r.example.com/a, commitVia: gh}\n", []string{"commitVia", `"gh" is not a way to commit`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(head+tt.yaml), "promoter.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestForgeCredentials_FromEnvironmentFilesOrGit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gitTok, forgeTok, key := write("git-token", "git-s3cret\n"), write("forge-token", "forge-s3cret\n"), write("app.pem", "-----BEGIN RSA PRIVATE KEY-----\n")
	parse := func(creds string) *Config {
		t.Helper()
		cfg, err := Parse([]byte("git:\n  url: https://git.example.com/gitops.git\n  credentials: "+creds+"\nstages: [{name: dev, image: r.example.com/a}]\n"), "promoter.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name      string
		env       map[string]string
		creds     string
		wantToken string
		wantUser  string
		wantApp   bool
	}{
		{"the Git token when no forge token is given", nil, "{tokenFile: " + gitTok + "}", "git-s3cret", "", false},
		{"the Git password and user (Bitbucket app password)", map[string]string{"KROPIPE_GIT_USERNAME": "bob", "KROPIPE_GIT_PASSWORD": "pw"}, "{}", "pw", "bob", false},
		{"KROPIPE_FORGE_TOKEN over the Git token", map[string]string{"KROPIPE_FORGE_TOKEN": "env-forge"}, "{tokenFile: " + gitTok + "}", "env-forge", "", false},
		{"KROPIPE_FORGE_TOKEN_FILE", map[string]string{"KROPIPE_FORGE_TOKEN_FILE": forgeTok}, "{}", "forge-s3cret", "", false},
		{"forgeTokenFile wins over the environment", map[string]string{"KROPIPE_FORGE_TOKEN": "env-forge"}, "{forgeTokenFile: " + forgeTok + ", forgeUsername: kropipe-bot}", "forge-s3cret", "kropipe-bot", false},
		{"a GitHub App", nil, "{tokenFile: " + gitTok + ", githubApp: {appID: 12, installationID: 34, privateKeyFile: " + key + "}}", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"KROPIPE_GIT_TOKEN", "KROPIPE_GIT_USERNAME", "KROPIPE_GIT_PASSWORD", "KROPIPE_FORGE_TOKEN", "KROPIPE_FORGE_TOKEN_FILE", "KROPIPE_FORGE_USERNAME"} {
				t.Setenv(k, tt.env[k])
			}
			fc, err := parse(tt.creds).ForgeCredentials()
			if err != nil {
				t.Fatal(err)
			}
			if fc.Token != tt.wantToken || fc.Username != tt.wantUser || (fc.GitHubApp != nil) != tt.wantApp {
				t.Fatalf("forge credentials token %q user %q app %+v", fc.Token, fc.Username, fc.GitHubApp)
			}
			if tt.wantApp && (fc.GitHubApp.AppID != 12 || fc.GitHubApp.InstallationID != 34 || len(fc.GitHubApp.PrivateKey) == 0) {
				t.Fatalf("GitHub App %+v", fc.GitHubApp)
			}
		})
	}
	cfg := parse("{forgeTokenFile: " + filepath.Join(dir, "missing") + "}")
	if _, err := cfg.ForgeCredentials(); err == nil || !strings.Contains(err.Error(), "git.credentials.forgeTokenFile") {
		t.Fatalf("missing token file: %v", err)
	}
	if _, err := Parse([]byte("git:\n  url: https://git.example.com/gitops.git\n  credentials: {githubApp: {appID: 12}}\nstages: [{name: dev, image: r.example.com/a}]\n"), "promoter.yaml"); err == nil || !strings.Contains(err.Error(), "installationID") {
		t.Fatalf("incomplete GitHub App: %v", err)
	}
}
