package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

func runAs(t *testing.T, user string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCommand(&out, &errb, func(k string) string {
		if k == "USER" {
			return user
		}
		return ""
	})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func lastTrailer(t *testing.T, bare string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "log", "-1", "--format=%(trailers:key=Kropipe-Requested-By,valueonly)", "main")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// In local mode the command acts for $USER@host: its commits say so, and history shows it.
func TestCommands_LocalModeRecordsUserAtHost(t *testing.T) {
	e := newEnv(t, devStage)
	flags := []string{"--config", e.config, "--data-dir", e.dataDir, "--log-level", "error"}
	if out, err := runAs(t, "carol", append([]string{"run", "--once"}, flags...)...); err != nil {
		t.Fatalf("run --once: %v\n%s", err, out)
	}
	if got := lastTrailer(t, e.bare); got != "" {
		t.Fatalf("an automatic promotion names a requester: %q", got)
	}
	if out, err := runAs(t, "carol", append([]string{"rollback", "develop-frontend"}, flags...)...); err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	host, _ := os.Hostname()
	if got := lastTrailer(t, e.bare); got != "carol@"+host {
		t.Fatalf("the rollback's commit names %q, want carol@%s", got, host)
	}
	out, err := runAs(t, "carol", append([]string{"history", "develop-frontend"}, flags...)...)
	lines := strings.Split(out, "\n")
	if err != nil || !strings.Contains(lines[0], "REQUESTED-BY") || !strings.Contains(lines[1], "rollback") || !strings.Contains(lines[1], "carol@"+host) || !strings.Contains(lines[2], "  -  ") {
		t.Fatalf("history: %v\n%s", err, out)
	}
}

// Against a running promoter whose token file names its tokens, the command sends the token
// --token-name picks, and the commit records that name, not the user's claim.
func TestCommands_RemoteActionsRecordTheTokensName(t *testing.T) {
	e := newEnv(t, devStage)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("alice: a1ice-s3cret\nci-bot: b0t-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := serveUntilPromoted(t, e, "--token-file", tokens, "--interval", "1h", "--log-level", "error")
	addr := s.addr
	_, err := runAs(t, "carol", "rollback", "develop-frontend", "--addr", addr, "--token-file", tokens)
	if err == nil || !strings.Contains(err.Error(), "--token-name") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("two tokens without --token-name: %v", err)
	}
	if got, err := runAs(t, "carol", "rollback", "develop-frontend", "--addr", addr, "--token-file", tokens, "--token-name", "ci-bot"); err != nil {
		t.Fatalf("rollback --token-name ci-bot: %v\n%s", err, got)
	}
	if got := lastTrailer(t, e.bare); got != "ci-bot" {
		t.Fatalf("the rollback's commit names %q, want ci-bot", got)
	}
	got, err := runAs(t, "carol", "history", "develop-frontend", "--addr", addr)
	if err != nil || !strings.Contains(strings.Split(got, "\n")[1], "ci-bot") {
		t.Fatalf("history --addr: %v\n%s", err, got)
	}
	s.stop(t)
	if strings.Contains(s.errb.String(), "s3cret") {
		t.Fatalf("the promoter's log shows a token:\n%s", s.errb.String())
	}
}
