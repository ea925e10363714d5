package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/signing"
	"github.com/kropipe/kropipe/internal/promote/signing/signingtest"
)

// In the cluster the promotion commit is signed with the key the controller was started
// with and authored by the identity it was given, so the forge can match the two.
func TestController_SignsItsCommitsWithTheGivenKeyAndIdentity(t *testing.T) {
	k := signingtest.NewSSHKey(t, "ed25519", "")
	s, err := signing.LoadFile(k.Private, "")
	if err != nil {
		t.Fatal(err)
	}
	e := newClusterEnv(t)
	cfg := configFor("")
	cfg.Signer, cfg.GitAuthorName, cfg.GitAuthorEmail = s, "Release Bot", "release-bot@example.com"
	_, logs, commit := e.startPromoted(t, cfg)
	if out, err := signingtest.VerifySSH(t, e.bare, k.AllowedSigners, commit); err != nil {
		t.Errorf("git verify-commit %s: %v\n%s", commit, err, out)
	}
	who, err := gitserver.GitOutput(context.Background(), e.bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", commit)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(who) != "Release Bot <release-bot@example.com>|Release Bot <release-bot@example.com>" {
		t.Errorf("author|committer %q", who)
	}
	if !strings.Contains(logs.String(), `"msg":"signing commits","format":"ssh","key":"`+s.KeyID()+`"`) {
		t.Errorf("no log line naming the signing key %s:\n%s", s.KeyID(), logs.String())
	}
}
