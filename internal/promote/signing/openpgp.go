package signing

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// openpgpSigner signs as `git commit -S` with gpg does: a detached, armored OpenPGP
// signature by the entity's signing key.
type openpgpSigner struct {
	entity *openpgp.Entity
	id     string
}

// loadOpenPGP reads a secret key ring (armored or binary) and keeps its first entity
// that holds a private key able to sign, decrypted with passphrase when protected.
// A ring it cannot read at all is ErrNotAKey.
func loadOpenPGP(key []byte, armored bool, passphrase []byte) (Signer, error) {
	var ring openpgp.EntityList
	var err error
	if armored {
		ring, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(key))
	} else {
		ring, err = openpgp.ReadKeyRing(bytes.NewReader(key))
	}
	if err != nil || len(ring) == 0 {
		if !armored {
			return nil, ErrNotAKey
		}
		return nil, fmt.Errorf("an OpenPGP key block that does not read (%v), %w; %s", err, ErrNotAKey, giveKey)
	}
	now := time.Now()
	for _, e := range ring {
		k, ok := e.SigningKey(now)
		if !ok || k.PrivateKey == nil {
			continue
		}
		if k.PrivateKey.Dummy() {
			continue // gpg --export-secret-subkeys: the primary's secret stays behind
		}
		if k.PrivateKey.Encrypted {
			if len(passphrase) == 0 {
				return nil, fmt.Errorf("an OpenPGP key %w: set %s", ErrPassphraseMissing, passphraseWhere)
			}
			if err := k.PrivateKey.Decrypt(passphrase); err != nil {
				return nil, fmt.Errorf("an OpenPGP key, but %w; check %s", ErrPassphraseWrong, passphraseWhere)
			}
		}
		return &openpgpSigner{entity: e, id: strings.ToUpper(fmt.Sprintf("%x", k.PublicKey.Fingerprint))}, nil
	}
	if !hasPrivate(ring) {
		return nil, fmt.Errorf("%w (OpenPGP), not the private key; %s", ErrPublicKey, giveKey)
	}
	return nil, fmt.Errorf("an OpenPGP key ring with %w (expired, revoked, encryption-only, or its secret left out by --export-secret-subkeys); export a key with a signing (sub)key: gpg --export-secret-keys --armor <key id>", ErrNoSigningKey)
}

func hasPrivate(ring openpgp.EntityList) bool {
	for _, e := range ring {
		if e.PrivateKey != nil {
			return true
		}
		for _, s := range e.Subkeys {
			if s.PrivateKey != nil {
				return true
			}
		}
	}
	return false
}

func (s *openpgpSigner) Sign(payload []byte) ([]byte, error) {
	var b bytes.Buffer
	// The signing key is chosen by the same rule Load checked, at signing time: a key
	// that expired since start fails here, named.
	if err := openpgp.ArmoredDetachSign(&b, s.entity, bytes.NewReader(payload), &packet.Config{}); err != nil {
		return nil, fmt.Errorf("signing with OpenPGP key %s: %w", s.id, err)
	}
	return b.Bytes(), nil
}

func (s *openpgpSigner) Format() string { return FormatOpenPGP }
func (s *openpgpSigner) KeyID() string  { return s.id }
