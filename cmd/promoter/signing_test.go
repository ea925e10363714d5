package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/signing/signingtest"
)

// withSigning adds git.signing to the env's promoter.yaml.
func withSigning(t *testing.T, e env, keyFile, passphraseFile string) {
	t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	block := "  signing:\n    keyFile: " + keyFile + "\n"
	if passphraseFile != "" {
		block += "    passphraseFile: " + passphraseFile + "\n"
	}
	cfg := strings.Replace(string(b), "\nregistries:", "\n"+block+"registries:", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Local mode with git.signing: the promotion, the rollback and the promotion by hand are
// each signed, and real git verify-commit accepts them with the key's public half.
func TestCommands_LocalModeSignsEveryCommit(t *testing.T) {
	k := signingtest.NewSSHKey(t, "ed25519", "correct horse")
	pass := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(pass, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, devStage)
	withSigning(t, e, k.Private, pass)
	flags := []string{"--config", e.config, "--data-dir", e.dataDir, "--log-level", "error"}
	for _, args := range [][]string{{"run", "--once"}, {"rollback", "develop-frontend"}, {"promote", "develop-frontend", "1.2.2"}} {
		if out, err := run(t, append(args, flags...)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	revs, err := gitserver.GitOutput(context.Background(), e.bare, "rev-list", "main~3..main")
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.Fields(revs)) != 3 {
		t.Fatalf("commits %q, want the promotion, the rollback and the promotion by hand", revs)
	}
	for _, rev := range strings.Fields(revs) {
		if out, err := signingtest.VerifySSH(t, e.bare, k.AllowedSigners, rev); err != nil {
			t.Errorf("git verify-commit %s: %v\n%s", rev, err, out)
		}
	}
}

// A signing key the promoter cannot use fails every command that would write, naming
// promoter.yaml, the key file and what to do; nothing is pushed.
func TestCommands_LocalModeRefusesAKeyItCannotSignWith(t *testing.T) {
	k := signingtest.NewSSHKey(t, "ed25519", "correct horse")
	garbage := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		says      []string
	}{
		{"a key without its passphrase", k.Private, []string{"protected by a passphrase", "git.signing.passphraseFile"}},
		{"not a key", garbage, []string{"not an SSH or OpenPGP private key", "give the private key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, devStage)
			withSigning(t, e, tc.key, "")
			before, err := gitserver.GitOutput(context.Background(), e.bare, "rev-parse", "main")
			if err != nil {
				t.Fatal(err)
			}
			_, err = run(t, "run", "--once", "--config", e.config, "--data-dir", e.dataDir, "--log-level", "error")
			if err == nil {
				t.Fatal("run --once started with a key it cannot sign with")
			}
			for _, w := range append([]string{e.config, "git.signing", "signing key " + tc.key}, tc.says...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if after, _ := gitserver.GitOutput(context.Background(), e.bare, "rev-parse", "main"); after != before {
				t.Errorf("main moved from %s to %s", before, after)
			}
		})
	}
}

// The controller loads --signing-key-file before it starts anything: a key it cannot sign
// with is refused with the flag to fix.
func TestController_RefusesASigningKeyItCannotUse(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := signingtest.NewSSHKey(t, "ecdsa", "correct horse")
	wrong := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(wrong, []byte("wrong horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		says  []string
	}{
		{"no passphrase", []string{"--signing-key-file", k.Private}, []string{"signing key " + k.Private, "--signing-key-passphrase-file"}},
		{"wrong passphrase", []string{"--signing-key-file", k.Private, "--signing-key-passphrase-file", wrong}, []string{"signing key " + k.Private, "does not decrypt"}},
		{"public key", []string{"--signing-key-file", k.Public}, []string{"signing key " + k.Public, "public key", "give the private key"}},
		{"passphrase without key", []string{"--signing-key-passphrase-file", wrong}, []string{"without --signing-key-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, append([]string{"controller", "--namespace", "kropipe", "--kubeconfig", kubeconfig, "--log-level", "error"}, tc.flags...)...)
			if err == nil {
				t.Fatal("controller started")
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "wrong horse") {
				t.Errorf("error %q shows the passphrase", err)
			}
		})
	}
}

// The passphrase may come from KROPIPE_SIGNING_KEY_PASSPHRASE, as the API token comes from
// KROPIPE_TOKEN; --signing-key-passphrase-file wins.
func TestSigningFlags_PassphraseFromTheEnvironment(t *testing.T) {
	k := signingtest.NewSSHKey(t, "ed25519", "correct horse")
	g := &globals{getenv: func(name string) string {
		if name == "KROPIPE_SIGNING_KEY_PASSPHRASE" {
			return "correct horse"
		}
		return ""
	}}
	s, err := (&signingFlags{keyFile: k.Private}).load(g)
	if err != nil || s == nil || s.Format() != "ssh" {
		t.Fatalf("signer %v, %v", s, err)
	}
	wrong := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(wrong, []byte("wrong horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&signingFlags{keyFile: k.Private, passphraseFile: wrong}).load(g); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Errorf("the file's wrong passphrase: %v", err)
	}
}
