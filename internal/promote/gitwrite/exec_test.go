package gitwrite

import (
	"context"
	"os/exec"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

func execGit(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(gitserver.Env(), env...)
	return cmd
}
