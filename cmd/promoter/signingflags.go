package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/kropipe/kropipe/internal/promote/signing"
)

// signingFlags name the key the controller signs its commits with, and who commits. In
// local mode promoter.yaml's git.signing and git.author say the same.
type signingFlags struct {
	keyFile, passphraseFile string
	authorName, authorEmail string
}

func (s *signingFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&s.keyFile, "signing-key-file", "", "private key (SSH, or OpenPGP from gpg --export-secret-keys --armor) that signs every commit the promoter makes, so branches requiring signed commits take them; mount it from a Secret (manifests/promoter: kropipe-promoter-signing). Default: commits are not signed")
	fl.StringVar(&s.passphraseFile, "signing-key-passphrase-file", "", "file holding the passphrase of --signing-key-file (also KROPIPE_SIGNING_KEY_PASSPHRASE)")
	fl.StringVar(&s.authorName, "git-author-name", "kropipe", "author and committer name of the promoter's commits")
	fl.StringVar(&s.authorEmail, "git-author-email", "kropipe@localhost", "author and committer email of the promoter's commits; with --signing-key-file, an email of the key's owner on the forge, else it does not show the commits Verified")
}

// load reads the key, so a key the promoter cannot sign with fails the start, before
// anything is written; nil without --signing-key-file.
func (s *signingFlags) load(g *globals) (signing.Signer, error) {
	if s.keyFile == "" {
		if s.passphraseFile != "" {
			return nil, fmt.Errorf("--signing-key-passphrase-file %s without --signing-key-file: give the key it decrypts", s.passphraseFile)
		}
		return nil, nil
	}
	if pass := g.getenv("KROPIPE_SIGNING_KEY_PASSPHRASE"); pass != "" && s.passphraseFile == "" {
		key, err := os.ReadFile(s.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--signing-key-file: %w", err)
		}
		return signing.Load(key, []byte(pass), s.keyFile)
	}
	return signing.LoadFile(s.keyFile, s.passphraseFile)
}
