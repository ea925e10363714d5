// Package signing signs the commits kropipe writes, with an SSH key (sshsig, as
// `git -c gpg.format=ssh` does) or an OpenPGP key (as gpg does), so branches that
// require signed commits accept them and `git verify-commit` passes.
package signing

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Signer signs the payload of a Git object (a commit encoded without its gpgsig header)
// and returns the armored signature Git stores in that header.
type Signer interface {
	Sign(payload []byte) ([]byte, error)
	// Format is "ssh" or "openpgp", as git's gpg.format names them.
	Format() string
	// KeyID names the key in logs and status, never a secret: the SHA256 fingerprint of
	// an SSH key, the fingerprint of an OpenPGP signing key.
	KeyID() string
}

// The formats Signer.Format returns.
const (
	FormatSSH     = "ssh"
	FormatOpenPGP = "openpgp"
)

// The reasons Load refuses a key; its errors wrap one of them, with the key's source and
// what to do.
var (
	ErrNotAKey           = errors.New("not an SSH or OpenPGP private key")
	ErrPublicKey         = errors.New("a public key")
	ErrPassphraseMissing = errors.New("protected by a passphrase")
	ErrPassphraseWrong   = errors.New("the passphrase does not decrypt it")
	ErrNoSigningKey      = errors.New("no key that may sign")
)

// giveKey says what Load wants, for the errors of a key it cannot use.
const giveKey = "give the private key kropipe signs with: an OpenSSH or PEM private key (ssh-keygen -t ed25519 -f key) or an OpenPGP secret key (gpg --export-secret-keys --armor <key id>)"

// passphraseWhere is where a passphrase is given, for the errors about it.
const passphraseWhere = "--signing-key-passphrase-file (promoter.yaml: git.signing.passphraseFile)"

// Load reads a private key and returns the Signer for its format: an OpenSSH or PEM
// private key signs as ssh, an armored or binary OpenPGP secret key as openpgp. The
// passphrase decrypts a protected key (nil for none). source names the key in errors
// (a file, a Secret); neither the key nor the passphrase ever appears in one.
func Load(key, passphrase []byte, source string) (Signer, error) {
	s, err := load(key, passphrase)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", source, err)
	}
	return s, nil
}

func load(key, passphrase []byte) (Signer, error) {
	trimmed := bytes.TrimSpace(key)
	switch {
	case len(trimmed) == 0:
		return nil, fmt.Errorf("empty, %w; %s", ErrNotAKey, giveKey)
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")):
		return nil, fmt.Errorf("%w (OpenPGP), not the private key; %s", ErrPublicKey, giveKey)
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")):
		return loadOpenPGP(trimmed, true, passphrase)
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) && bytes.Contains(firstLine(trimmed), []byte("PRIVATE KEY-----")):
		return loadSSH(trimmed, passphrase)
	case isSSHPublicKey(trimmed):
		return nil, fmt.Errorf("%w (SSH), not the private key; %s", ErrPublicKey, giveKey)
	}
	// Binary OpenPGP (gpg --export-secret-keys without --armor) has no header to tell.
	if s, err := loadOpenPGP(key, false, passphrase); err == nil || !errors.Is(err, ErrNotAKey) {
		return s, err
	}
	return nil, fmt.Errorf("%w; %s", ErrNotAKey, giveKey)
}

func firstLine(b []byte) []byte {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return line
}

// isSSHPublicKey tells an authorized_keys line (key.pub) from a private key.
func isSSHPublicKey(b []byte) bool {
	for _, p := range []string{"ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"} {
		if strings.HasPrefix(string(b), p) {
			return true
		}
	}
	return false
}

// LoadFile reads the key at path, and its passphrase from passphrasePath ("" for none;
// trailing newlines are not part of it), and calls Load naming the file.
func LoadFile(path, passphrasePath string) (Signer, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	var pass []byte
	if passphrasePath != "" {
		if pass, err = os.ReadFile(passphrasePath); err != nil {
			return nil, fmt.Errorf("signing key passphrase: %w", err)
		}
		pass = bytes.TrimRight(pass, "\r\n")
	}
	return Load(key, pass, path)
}
