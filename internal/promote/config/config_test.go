package config

import (
	"os"
	"path/filepath"
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
