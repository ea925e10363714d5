package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// promoterBin is the promoter binary TestMain builds once for every test.
var promoterBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kropipe-faults-*")
	if err != nil {
		log.Fatal(err)
	}
	promoterBin = filepath.Join(dir, "promoter")
	build := exec.Command("go", "build", "-o", promoterBin, "github.com/kropipe/kropipe/cmd/promoter")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("building the promoter: %v", err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is one test's Git server, registry, fault proxy and promoter configuration.
type world struct {
	t       *testing.T
	git     *gitserver.Server
	bare    string
	regHost string // the registry itself, for pushing and checking
	proxy   *faultProxy
	config  string
	dataDir string
	stages  []stageDef
}

// stageDef is one stage of the suite: its instance file holds image tag "1.0.0" at the start.
type stageDef struct {
	name, service, env, upstream string
}

func (s stageDef) file() string { return s.env + "/" + s.service + "/instance.yaml" }

const instanceTemplate = `apiVersion: kro.run/v1alpha1
kind: WebApp
metadata:
  name: %s
spec:
  values:
    deployment:
      image: registry.example.com/team/%s
      # bumped by the promoter — do not edit by hand
      tag: "1.0.0"
      replicas: 2
    service:
      port: 80
`

// chains returns services × envs stages, each env's stage taking the previous env's.
func chains(services int, envs ...string) []stageDef {
	var out []stageDef
	for i := range services {
		svc := fmt.Sprintf("svc%02d", i)
		for j, env := range envs {
			s := stageDef{name: env + "-" + svc, service: svc, env: env}
			if j > 0 {
				s.upstream = envs[j-1] + "-" + svc
			}
			out = append(out, s)
		}
	}
	return out
}

// newWorld seeds a Git repository with one instance file per stage, starts the
// registry behind the proxy with tag 1.0.0 of every service, and writes promoter.yaml.
// extra is appended to every stage's YAML (e.g. "    strategy: lexical\n").
func newWorld(t *testing.T, stages []stageDef, extra string, gitOpts ...gitserver.Option) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t, stages: stages}
	w.git = gitserver.StartTB(t, gitOpts...)
	seed := t.TempDir()
	for _, s := range stages {
		p := filepath.Join(seed, filepath.FromSlash(s.file()))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf(instanceTemplate, s.service, s.service)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if w.bare, err = w.git.NewBareRepo(ctx, "gitops.git", seed); err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	w.regHost = strings.TrimPrefix(reg.URL, "http://")
	w.proxy = startProxy(t, reg.URL)
	for _, svc := range w.services() {
		w.push(svc, "1.0.0")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "git:\n  url: %s\n  author: {name: kropipe, email: kropipe@example.com}\nregistries:\n  - {host: %q, insecure: true, rateLimit: -1}\nstages:\n", w.git.URL("gitops.git"), w.proxy.host)
	for _, s := range stages {
		fmt.Fprintf(&b, "  - name: %s\n    image: %s/team/%s\n    file: %s\n", s.name, w.proxy.host, s.service, s.file())
		if s.upstream != "" {
			fmt.Fprintf(&b, "    upstream: %s\n", s.upstream)
		}
		b.WriteString(extra)
	}
	dir := t.TempDir()
	w.config = filepath.Join(dir, "promoter.yaml")
	w.dataDir = filepath.Join(dir, "data")
	if err := os.WriteFile(w.config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) services() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range w.stages {
		if !seen[s.service] {
			seen[s.service] = true
			out = append(out, s.service)
		}
	}
	return out
}

// push writes a random image as team/svc:tag to the registry itself (not through the
// proxy) and returns its digest.
func (w *world) push(svc, tag string) string {
	w.t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	ref, err := name.NewTag(w.regHost+"/team/"+svc+":"+tag, name.Insecure)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		w.t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		w.t.Fatal(err)
	}
	return d.String()
}

// promoter is one run of the binary.
type promoter struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	stdout *lockedBuffer
	done   chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the promoter with args after the world's --config and --data-dir, with
// env added to its environment.
func (w *world) start(env []string, args ...string) *promoter {
	w.t.Helper()
	all := append([]string{args[0], "--config", w.config, "--data-dir", w.dataDir}, args[1:]...)
	p := &promoter{cmd: exec.Command(promoterBin, all...), stderr: &lockedBuffer{}, stdout: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(gitserver.Env(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	w.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns the process's exit error, failing the test after timeout.
func (p *promoter) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("promoter %v still running after %s\nstderr:\n%s", p.cmd.Args[1:], timeout, p.stderr)
		return nil
	}
}

// killed reports whether the run ended by SIGKILL.
func (p *promoter) killed() bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// once runs `run --once` to its end and returns its error and output.
func (w *world) once(env []string, args ...string) (*promoter, error) {
	w.t.Helper()
	p := w.start(env, append([]string{"run", "--once", "--log-level", "debug"}, args...)...)
	return p, p.wait(w.t, 2*time.Minute)
}

// converge runs `run --once` until every stage holds want[stage] (at most rounds times).
func (w *world) converge(want map[string]string, rounds int) {
	w.t.Helper()
	var last *promoter
	for range rounds {
		p, err := w.once(nil)
		last = p
		got := w.values()
		if equalMaps(got, want) {
			return
		}
		if err != nil && !strings.Contains(err.Error(), "exit status 1") {
			w.t.Fatalf("run --once: %v\n%s", err, p.stderr)
		}
	}
	w.t.Fatalf("not converged: values %v, want %v\nlast run:\n%s\n%s", w.values(), want, last.stdout, last.stderr)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (w *world) gitOut(args ...string) string {
	w.t.Helper()
	out, err := gitserver.GitOutput(context.Background(), w.bare, args...)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

func (w *world) head() string { return strings.TrimSpace(w.gitOut("rev-parse", "main")) }

// values reads every stage's tag from the branch head.
func (w *world) values() map[string]string {
	w.t.Helper()
	out := map[string]string{}
	for _, s := range w.stages {
		f := w.gitOut("show", "main:"+s.file())
		for _, line := range strings.Split(f, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "tag: "); ok {
				out[s.name] = strings.Trim(v, `"`)
			}
		}
	}
	return out
}

// promotion is one promoter commit read back from Git.
type promotion struct {
	commit, subject, stage, value, previous, image string
}

// promotions reads the promoter's commits on main, oldest first.
func (w *world) promotions() []promotion {
	w.t.Helper()
	raw := w.gitOut("log", "--reverse", "--format=%H%x1f%B%x1e", "main")
	var out []promotion
	for _, rec := range strings.Split(raw, "\x1e") {
		hash, body, ok := strings.Cut(strings.TrimSpace(rec), "\x1f")
		if !ok {
			continue
		}
		p := promotion{commit: hash, subject: strings.SplitN(body, "\n", 2)[0]}
		for _, line := range strings.Split(body, "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "Kropipe-Stage":
				p.stage = v
			case "Kropipe-Value":
				p.value = v
			case "Kropipe-Previous":
				p.previous = v
			case "Kropipe-Image":
				p.image = v
			}
		}
		if p.stage != "" {
			out = append(out, p)
		}
	}
	return out
}

// checkHistory asserts that no stage got the same value twice, that every stage's
// promotions chain (each one's previous is the value before it) and that every head
// in heads is still reachable from main. It returns the promotion count.
func (w *world) checkHistory(heads []string) int {
	w.t.Helper()
	ps := w.promotions()
	seen := map[string]bool{}
	last := map[string]string{}
	for _, s := range w.stages {
		last[s.name] = "1.0.0"
	}
	for _, p := range ps {
		k := p.stage + "\x00" + p.value
		if seen[k] {
			w.t.Errorf("duplicate promotion of %s to %s in %s (%s)", p.stage, p.value, p.commit[:7], p.subject)
		}
		seen[k] = true
		if p.previous != last[p.stage] {
			w.t.Errorf("promotion %s of %s says it came from %s, but Git held %s: a promotion was lost or doubled", p.commit[:7], p.stage, p.previous, last[p.stage])
		}
		last[p.stage] = p.value
	}
	head := w.head()
	for _, h := range heads {
		if h == "" {
			continue
		}
		if err := gitserver.Git(context.Background(), w.bare, "merge-base", "--is-ancestor", h, head); err != nil {
			w.t.Errorf("commit %s, once the branch head, is not reachable from main %s", h[:7], head[:7])
		}
	}
	return len(ps)
}

// checkStateReadable runs `promoter status` on the world's data directory: the state
// a killed promoter left must load.
func (w *world) checkStateReadable() {
	w.t.Helper()
	p := w.start(nil, "status", "--log-level", "error")
	if err := p.wait(w.t, time.Minute); err != nil {
		w.t.Fatalf("status after the kills: %v\n%s", err, p.stderr)
	}
}
