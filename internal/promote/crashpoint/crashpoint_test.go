package crashpoint

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestHit_KillsAtTheNamedStepOnly runs this test binary as a child that hits
// before-push twice and after-commit once; KROPIPE_CRASH_AT picks where it dies.
func TestHit_KillsAtTheNamedStepOnly(t *testing.T) {
	if os.Getenv("CRASHPOINT_CHILD") == "1" {
		Hit(AfterCommit)
		os.Stdout.WriteString("1\n")
		Hit(BeforePush)
		os.Stdout.WriteString("2\n")
		Hit(BeforePush)
		os.Stdout.WriteString("3\n")
		return
	}
	for _, tt := range []struct {
		at, out string
		killed  bool
	}{
		{"", "1\n2\n3\n", false},
		{AfterCommit, "", true},
		{BeforePush, "1\n", true},
		{BeforePush + ":2", "1\n2\n", true},
		{AfterPush, "1\n2\n3\n", false},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHit_KillsAtTheNamedStepOnly$")
		cmd.Env = append(os.Environ(), "CRASHPOINT_CHILD=1", Env+"="+tt.at)
		out, err := cmd.Output()
		got := strings.TrimSuffix(string(out), "PASS\n")
		killed := false
		if ee, ok := err.(*exec.ExitError); ok {
			ws := ee.Sys().(syscall.WaitStatus)
			killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		if killed != tt.killed || got != tt.out {
			t.Errorf("%s=%q: output %q killed %v (%v), want %q killed %v", Env, tt.at, got, killed, err, tt.out, tt.killed)
		}
	}
}
