package signing

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// sshNamespace is the namespace git signs commits and tags in (ssh-keygen -Y sign -n git);
// git verify-commit refuses a signature made in another.
const sshNamespace = "git"

// sshSigner signs as `git -c gpg.format=ssh commit -S` does: sshsig over SHA-512 in the
// "git" namespace, armored as -----BEGIN SSH SIGNATURE-----.
type sshSigner struct {
	key ssh.Signer
	id  string
}

func loadSSH(key, passphrase []byte) (Signer, error) {
	raw, err := ssh.ParseRawPrivateKey(key)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("an SSH key %w: set %s", ErrPassphraseMissing, passphraseWhere)
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(key, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("an SSH key, but %w; check %s", ErrPassphraseWrong, passphraseWhere)
		}
	}
	if err != nil {
		// The parser's messages name the key type or format it did not understand, never
		// the key's bytes.
		return nil, fmt.Errorf("%w (%v); %s", ErrNotAKey, err, giveKey)
	}
	s, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w (%v); %s", ErrNotAKey, err, giveKey)
	}
	return &sshSigner{key: s, id: ssh.FingerprintSHA256(s.PublicKey())}, nil
}

func (s *sshSigner) Sign(payload []byte) ([]byte, error) {
	sig, err := sshsig.Sign(bytes.NewReader(payload), s.key, sshsig.HashSHA512, sshNamespace)
	if err != nil {
		return nil, fmt.Errorf("signing with SSH key %s: %w", s.id, err)
	}
	return sshsig.Armor(sig), nil
}

func (s *sshSigner) Format() string { return FormatSSH }
func (s *sshSigner) KeyID() string  { return s.id }
