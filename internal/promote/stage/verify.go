package stage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// Verifier decides whether freight a stage runs is good. Local mode runs a
// command; the Argo CD mode waits for the Application to be Synced and Healthy
// at the commit.
type Verifier interface {
	// Verify is called once the freight's commit is pushed (commit is its hash, or
	// the commit the stage's file was read at). It returns nil when the freight is
	// verified, ErrPending when it cannot tell yet (it is asked again next pass),
	// and any other error when verification failed.
	Verify(ctx context.Context, spec Spec, f freight.Freight, commit string) error
}

// RunReporter is implemented by a Verifier whose verification runs outside the engine (Jobs
// and AnalysisRuns in the cluster). After each Verify the engine keeps the stage's last run
// in its State, so a failure's reason and log and an inconclusive hold survive restarts and
// leader changes; the Verifier reads them back through State.SettledRun instead of trusting
// the cluster objects, which cleanup or a human may delete.
type RunReporter interface {
	LastRun(stage string) (VerificationRun, bool)
}

// ErrPending means verification has not finished; the engine asks again next pass.
var ErrPending = errors.New("verification pending")

// CommandVerifier is the local-mode verifier: freight is verified once pushed,
// and when the stage has a verify command, once that command exits 0.
type CommandVerifier struct {
	// Env is added to the command's environment after the process's own.
	Env []string
}

// maxVerifyOutput bounds how much of a failed command's output goes into the reason.
const maxVerifyOutput = 2000

// Verify runs spec.Verify.Command (if any) with KROPIPE_STAGE, KROPIPE_IMAGE,
// KROPIPE_TAG, KROPIPE_DIGEST and KROPIPE_COMMIT set, bounded by its timeout.
func (v CommandVerifier) Verify(ctx context.Context, spec Spec, f freight.Freight, commit string) error {
	if spec.Verify == nil || len(spec.Verify.Command) == 0 {
		return nil
	}
	timeout := spec.Verify.Timeout
	if timeout <= 0 {
		timeout = DefaultVerifyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, spec.Verify.Command[0], spec.Verify.Command[1:]...)
	cmd.Env = append(append(os.Environ(), v.Env...),
		"KROPIPE_STAGE="+spec.Name,
		"KROPIPE_IMAGE="+f.Image,
		"KROPIPE_TAG="+f.Tag,
		"KROPIPE_DIGEST="+f.Digest,
		"KROPIPE_COMMIT="+commit,
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Without WaitDelay a child that keeps the pipes open would outlive the timeout.
	cmd.WaitDelay = 2 * 1e9
	err := cmd.Run()
	if err == nil {
		return nil
	}
	text := strings.TrimSpace(out.String())
	if len(text) > maxVerifyOutput {
		text = "…" + text[len(text)-maxVerifyOutput:]
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	if text != "" {
		return fmt.Errorf("verify command %s failed: %v: %s", spec.Verify.Command[0], err, text)
	}
	return fmt.Errorf("verify command %s failed: %w", spec.Verify.Command[0], err)
}
