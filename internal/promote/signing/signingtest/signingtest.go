// Package signingtest makes real signing keys with the real tools (ssh-keygen, gpg) and
// checks signed commits with real git, for the tests of kropipe's signed commits.
package signingtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tool returns the path of a command the test needs. Without it the test skips on a
// developer's machine, but fails in CI (CI set), where .ci/run installs it.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("CI is set but %s is not installed: signed-commit tests must run (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	return ""
}

// SSHKey is a key pair made by ssh-keygen.
type SSHKey struct {
	Private, Public string // files
	// AllowedSigners is a gpg.ssh.allowedSignersFile trusting Public for every identity.
	AllowedSigners string
}

// NewSSHKey runs ssh-keygen -t typ (ed25519, ecdsa, rsa) in a temporary directory, with
// passphrase ("" for none).
func NewSSHKey(t testing.TB, typ, passphrase string) SSHKey {
	t.Helper()
	keygen := Tool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	k := SSHKey{Private: filepath.Join(dir, "id_"+typ), AllowedSigners: filepath.Join(dir, "allowed_signers")}
	k.Public = k.Private + ".pub"
	args := []string{"-q", "-t", typ, "-N", passphrase, "-C", "kropipe-test", "-f", k.Private}
	if typ == "rsa" {
		args = append(args, "-b", "2048")
	}
	run(t, nil, keygen, args...)
	pub, err := os.ReadFile(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.AllowedSigners, []byte("* "+strings.TrimSpace(string(pub))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// OpenPGPKey is a key made by gpg in its own GNUPGHOME.
type OpenPGPKey struct {
	// Secret is the armored secret key (gpg --export-secret-keys --armor).
	Secret []byte
	// Public is the armored public key.
	Public []byte
	// Home is a GNUPGHOME holding the public key only, as a verifier has it.
	Home        string
	Fingerprint string
}

// NewOpenPGPKey runs gpg --batch --quick-gen-key for uid, algo (ed25519, rsa3072, ...)
// and usage ("sign"; "cert" makes a key that may not sign) with passphrase ("" for none)
// in a temporary GNUPGHOME and exports it; the verifying GNUPGHOME imports and trusts
// only the public key.
func NewOpenPGPKey(t testing.TB, uid, algo, usage, passphrase string) OpenPGPKey {
	t.Helper()
	gpg := Tool(t, "gpg", "gnupg")
	gen := gpgHome(t)
	env := []string{"GNUPGHOME=" + gen}
	p := []string{"--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase}
	run(t, env, gpg, append(p, "--quick-gen-key", uid, algo, usage, "never")...)
	var k OpenPGPKey
	k.Secret = run(t, env, gpg, append(p, "--armor", "--export-secret-keys", uid)...)
	k.Public = run(t, env, gpg, "--batch", "--armor", "--export", uid)
	for _, line := range strings.Split(string(run(t, env, gpg, "--batch", "--with-colons", "--list-keys", uid)), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && k.Fingerprint == "" {
			k.Fingerprint = f[9]
		}
	}
	k.Home = gpgHome(t)
	env = []string{"GNUPGHOME=" + k.Home}
	pubFile := filepath.Join(t.TempDir(), "public.asc")
	if err := os.WriteFile(pubFile, k.Public, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, env, gpg, "--batch", "--import", pubFile)
	trust := filepath.Join(t.TempDir(), "trust")
	if err := os.WriteFile(trust, []byte(k.Fingerprint+":6:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, env, gpg, "--batch", "--import-ownertrust", trust)
	return k
}

// gpgHome is a private GNUPGHOME whose agent is stopped when the test ends. Its path is
// short: the agent's socket must fit a Unix socket path.
func gpgHome(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conf, err := exec.LookPath("gpgconf"); err == nil {
			_ = exec.Command(conf, "--homedir", dir, "--kill", "all").Run()
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// VerifySSH runs git verify-commit on rev in the clone dir, trusting allowedSigners.
func VerifySSH(t testing.TB, dir, allowedSigners, rev string) (string, error) {
	t.Helper()
	return git(dir, nil, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowedSigners, "verify-commit", "-v", rev)
}

// VerifyOpenPGP runs git verify-commit on rev in the clone dir with gpg in home.
func VerifyOpenPGP(t testing.TB, dir, home, rev string) (string, error) {
	t.Helper()
	return git(dir, []string{"GNUPGHOME=" + home}, "verify-commit", "-v", rev)
}

func git(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	// The machine's own git configuration (a gpg.program, a global allowed-signers file)
	// must not decide the verdict.
	cmd.Env = append(os.Environ(), append([]string{"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func run(t testing.TB, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}
