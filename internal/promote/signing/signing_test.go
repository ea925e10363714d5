package signing_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/signing"
	"github.com/kropipe/kropipe/internal/promote/signing/signingtest"
)

const payload = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor kropipe <kropipe@example.com> 1700000000 +0000\ncommitter kropipe <kropipe@example.com> 1700000000 +0000\n\nPromote image from 1.2.1 to 1.2.2\n"

// Every kind of key a team signs with loads from its file, names itself by the
// fingerprint its own tools print, and signs so that those tools verify the signature.
func TestLoadFile_SignsSoTheKeysOwnToolsVerify(t *testing.T) {
	for _, tc := range []struct{ name, typ, passphrase string }{
		{"ssh ed25519", "ed25519", ""},
		{"ssh ed25519 with passphrase", "ed25519", "correct horse"},
		{"ssh ecdsa", "ecdsa", ""},
		{"ssh ecdsa with passphrase", "ecdsa", "correct horse"},
		{"ssh rsa", "rsa", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := signingtest.NewSSHKey(t, tc.typ, tc.passphrase)
			s, err := signing.LoadFile(k.Private, passFile(t, tc.passphrase))
			if err != nil {
				t.Fatal(err)
			}
			fp := strings.Fields(string(runOut(t, nil, "ssh-keygen", "-lf", k.Public)))[1]
			if s.Format() != "ssh" || s.KeyID() != fp {
				t.Errorf("format %q key %q, want ssh %s", s.Format(), s.KeyID(), fp)
			}
			sig, err := s.Sign([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(sig), "-----BEGIN SSH SIGNATURE-----\n") {
				t.Errorf("signature %q is not an armored SSH signature", sig)
			}
			sigFile := writeFile(t, "sig", sig)
			cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", k.AllowedSigners, "-I", "kropipe@example.com", "-n", "git", "-s", sigFile)
			cmd.Stdin = strings.NewReader(payload)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("ssh-keygen -Y verify -n git: %v\n%s", err, out)
			}
		})
	}
	for _, tc := range []struct{ name, algo, passphrase string }{
		{"openpgp ed25519", "ed25519", ""},
		{"openpgp ed25519 with passphrase", "ed25519", "correct horse"},
		{"openpgp rsa3072", "rsa3072", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := signingtest.NewOpenPGPKey(t, "kropipe <kropipe@example.com>", tc.algo, "sign", tc.passphrase)
			s, err := signing.LoadFile(writeFile(t, "key.asc", k.Secret), passFile(t, tc.passphrase))
			if err != nil {
				t.Fatal(err)
			}
			if s.Format() != "openpgp" || s.KeyID() != k.Fingerprint {
				t.Errorf("format %q key %q, want openpgp %s", s.Format(), s.KeyID(), k.Fingerprint)
			}
			sig, err := s.Sign([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(sig), "-----BEGIN PGP SIGNATURE-----") {
				t.Errorf("signature %q is not an armored OpenPGP signature", sig)
			}
			cmd := exec.Command("gpg", "--batch", "--verify", writeFile(t, "sig.asc", sig), writeFile(t, "payload", []byte(payload)))
			cmd.Env = append(os.Environ(), "GNUPGHOME="+k.Home)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("gpg --verify: %v\n%s", err, out)
			}
		})
	}
}

// gpg --export-secret-keys without --armor is binary: it has no header to tell its
// format by, and still loads.
func TestLoad_ReadsABinaryOpenPGPKey(t *testing.T) {
	k := signingtest.NewOpenPGPKey(t, "kropipe <kropipe@example.com>", "ed25519", "sign", "")
	binary := runOut(t, nil, "gpg", "--batch", "--output", "-", "--dearmor", writeFile(t, "key.asc", k.Secret))
	s, err := signing.Load(binary, nil, "key.gpg")
	if err != nil {
		t.Fatal(err)
	}
	if s.Format() != "openpgp" || s.KeyID() != k.Fingerprint {
		t.Errorf("format %q key %q, want openpgp %s", s.Format(), s.KeyID(), k.Fingerprint)
	}
}

// A key kropipe cannot sign with fails at start with an error that names where the
// key came from and what to give instead, and never shows the key or the passphrase.
func TestLoad_RefusesWhatItCannotSignWith(t *testing.T) {
	sshKey := signingtest.NewSSHKey(t, "ed25519", "correct horse")
	sshPlain := signingtest.NewSSHKey(t, "ed25519", "")
	pgpKey := signingtest.NewOpenPGPKey(t, "kropipe <kropipe@example.com>", "ed25519", "sign", "correct horse")
	pgpCertifyOnly := signingtest.NewOpenPGPKey(t, "kropipe <kropipe@example.com>", "ed25519", "cert", "")
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		key        []byte
		passphrase string
		want       error
		says       string
	}{
		{"garbage", []byte("not a key at all\n"), "", signing.ErrNotAKey, "give the private key kropipe signs with"},
		{"empty", nil, "", signing.ErrNotAKey, "give the private key kropipe signs with"},
		{"a broken PEM block", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), "", signing.ErrNotAKey, "give the private key"},
		{"ssh key without its passphrase", read(sshKey.Private), "", signing.ErrPassphraseMissing, "set --signing-key-passphrase-file"},
		{"ssh key with a wrong passphrase", read(sshKey.Private), "wrong horse", signing.ErrPassphraseWrong, "check --signing-key-passphrase-file"},
		{"ssh public key", read(sshPlain.Public), "", signing.ErrPublicKey, "give the private key"},
		{"openpgp key without its passphrase", pgpKey.Secret, "", signing.ErrPassphraseMissing, "git.signing.passphraseFile"},
		{"openpgp key with a wrong passphrase", pgpKey.Secret, "wrong horse", signing.ErrPassphraseWrong, "git.signing.passphraseFile"},
		{"openpgp public key", pgpKey.Public, "", signing.ErrPublicKey, "gpg --export-secret-keys --armor"},
		{"openpgp key that may only certify", pgpCertifyOnly.Secret, "", signing.ErrNoSigningKey, "signing (sub)key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signing.Load(tc.key, []byte(tc.passphrase), "Secret argocd/kropipe-promoter-signing")
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "signing key Secret argocd/kropipe-promoter-signing") || !strings.Contains(msg, tc.says) {
				t.Errorf("error %q: want it to name the Secret and say %q", msg, tc.says)
			}
			if tc.passphrase != "" && strings.Contains(msg, tc.passphrase) {
				t.Errorf("error %q shows the passphrase", msg)
			}
			for _, line := range strings.Split(string(tc.key), "\n") {
				if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
					t.Errorf("error %q shows the key", msg)
				}
			}
		})
	}
}

func TestLoadFile_NamesTheFileItCannotRead(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "signing.key")
	if _, err := signing.LoadFile(missing, ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v, want one naming %s", err, missing)
	}
	k := signingtest.NewSSHKey(t, "ed25519", "")
	if _, err := signing.LoadFile(k.Private, missing); err == nil || !strings.Contains(err.Error(), "passphrase") || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v, want one naming the passphrase file %s", err, missing)
	}
	// A file that cannot be told from a key names itself.
	garbage := writeFile(t, "key", []byte("hello"))
	if _, err := signing.LoadFile(garbage, ""); err == nil || !strings.Contains(err.Error(), "signing key "+garbage+": ") {
		t.Errorf("error %v, want one naming %s", err, garbage)
	}
}

// The cost of signing one commit, on top of writing it.
func BenchmarkSign(b *testing.B) {
	for _, tc := range []struct {
		name string
		load func(b *testing.B) signing.Signer
	}{
		{"ssh-ed25519", func(b *testing.B) signing.Signer {
			return must(signing.LoadFile(signingtest.NewSSHKey(b, "ed25519", "").Private, ""))
		}},
		{"ssh-ecdsa", func(b *testing.B) signing.Signer {
			return must(signing.LoadFile(signingtest.NewSSHKey(b, "ecdsa", "").Private, ""))
		}},
		{"openpgp-ed25519", func(b *testing.B) signing.Signer {
			return must(signing.Load(signingtest.NewOpenPGPKey(b, "kropipe <kropipe@example.com>", "ed25519", "sign", "").Secret, nil, "bench"))
		}},
		{"openpgp-rsa3072", func(b *testing.B) signing.Signer {
			return must(signing.Load(signingtest.NewOpenPGPKey(b, "kropipe <kropipe@example.com>", "rsa3072", "sign", "").Secret, nil, "bench"))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.load(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign([]byte(payload)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func must(s signing.Signer, err error) signing.Signer {
	if err != nil {
		panic(err)
	}
	return s
}

func passFile(t *testing.T, passphrase string) string {
	if passphrase == "" {
		return ""
	}
	return writeFile(t, "passphrase", []byte(passphrase+"\n"))
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runOut(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}
