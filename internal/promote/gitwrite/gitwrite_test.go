package gitwrite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

const instance = `apiVersion: kro.run/v1alpha1
kind: WebApp
metadata:
  name: %s   # the app
spec:
  values:
    deployment:
      image: registry.example.com/team/%s
      # bumped by the promoter — do not edit by hand
      tag: "1.2.1"
      replicas: 2
    service:
      port: 80
`

// seed writes the GitOps layout of the scenario, plus traps for the bad-input tests.
func seed(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	write := func(p, content string) {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, env := range []string{"develop", "staging", "production"} {
		for _, app := range []string{"frontend", "backend"} {
			write(env+"/"+app+"/instance.yaml", fmt.Sprintf(instance, app, app))
		}
	}
	write("broken/instance.yaml", "spec: [values\n  tag: x: y\n")
	write("README.md", "GitOps repository\n")
	if err := os.Symlink("../../etc", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../develop/frontend/instance.yaml", filepath.Join(dir, "broken", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	return dir
}

type fixture struct {
	srv  *gitserver.Server
	url  string
	bare string
}

func newFixture(t testing.TB, opts ...gitserver.Option) *fixture {
	t.Helper()
	srv := gitserver.StartTB(t, opts...)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", seed(t))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, url: srv.URL("gitops.git"), bare: bare}
}

func (f *fixture) git(t testing.TB, args ...string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), f.bare, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (f *fixture) head(t testing.TB) string { return f.git(t, "rev-parse", "refs/heads/main") }

// pushUnrelated commits a file straight into the bare repository, as another writer
// would, and returns the commit.
func pushUnrelated(t testing.TB, bare, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A commit on top of main that adds one file: index from main's tree + the file.
	idx := filepath.Join(t.TempDir(), "index")
	env := []string{"GIT_INDEX_FILE=" + idx, "GIT_DIR=" + bare, "GIT_WORK_TREE=" + dir}
	run := func(args ...string) string {
		cmd := execGit(ctx, env, args...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	run("read-tree", "refs/heads/main")
	run("add", name)
	tree := run("write-tree")
	parent := run("rev-parse", "refs/heads/main")
	commit := run("commit-tree", tree, "-p", parent, "-m", "Unrelated change "+name)
	run("update-ref", "refs/heads/main", commit, parent)
	return commit
}

func open(t testing.TB, url string, opts ...Option) *Repo {
	t.Helper()
	opts = append([]Option{WithAuthor("kropipe", "kropipe@example.com"), WithRetry(wait.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 10, Cap: 2 * time.Second})}, opts...)
	r, err := Open(context.Background(), t.TempDir(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func promote(stage, file, tag string) Change {
	return Change{
		Stage: stage, File: file, Key: "spec.values.deployment.tag",
		Image: "registry.example.com/team/frontend", Tag: tag, Digest: "sha256:" + strings.Repeat("a", 64),
		FreightID: "f-" + tag,
	}
}

func TestApply_PromoteWritesOneCommitWithExactMessageAndOneLine(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	res, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Old != "1.2.1" || res[0].Commit == "" || res[0].Skipped {
		t.Fatalf("result = %+v", res[0])
	}
	if got := f.head(t); got != res[0].Commit {
		t.Fatalf("remote head %s, want the promotion %s", got, res[0].Commit)
	}
	want := `Promote image from 1.2.1 to 1.2.2

Stage develop-frontend promotes registry.example.com/team/frontend:1.2.2@sha256:` + strings.Repeat("a", 64) + `: spec.values.deployment.tag in develop/frontend/instance.yaml is set to "1.2.2".

Kropipe-Stage: develop-frontend
Kropipe-Image: registry.example.com/team/frontend:1.2.2@sha256:` + strings.Repeat("a", 64) + `
Kropipe-Value: 1.2.2
Kropipe-Previous: 1.2.1
Kropipe-Freight: f-1.2.2`
	if got := f.git(t, "log", "-1", "--format=%B", "main"); got != want {
		t.Fatalf("message:\n%s\nwant:\n%s", got, want)
	}
	if got := f.git(t, "log", "-1", "--format=%an <%ae>", "main"); got != "kropipe <kropipe@example.com>" {
		t.Fatalf("author = %q", got)
	}
	// git's own trailer parser must see the trailers.
	if got := f.git(t, "log", "-1", "--format=%(trailers:key=Kropipe-Stage,valueonly)", "main"); got != "develop-frontend" {
		t.Fatalf("git trailers = %q", got)
	}
	diff := f.git(t, "diff", "-U0", "main~1", "main")
	var changed []string
	for _, l := range strings.Split(diff, "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			changed = append(changed, l)
		}
	}
	if len(changed) != 2 || changed[0] != `-      tag: "1.2.1"` || changed[1] != `+      tag: "1.2.2"` {
		t.Fatalf("diff:\n%s", diff)
	}
}

func TestApply_SecondRunIsIdempotent(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	c := promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")
	if _, err := r.Apply(context.Background(), "main", c); err != nil {
		t.Fatal(err)
	}
	head, pushes := f.head(t), f.srv.Pushes("gitops.git")
	res, err := r.Apply(context.Background(), "main", c)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Skipped || res[0].Commit != "" {
		t.Fatalf("result = %+v, want skipped", res[0])
	}
	if f.head(t) != head || f.srv.Pushes("gitops.git") != pushes {
		t.Fatal("a second run pushed")
	}
}

func TestApply_RebasesOnMovedBranch(t *testing.T) {
	tests := []struct {
		name string
		// race moves main at the worst moment; it returns the foreign commit.
		race func(t *testing.T, f *fixture, r *Repo) *string
	}{
		{"moved between fetch and push", func(t *testing.T, f *fixture, r *Repo) *string {
			var foreign string
			r.beforePush = func(attempt int) {
				if attempt == 0 {
					foreign = pushUnrelated(t, f.bare, "between.txt")
				}
			}
			return &foreign
		}},
		{"moved while the server holds our pack", func(t *testing.T, f *fixture, r *Repo) *string {
			// Replaced below: the server hook needs the fixture, so this case builds its own.
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fixture
			var foreign *string
			var r *Repo
			var retried []string // the pushes re-applied, as WithPushRetries reports them
			counted := WithPushRetries(func(repo string) { retried = append(retried, repo) })
			if tt.name == "moved while the server holds our pack" {
				var once sync.Once
				var fx *fixture
				var got string
				fx = newFixture(t, gitserver.WithRequestHook(func(req *http.Request) {
					if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "git-receive-pack") {
						once.Do(func() { got = pushUnrelated(t, fx.bare, "during.txt") })
					}
				}))
				f, foreign = fx, &got
				r = open(t, f.url, counted)
			} else {
				f = newFixture(t)
				r = open(t, f.url, counted)
				foreign = tt.race(t, f, r)
			}
			res, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
			if err != nil {
				t.Fatal(err)
			}
			if *foreign == "" {
				t.Fatal("the race did not happen")
			}
			if f.head(t) != res[0].Commit {
				t.Fatal("the promotion is not the head")
			}
			if parent := f.git(t, "rev-parse", "main~1"); parent != *foreign {
				t.Fatalf("promotion's parent = %s, want the foreign commit %s kept", parent, *foreign)
			}
			if n := f.srv.Pushes("gitops.git"); n < 1 {
				t.Fatalf("pushes = %d", n)
			}
			if len(retried) != 1 || retried[0] != Redact(f.url) {
				t.Errorf("push retries reported %q, want one for %s", retried, Redact(f.url))
			}
		})
	}
}

func TestApply_HookRejectionLeavesNothingHalfWritten(t *testing.T) {
	f := newFixture(t)
	if err := f.srv.InstallHook("gitops.git", "pre-receive", "#!/bin/sh\necho 'main is frozen for the release' >&2\nexit 1\n"); err != nil {
		t.Fatal(err)
	}
	r := open(t, f.url)
	before := f.head(t)
	res, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if !errors.Is(err, ErrPushRejected) || !strings.Contains(err.Error(), "main is frozen for the release") {
		t.Fatalf("err = %v, want ErrPushRejected with the hook's message", err)
	}
	if res[0].Commit != "" || res[0].Err == nil {
		t.Fatalf("result = %+v", res[0])
	}
	if f.head(t) != before {
		t.Fatal("remote moved")
	}
	if n := f.srv.Pushes("gitops.git"); n != 1 {
		t.Fatalf("pushes = %d, want 1: a hook refusal is not retried", n)
	}
	if ref, err := r.repo.Reference("refs/remotes/origin/main", false); err != nil || ref.Hash().String() != before {
		t.Fatalf("clone's origin/main = %v, %v; want %s", ref, err, before)
	}
	// Once the hook is gone the same change lands, from the same clone.
	if err := f.srv.RemoveHook("gitops.git", "pre-receive"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")); err != nil {
		t.Fatal(err)
	}
	if got := f.git(t, "rev-parse", "main~1"); got != before {
		t.Fatal("the promotion is not a single commit on the old head")
	}
}

func TestOpen_AuthFailureNeverShowsThePassword(t *testing.T) {
	f := newFixture(t, gitserver.WithBasicAuth("bot", "right-password"))
	withUser := func(pass string) string {
		return strings.Replace(f.url, "http://", "http://bot:"+pass+"@", 1)
	}
	tests := []struct {
		name string
		url  string
		opts []Option
	}{
		{"password in the URL", withUser("wrong-password-123"), nil},
		{"password as credentials", f.url, []Option{WithCredentials(Credentials{Username: "bot", Password: "wrong-password-123"})}},
		{"token as credentials", f.url, []Option{WithCredentials(Credentials{Token: "wrong-password-123"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), t.TempDir(), tt.url, tt.opts...)
			if err == nil {
				t.Fatal("wrong password accepted")
			}
			if strings.Contains(err.Error(), "wrong-password-123") {
				t.Fatalf("error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), "authentication") && !strings.Contains(err.Error(), "authorization") {
				t.Fatalf("err = %v, want it to say authentication failed", err)
			}
		})
	}
	dataDir := t.TempDir()
	r, err := Open(context.Background(), dataDir, withUser("right-password"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Dir(), "right-password") {
		t.Fatalf("clone dir %s holds the password", r.Dir())
	}
	cfg, _ := os.ReadFile(filepath.Join(r.Dir(), "config"))
	if strings.Contains(string(cfg), "right-password") {
		t.Fatal("clone config holds the password")
	}
}

func TestApply_BadInputNamesStageFileAndKeyAndCommitsNothing(t *testing.T) {
	tests := []struct {
		name       string
		file, key  string
		want       error
		wantDetail string
	}{
		{"key missing", "develop/frontend/instance.yaml", "spec.values.deployment.version", nil, `has no "version"`},
		{"key not a scalar", "develop/frontend/instance.yaml", "spec.values.deployment", nil, "not a scalar"},
		{"file not valid YAML", "broken/instance.yaml", "spec.values.deployment.tag", nil, "not valid YAML"},
		{"file missing", "qa/frontend/instance.yaml", "spec.values.deployment.tag", ErrFileNotFound, "does not exist"},
		{"path with ..", "../outside.yaml", "spec.values.deployment.tag", ErrPathEscapes, "outside the repository"},
		{"path hidden behind ..", "develop/../../outside.yaml", "spec.values.deployment.tag", ErrPathEscapes, "outside the repository"},
		{"absolute path", "/etc/passwd", "spec.values.deployment.tag", ErrPathEscapes, "absolute"},
		{"symlink to a directory outside", "escape/passwd", "spec.values.deployment.tag", ErrPathEscapes, "symbolic link"},
		{"symlink to a file", "broken/link.yaml", "spec.values.deployment.tag", ErrPathEscapes, "symbolic link"},
		{"into .git", ".git/config", "core.bare", ErrPathEscapes, ".git"},
	}
	f := newFixture(t)
	r := open(t, f.url)
	before := f.head(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := promote("develop-frontend", tt.file, "1.2.2")
			c.Key = tt.key
			res, err := r.Apply(context.Background(), "main", c)
			if err == nil || res[0].Err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			msg := err.Error()
			t.Log(msg)
			for _, s := range []string{`stage "develop-frontend"`, tt.file, tt.key, tt.wantDetail} {
				if !strings.Contains(msg, s) {
					t.Fatalf("err = %q, want it to contain %q", msg, s)
				}
			}
			if f.head(t) != before {
				t.Fatal("something was committed")
			}
		})
	}
}

func TestApply_BatchMakesOneCommitPerStageAndOnePush(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	before, pushes := f.head(t), f.srv.Pushes("gitops.git")
	res, err := r.Apply(context.Background(), "main",
		promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"),
		promote("develop-backend", "develop/backend/instance.yaml", "2.0.0"),
		promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.srv.Pushes("gitops.git") - pushes; got != 1 {
		t.Fatalf("pushes = %d, want 1", got)
	}
	if got := f.git(t, "rev-list", "--count", before+"..main"); got != "3" {
		t.Fatalf("commits = %s, want 3", got)
	}
	subjects := f.git(t, "log", "--format=%s", before+"..main")
	want := "Promote image from 1.2.1 to 1.2.2\nPromote image from 1.2.1 to 2.0.0\nPromote image from 1.2.1 to 1.2.2"
	if subjects != want {
		t.Fatalf("subjects:\n%s", subjects)
	}
	if res[2].Commit != f.head(t) {
		t.Fatal("last result is not the head")
	}
}

func TestApply_SameFileInOneBatch(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	t.Run("two keys of one file are applied in order", func(t *testing.T) {
		img := promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")
		img.Key, img.Value = "spec.values.deployment.image", "registry.example.com/team/frontend-v2"
		res, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"), img)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Commit == "" || res[1].Commit == "" {
			t.Fatalf("results = %+v", res)
		}
		content := f.git(t, "show", "main:develop/frontend/instance.yaml")
		if !strings.Contains(content, `tag: "1.2.2"`) || !strings.Contains(content, "image: registry.example.com/team/frontend-v2") {
			t.Fatalf("content:\n%s", content)
		}
	})
	t.Run("two stages on one key is a conflict for the second", func(t *testing.T) {
		before := f.head(t)
		res, err := r.Apply(context.Background(), "main",
			promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.3"),
			promote("develop-frontend-canary", "develop/frontend/instance.yaml", "1.2.4"))
		if !errors.Is(err, ErrConflict) || res[1].Err == nil || res[0].Err != nil {
			t.Fatalf("err = %v, results = %+v", err, res)
		}
		if !strings.Contains(err.Error(), `"develop-frontend-canary"`) {
			t.Fatalf("err = %v", err)
		}
		if got := f.git(t, "rev-list", "--count", before+"..main"); got != "1" {
			t.Fatalf("commits = %s, want only the first stage's", got)
		}
	})
}

func TestHistory_ReadsPromotionsAndRollbacksBack(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	file := "develop/frontend/instance.yaml"
	for _, tag := range []string{"1.2.2", "1.2.3"} {
		if _, err := r.Apply(ctx, "main", promote("develop-frontend", file, tag)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Apply(ctx, "main", promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2")); err != nil {
		t.Fatal(err)
	}
	recs, err := r.History(ctx, "main", "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Value != "1.2.3" || recs[0].Previous != "1.2.2" || recs[1].Value != "1.2.2" {
		t.Fatalf("history = %+v", recs)
	}
	prev, ok := PreviousPromotion(recs, "1.2.3")
	if !ok || prev != "1.2.2" {
		t.Fatalf("previous = %q, %v", prev, ok)
	}
	rb := promote("develop-frontend", file, prev)
	rb.Kind = Rollback
	res, err := r.Apply(ctx, "main", rb)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.git(t, "log", "-1", "--format=%s%n%(trailers:key=Kropipe-Rejected,valueonly)", "main"); got != "Roll back image from 1.2.3 to 1.2.2\n1.2.3" {
		t.Fatalf("rollback commit = %q", got)
	}
	// A fresh clone (a restarted promoter) sees the same rejection.
	r2 := open(t, f.url)
	rejected, err := r2.Rejected(ctx, "main", "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || !rejected["1.2.3"] {
		t.Fatalf("rejected = %v", rejected)
	}
	if other, _ := r2.Rejected(ctx, "main", "staging-frontend"); len(other) != 0 {
		t.Fatalf("staging rejected = %v", other)
	}
	recs, _ = r2.History(ctx, "main", "develop-frontend")
	if recs[0].Kind != Rollback || recs[0].Commit != res[0].Commit {
		t.Fatalf("newest record = %+v", recs[0])
	}
	if v, commit, err := r2.Read(ctx, "main", file, "spec.values.deployment.tag"); err != nil || v != "1.2.2" || commit != res[0].Commit {
		t.Fatalf("Read = %q, %q, %v", v, commit, err)
	}
}

func TestApply_ConcurrentPushersLoseNothing(t *testing.T) {
	f := newFixture(t)
	var attempts atomic.Int64
	r := open(t, f.url, WithRetry(wait.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 40, Cap: 2 * time.Second}))
	r.beforePush = func(int) { attempts.Add(1) }
	ctx := context.Background()

	// Other writers (CI bots, humans) push a few times a second each while the
	// promoter works; each stops after a bounded number of commits so that a slow
	// machine (or -race) cannot turn the test into a livelock study.
	const writers, perWriter, promotions = 3, 10, 5
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		foreign []string
		stopped atomic.Bool
	)
	defer func() { stopped.Store(true); wg.Wait() }()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWriter && !stopped.Load(); {
				time.Sleep(time.Duration(200+100*w) * time.Millisecond)
				if c := pushUnrelatedCAS(f.bare, fmt.Sprintf("writer-%d-%d.txt", w, i)); c != "" {
					mu.Lock()
					foreign = append(foreign, c)
					mu.Unlock()
					i++
				}
			}
		}(w)
	}
	// Two promoters (two clones, as two replicas would have) and two goroutines
	// sharing one of them all promote at once.
	r2 := open(t, f.url, WithRetry(wait.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 40, Cap: 2 * time.Second}))
	r2.beforePush = func(int) { attempts.Add(1) }
	var (
		landed   []string
		failures []error
		pmu      sync.Mutex
		pwg      sync.WaitGroup
	)
	stages := []string{"develop/frontend", "develop/backend", "staging/frontend"}
	for p, repo := range []*Repo{r, r, r2} {
		pwg.Add(1)
		go func(p int, repo *Repo) {
			defer pwg.Done()
			for i := 0; i < promotions; i++ {
				// Each promoter owns one stage, as stages own their files.
				file := stages[p] + "/instance.yaml"
				res, err := repo.Apply(ctx, "main", promote("stage-"+stages[p], file, fmt.Sprintf("1.3.%d", i)))
				pmu.Lock()
				if err != nil {
					failures = append(failures, fmt.Errorf("promoter %d, promotion %d: %w", p, i, err))
				} else {
					landed = append(landed, res[0].Commit)
				}
				pmu.Unlock()
			}
		}(p, repo)
	}
	pwg.Wait()
	for _, err := range failures {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	stopped.Store(true)
	wg.Wait()
	if len(foreign) == 0 {
		t.Fatal("no concurrent writer got through")
	}
	for _, c := range append(landed, foreign...) {
		if _, err := gitserver.GitOutput(ctx, f.bare, "merge-base", "--is-ancestor", c, "main"); err != nil {
			t.Fatalf("commit %s was lost", c)
		}
	}
	t.Logf("%d promotions (%d push attempts) and %d foreign commits landed", len(landed), attempts.Load(), len(foreign))
}

// pushUnrelatedCAS is pushUnrelated for goroutines: it returns "" when another writer
// won the compare-and-swap on main instead of failing the test.
func pushUnrelatedCAS(bare, name string) string {
	dir, err := os.MkdirTemp("", "writer-")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o644); err != nil {
		return ""
	}
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(dir, ".index"), "GIT_DIR=" + bare, "GIT_WORK_TREE=" + dir}
	run := func(args ...string) (string, error) {
		out, err := execGit(context.Background(), env, args...).Output()
		return strings.TrimSpace(string(out)), err
	}
	parent, err := run("rev-parse", "refs/heads/main")
	if err != nil {
		return ""
	}
	if _, err := run("read-tree", parent); err != nil {
		return ""
	}
	if _, err := run("add", name); err != nil {
		return ""
	}
	tree, err := run("write-tree")
	if err != nil {
		return ""
	}
	commit, err := run("commit-tree", tree, "-p", parent, "-m", "Unrelated change "+name)
	if err != nil {
		return ""
	}
	if _, err := run("update-ref", "refs/heads/main", commit, parent); err != nil {
		return ""
	}
	return commit
}

func TestRedact_HidesPasswordsAndTokens(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://bot:s3cret@git.example.com/gitops.git", "https://bot:***@git.example.com/gitops.git"},
		{"https://ghp_token123@github.com/o/r.git", "https://***@github.com/o/r.git"},
		{`Get "http://u:p@127.0.0.1:1/x/info/refs": EOF`, `Get "http://u:***@127.0.0.1:1/x/info/refs": EOF`},
		{"ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"},
		{"git@github.com:o/r.git", "git@github.com:o/r.git"},
		{"https://github.com/o/r.git", "https://github.com/o/r.git"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCloneDirName_HoldsNoCredentials(t *testing.T) {
	a := CloneDirName("https://bot:s3cret@git.example.com/team/gitops.git")
	b := CloneDirName("https://git.example.com/team/gitops.git")
	if a != b || strings.Contains(a, "s3cret") || strings.Contains(a, "bot") || !strings.HasPrefix(a, "git.example.com_team_gitops.git-") {
		t.Fatalf("names = %q, %q", a, b)
	}
	if CloneDirName("https://git.example.com/team/other.git") == b {
		t.Fatal("two repositories share a clone")
	}
}

func TestCredentialsFromEnv_ReadsFiles(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KP_TOKEN_FILE", tok)
	t.Setenv("KP_USERNAME", "bot")
	c, err := CredentialsFromEnv("KP_")
	if err != nil || c.Token != "tok-from-file" || c.Username != "bot" {
		t.Fatalf("creds = %+v, %v", c, err)
	}
}

func TestApply_FileURL(t *testing.T) {
	f := newFixture(t)
	r := open(t, "file://"+f.bare)
	res, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if f.head(t) != res[0].Commit {
		t.Fatal("the promotion is not the head")
	}
}

func TestCompact_MergesPacksAndKeepsTheCloneWorking(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := r.Apply(ctx, "main", promote("develop-frontend", "develop/frontend/instance.yaml", fmt.Sprintf("1.4.%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.PackCount(); err != nil || n < 2 {
		t.Fatalf("packs = %d, %v; want several", n, err)
	}
	if err := r.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.PackCount(); n != 1 {
		t.Fatalf("packs after Compact = %d, want 1", n)
	}
	if _, err := r.Apply(ctx, "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.5.0")); err != nil {
		t.Fatal(err)
	}
	if v, _, err := r.Read(ctx, "main", "develop/frontend/instance.yaml", "spec.values.deployment.tag"); err != nil || v != "1.5.0" {
		t.Fatalf("Read = %q, %v", v, err)
	}
}

func TestApply_HTTPSWithPrivateCA(t *testing.T) {
	f := newFixture(t, gitserver.WithTLS())
	if !strings.HasPrefix(f.url, "https://") {
		t.Fatalf("url = %s", f.url)
	}
	if _, err := Open(context.Background(), t.TempDir(), f.url); err == nil {
		t.Fatal("an unknown CA was trusted")
	}
	r := open(t, f.url, WithCABundle(f.srv.CACert()))
	res, err := r.Apply(context.Background(), "main", promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if f.head(t) != res[0].Commit {
		t.Fatal("the promotion is not the head")
	}
}

func TestContains_AncestryFromTheClone(t *testing.T) {
	f := newFixture(t)
	seedCommit := f.head(t)
	r := open(t, f.url)
	later := pushUnrelated(t, f.bare, "notes.txt")
	if ok, err := r.Contains(seedCommit, later); err != nil || ok {
		t.Fatalf("before a fetch: Contains = %v, %v; want false (the clone has not seen the later commit)", ok, err)
	}
	if _, err := r.History(context.Background(), "main", ""); err != nil { // fetches
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ancestor, descendant string
		want                 bool
	}{
		{seedCommit, later, true},
		{seedCommit, seedCommit, true},
		{later, seedCommit, false},
		{seedCommit, strings.Repeat("ab", 20), false},
	} {
		if ok, err := r.Contains(tt.ancestor, tt.descendant); err != nil || ok != tt.want {
			t.Errorf("Contains(%.7s, %.7s) = %v, %v; want %v", tt.ancestor, tt.descendant, ok, err, tt.want)
		}
	}
}

func TestDefaultBranch_FollowsTheRemoteHEAD(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	if b, err := r.DefaultBranch(ctx); err != nil || b != "main" {
		t.Fatalf("DefaultBranch = %q, %v; want main", b, err)
	}
	f.git(t, "branch", "trunk", "main")
	f.git(t, "symbolic-ref", "HEAD", "refs/heads/trunk")
	if b, err := r.DefaultBranch(ctx); err != nil || b != "trunk" {
		t.Fatalf("after the server's HEAD moved: DefaultBranch = %q, %v; want trunk", b, err)
	}
}

// History reads only new commits between calls, yet follows the branch exactly: new
// records first, and a force push that drops a promotion drops its record too.
func TestHistory_FollowsNewCommitsAndForcePushes(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	const file = "develop/frontend/instance.yaml"
	values := func() []string {
		recs, err := r.History(ctx, "main", "develop-frontend")
		if err != nil {
			t.Fatal(err)
		}
		var v []string
		for _, rec := range recs {
			v = append(v, rec.Value)
		}
		return v
	}
	if _, err := r.Apply(ctx, "main", promote("develop-frontend", file, "1.2.2")); err != nil {
		t.Fatal(err)
	}
	kept := f.head(t)
	if got := values(); !slices.Equal(got, []string{"1.2.2"}) {
		t.Fatalf("after one promotion: %q", got)
	}
	pushUnrelated(t, f.bare, "notes.txt")
	if _, err := r.Apply(ctx, "main", promote("develop-frontend", file, "1.2.3")); err != nil {
		t.Fatal(err)
	}
	if got := values(); !slices.Equal(got, []string{"1.2.3", "1.2.2"}) {
		t.Fatalf("after a second promotion on top of another writer's commit: %q", got)
	}
	// Someone resets main to before 1.2.3 (a force push).
	f.git(t, "update-ref", "refs/heads/main", kept)
	if got := values(); !slices.Equal(got, []string{"1.2.2"}) {
		t.Fatalf("after the force push: %q, want 1.2.3's record gone", got)
	}
}

// FetchedHistory reads what the last fetch brought and asks the remote nothing.
func TestFetchedHistory_ReadsTheLastFetchWithoutFetching(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	const file = "develop/frontend/instance.yaml"
	if _, err := r.Apply(ctx, "main", promote("develop-frontend", file, "1.2.2")); err != nil {
		t.Fatal(err)
	}
	other := open(t, f.url) // another writer's clone
	if _, err := other.Apply(ctx, "main", promote("develop-frontend", file, "1.2.3")); err != nil {
		t.Fatal(err)
	}
	before := len(f.srv.Requests())
	recs, err := r.FetchedHistory(ctx, "main", "develop-frontend")
	if err != nil || len(recs) != 1 || recs[0].Value != "1.2.2" {
		t.Fatalf("FetchedHistory = %+v, %v; want only 1.2.2, as last fetched", recs, err)
	}
	if n := len(f.srv.Requests()) - before; n != 0 {
		t.Fatalf("FetchedHistory made %d requests to the Git server", n)
	}
	if recs, err := r.History(ctx, "main", "develop-frontend"); err != nil || len(recs) != 2 || recs[0].Value != "1.2.3" {
		t.Fatalf("History = %+v, %v; want the other writer's 1.2.3 first", recs, err)
	}
}

func TestReadFetched_ReadsTheLastFetchWithoutFetching(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	const file, key = "develop/frontend/instance.yaml", "spec.values.deployment.tag"
	res, err := r.Apply(ctx, "main", promote("develop-frontend", file, "1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	other := open(t, f.url) // another writer's clone
	if _, err := other.Apply(ctx, "main", promote("develop-frontend", file, "1.2.3")); err != nil {
		t.Fatal(err)
	}
	before := len(f.srv.Requests())
	v, commit, err := r.ReadFetched(ctx, "main", file, key)
	if err != nil || v != "1.2.2" || commit != res[0].Commit {
		t.Fatalf("ReadFetched = %q at %s, %v; want 1.2.2 at %s, as last fetched", v, commit, err, res[0].Commit)
	}
	if n := len(f.srv.Requests()) - before; n != 0 {
		t.Fatalf("ReadFetched made %d requests to the Git server", n)
	}
	if _, _, err := r.ReadFetched(ctx, "main", "develop/nothing/instance.yaml", key); !errors.Is(err, ErrFileNotFound) {
		t.Errorf("a missing file: %v, want ErrFileNotFound", err)
	}
	if v, _, err := r.Read(ctx, "main", file, key); err != nil || v != "1.2.3" {
		t.Fatalf("Read = %q, %v; want the other writer's 1.2.3", v, err)
	}
}

// A commit written by hand that gives Kropipe-Rejected twice is not read as a rollback: which
// value may never be auto-promoted again cannot be known.
func TestHistory_RefusesACommitGivingAKropipeTrailerTwice(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	head := f.head(t)
	msg := "Roll back by hand\n\nKropipe-Stage: develop-frontend\nKropipe-Value: 1.2.1\nKropipe-Rejected: 1.2.2\nKropipe-Rejected: 1.2.3\n"
	c := f.git(t, "commit-tree", "-p", head, "-m", msg, head+"^{tree}")
	f.git(t, "update-ref", "refs/heads/main", c)
	recs, err := r.History(context.Background(), "main", "develop-frontend")
	if err != nil || len(recs) != 0 {
		t.Fatalf("History = %+v, %v; want no record from the ambiguous commit", recs, err)
	}
}

// A pass reads the branch and writes moments later: Apply builds on that fetch instead of
// asking the server again, and when the branch moved meanwhile the push finds out before
// sending anything and Apply builds again on the new head.
func TestApply_BuildsOnAFetchMadeMomentsAgo(t *testing.T) {
	const file = "develop/frontend/instance.yaml"
	// A fetch asks for the server's refs first (GET info/refs?service=git-upload-pack), with
	// or without something to download after.
	fetches := func(f *fixture) int {
		n := 0
		for _, r := range f.srv.Requests() {
			if r.Method == http.MethodGet && r.Service == "git-upload-pack" {
				n++
			}
		}
		return n
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name        string
		opts        []Option
		moved       bool
		wantFetches int
	}{
		{"fresh fetch is reused", nil, false, 0},
		{"branch moved since the fetch", nil, true, 1},
		{"reuse off", []Option{WithFetchReuse(0)}, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var retried int
			r := open(t, f.url, append(tt.opts, WithPushRetries(func(string) { retried++ }))...)
			if _, err := r.History(ctx, "main", ""); err != nil {
				t.Fatal(err)
			}
			var foreign string
			if tt.moved {
				foreign = pushUnrelated(t, f.bare, "moved.txt")
			}
			before := fetches(f)
			res, err := r.Apply(ctx, "main", promote("develop-frontend", file, "1.2.2"))
			if err != nil {
				t.Fatal(err)
			}
			if n := fetches(f) - before; n != tt.wantFetches {
				t.Errorf("Apply fetched %d times, want %d", n, tt.wantFetches)
			}
			if f.head(t) != res[0].Commit {
				t.Fatal("the promotion is not the head")
			}
			if tt.moved {
				if parent := f.git(t, "rev-parse", "main~1"); parent != foreign {
					t.Fatalf("promotion's parent = %s, want the foreign commit %s kept", parent, foreign)
				}
				if retried != 1 {
					t.Errorf("push retries = %d, want 1", retried)
				}
			}
		})
	}
}

// A batch whose objects outgrow WithMaxPack goes out in several pushes, each built on the
// one before, and every change lands in order.
func TestApply_SplitsALargeBatchIntoSeveralPushes(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url, WithMaxPack(1)) // full after every commit
	before, pushes := f.head(t), f.srv.Pushes("gitops.git")
	res, err := r.Apply(context.Background(), "main",
		promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2"),
		promote("develop-backend", "develop/backend/instance.yaml", "2.0.0"),
		promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.srv.Pushes("gitops.git") - pushes; got != 3 {
		t.Errorf("pushes = %d, want 3", got)
	}
	commits := strings.Fields(f.git(t, "rev-list", "--reverse", before+"..main"))
	if len(commits) != 3 {
		t.Fatalf("commits = %d, want 3", len(commits))
	}
	for i, c := range commits {
		if res[i].Commit != c {
			t.Errorf("result %d (%s) commit %s, want %s", i, res[i].Stage, res[i].Commit, c)
		}
	}
}
