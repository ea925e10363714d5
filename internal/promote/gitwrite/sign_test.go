package gitwrite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/kropipe/kropipe/internal/promote/signing"
	"github.com/kropipe/kropipe/internal/promote/signing/signingtest"
)

// Every commit kropipe writes — a promotion, a rollback, a release group's set — carries a
// signature that real `git verify-commit` accepts with the key's public half, and refuses
// with another key's.
func TestSigning_EveryCommitInBothWriteModesPassesGitVerifyCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		// key makes a key, loads it as kropipe does, and returns how the key's owner
		// and a stranger verify.
		key func(t *testing.T) (s signing.Signer, owner, stranger verifyFunc)
	}{
		{"ssh ed25519", sshKey("ed25519", "")},
		{"ssh ed25519 with passphrase", sshKey("ed25519", "correct horse")},
		{"ssh ecdsa", sshKey("ecdsa", "")},
		{"openpgp ed25519", pgpKey("")},
		{"openpgp ed25519 with passphrase", pgpKey("correct horse")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, owner, stranger := tc.key(t)
			f := newFixture(t)
			r := open(t, f.url, WithSigner(s))
			before := f.head(t)
			ctx := context.Background()
			if _, err := r.Apply(ctx, "main", promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2")); err != nil {
				t.Fatal(err)
			}
			rollback := promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.1")
			rollback.Kind = Rollback
			if _, err := r.Apply(ctx, "main", rollback); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Apply(ctx, "main",
				member("develop-frontend", "frontend", "1.2.2", "1.2.1"),
				member("develop-backend", "backend", "2.1.0", "1.2.1"),
			); err != nil {
				t.Fatal(err)
			}
			// Pull-request mode: the commit proposed on kropipe's branch.
			p, err := r.Propose(ctx, "main", "kropipe/prod-frontend", "", promote("prod-frontend", "production/frontend/instance.yaml", "1.2.2"))
			if err != nil {
				t.Fatal(err)
			}
			clone := filepath.Join(t.TempDir(), "clone")
			if out, err := execGit(ctx, nil, "clone", "--quiet", "--no-single-branch", f.url, clone).CombinedOutput(); err != nil {
				t.Fatalf("git clone: %v\n%s", err, out)
			}
			revs := strings.Fields(f.git(t, "rev-list", before+"..main"))
			if len(revs) != 3 {
				t.Fatalf("%d commits, want the promotion, the rollback and the set", len(revs))
			}
			revs = append(revs, p.Head)
			for _, rev := range revs {
				subject := f.git(t, "log", "-1", "--format=%s", rev)
				if out, err := owner(t, clone, rev); err != nil {
					t.Errorf("%s %q: git verify-commit with the key's public half: %v\n%s", rev, subject, err, out)
				}
				if out, err := stranger(t, clone, rev); err == nil {
					t.Errorf("%s %q: git verify-commit passed with another key:\n%s", rev, subject, out)
				}
			}
			// The signature is git's own header; the message and trailers are untouched.
			if got := f.git(t, "log", "-1", "--format=%(trailers:key=Kropipe-Group,valueonly)", "main"); got != "develop/shop" {
				t.Errorf("trailers of the signed set commit: %q", got)
			}
		})
	}
}

// verifyFunc runs git verify-commit on rev in a clone, trusting one key.
type verifyFunc func(t *testing.T, clone, rev string) (string, error)

func sshKey(typ, passphrase string) func(t *testing.T) (signing.Signer, verifyFunc, verifyFunc) {
	return func(t *testing.T) (signing.Signer, verifyFunc, verifyFunc) {
		k := signingtest.NewSSHKey(t, typ, passphrase)
		other := signingtest.NewSSHKey(t, typ, "")
		s, err := signing.LoadFile(k.Private, passphraseFile(t, passphrase))
		if err != nil {
			t.Fatal(err)
		}
		return s,
			func(t *testing.T, clone, rev string) (string, error) {
				return signingtest.VerifySSH(t, clone, k.AllowedSigners, rev)
			},
			func(t *testing.T, clone, rev string) (string, error) {
				return signingtest.VerifySSH(t, clone, other.AllowedSigners, rev)
			}
	}
}

func pgpKey(passphrase string) func(t *testing.T) (signing.Signer, verifyFunc, verifyFunc) {
	return func(t *testing.T) (signing.Signer, verifyFunc, verifyFunc) {
		k := signingtest.NewOpenPGPKey(t, "kropipe <kropipe@example.com>", "ed25519", "sign", passphrase)
		other := signingtest.NewOpenPGPKey(t, "someone <someone@example.com>", "ed25519", "sign", "")
		s, err := signing.Load(k.Secret, []byte(passphrase), "test key")
		if err != nil {
			t.Fatal(err)
		}
		return s,
			func(t *testing.T, clone, rev string) (string, error) {
				return signingtest.VerifyOpenPGP(t, clone, k.Home, rev)
			},
			func(t *testing.T, clone, rev string) (string, error) {
				return signingtest.VerifyOpenPGP(t, clone, other.Home, rev)
			}
	}
}

func passphraseFile(t *testing.T, passphrase string) string {
	if passphrase == "" {
		return ""
	}
	p := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(p, []byte(passphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// failingSigner is a signer whose key has become unusable (an OpenPGP key that expired
// since start).
type failingSigner struct{}

var errKeyExpired = errors.New("openpgp: key expired")

func (failingSigner) Sign([]byte) ([]byte, error) { return nil, errKeyExpired }
func (failingSigner) Format() string              { return "openpgp" }
func (failingSigner) KeyID() string               { return "0123" }

// A commit that cannot be signed is never pushed unsigned: Apply fails naming the commit,
// and the branch on the server does not move — for a stage's commit and a set's alike.
func TestApply_SignerFailingPushesNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changes []Change
		subject string
	}{
		{"promotion", []Change{promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")}, "Promote image from 1.2.1 to 1.2.2"},
		{"set", []Change{member("develop-frontend", "frontend", "1.2.2", "1.2.1"), member("develop-backend", "backend", "2.1.0", "1.2.1")}, "Promote shop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := open(t, f.url, WithSigner(failingSigner{}))
			before, pushes := f.head(t), f.srv.Pushes("gitops.git")
			_, err := r.Apply(context.Background(), "main", tc.changes...)
			if !errors.Is(err, errKeyExpired) || !strings.Contains(err.Error(), "signing the commit \""+tc.subject) {
				t.Fatalf("error %v, want the signer's, naming the commit %q", err, tc.subject)
			}
			if f.head(t) != before || f.srv.Pushes("gitops.git") != pushes {
				t.Errorf("the branch moved or a push was made: head %s (was %s), pushes %d (were %d)", f.head(t), before, f.srv.Pushes("gitops.git"), pushes)
			}
		})
	}
}

// What a commit costs to write unsigned and signed (in memory: the push is the same).
func BenchmarkWriteCommit(b *testing.B) {
	for _, tc := range []struct {
		name string
		key  func(b *testing.B) signing.Signer
	}{
		{"unsigned", func(*testing.B) signing.Signer { return nil }},
		{"ssh-ed25519", func(b *testing.B) signing.Signer {
			s, err := signing.LoadFile(signingtest.NewSSHKey(b, "ed25519", "").Private, "")
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"openpgp-ed25519", func(b *testing.B) signing.Signer {
			s, err := signing.Load(signingtest.NewOpenPGPKey(b, "kropipe <kropipe@example.com>", "ed25519", "sign", "").Secret, nil, "bench")
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.key(b)
			st := memory.NewStorage()
			msg := "Promote image from 1.2.1 to 1.2.2\n\nKropipe-Stage: develop-frontend\n"
			who := signature("kropipe", "kropipe@example.com", time.Unix(1700000000, 0))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := writeCommit(st, plumbing.ZeroHash, plumbing.ZeroHash, msg, who, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
