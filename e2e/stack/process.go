package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a component gets to exit after SIGTERM. kube-apiserver and
// argocd-cmp-server are known to ignore SIGTERM here, so after it they get SIGKILL.
const stopGrace = 5 * time.Second

// Process is one running component: a child process in its own process group whose combined
// output goes to LogPath, kept after Stop for the failure report.
type Process struct {
	Name    string
	LogPath string

	cmd    *exec.Cmd
	logF   *os.File
	done   chan struct{}
	mu     sync.Mutex
	waitEr error
}

// Pdeathsig fires when the OS thread that forked the child exits, not the process, and Go
// may retire threads: children were killed mid-run. Every child is therefore forked from one
// goroutine locked to its thread for the life of the test binary.
var forkRequests = make(chan forkRequest)

type forkRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		for r := range forkRequests {
			r.done <- r.cmd.Start()
		}
	}()
}

func startOnForkThread(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	forkRequests <- forkRequest{cmd: cmd, done: done}
	return <-done
}

// startProcess starts bin with args and env (added to a trimmed copy of this process's
// environment) in dir, logging to <logDir>/<name>.log.
func startProcess(name, logDir, dir, bin string, args, env []string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logF, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	fmt.Fprintf(logF, "### %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logF
	cmd.Stderr = logF
	// Own process group: Stop signals the group, so children (git, cmp-sidecar) die too.
	// Pdeathsig: if the test binary itself is killed, the stack does not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startOnForkThread(cmd); err != nil {
		logF.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, logF: logF, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitEr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.waitEr
	default:
		return false, nil
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after the grace period. It is safe to call
// more than once.
func (p *Process) Stop() {
	if exited, _ := p.Exited(); !exited {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Children that left the group's leader behind still belong to the group.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.logF.Close()
}

// Kill ends the process group with SIGKILL and waits for it: a crash, not a shutdown.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string { return tailFile(p.LogPath, n) }

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	st, _ := f.Stat()
	if st != nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitReady polls probe until it succeeds, the process exits, or timeout passes. Its error names
// the component and carries the tail of its log, which is what a failing start needs to show.
func (p *Process) waitReady(ctx context.Context, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("%s exited during start (%v); last lines of %s:\n%s", p.Name, werr, p.LogPath, p.Tail(40))
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last probe: %v); last lines of %s:\n%s", p.Name, timeout, last, p.LogPath, p.Tail(40))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// errNotYet is what probes return while a file or socket they wait for is missing.
var errNotYet = errors.New("not yet")

func fileExists(path string) func(context.Context) error {
	return func(context.Context) error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%w: %s missing", errNotYet, path)
		}
		return nil
	}
}
