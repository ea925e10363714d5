package gitwrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/packfile"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// flatFixture is a repository whose apps sit side by side in one folder, the layout
// most GitOps repositories have: develop/svcNNN/instance.yaml, width of them.
func flatFixture(t *testing.T, width int) *fixture {
	t.Helper()
	dir := t.TempDir()
	for i := range width {
		p := filepath.Join(dir, flatFile(i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		app := fmt.Sprintf("svc%03d", i)
		if err := os.WriteFile(p, []byte(fmt.Sprintf(instance, app, app)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := gitserver.StartTB(t)
	bare, err := srv.NewBareRepo(context.Background(), "gitops.git", dir)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, url: srv.URL("gitops.git"), bare: bare}
}

func flatFile(i int) string { return fmt.Sprintf("develop/svc%03d/instance.yaml", i) }

// pushProxy stands in front of the Git server: it keeps the packs pushed through it and,
// with noThin, adds no-thin to receive-pack's capabilities, as a server that cannot
// take thin packs says.
type pushProxy struct {
	mu    sync.Mutex
	packs [][]byte
}

func (p *pushProxy) start(t *testing.T, target string, noThin bool) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	repoPath := u.Path
	u.Path = ""
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if !noThin || resp.Request.URL.Query().Get("service") != "git-receive-pack" || !strings.HasSuffix(resp.Request.URL.Path, "/info/refs") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		body = addCapability(t, body, "no-thin")
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if i := bytes.Index(body, []byte("PACK")); i >= 0 {
				p.mu.Lock()
				p.packs = append(p.packs, body[i:])
				p.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + repoPath
}

// last is the last pack pushed.
func (p *pushProxy) last(t *testing.T) []byte {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.packs) == 0 {
		t.Fatal("nothing was pushed")
	}
	return p.packs[len(p.packs)-1]
}

// addCapability adds c to the capabilities of the first reference line of a smart
// HTTP advertisement (after "# service=…" and a flush).
func addCapability(t *testing.T, body []byte, c string) []byte {
	t.Helper()
	pos := 0
	for range 3 { // the service line, the flush, the first reference
		n, err := strconv.ParseUint(string(body[pos:pos+4]), 16, 16)
		if err != nil {
			t.Fatalf("advertisement: %v", err)
		}
		if n == 0 {
			pos += 4
			continue
		}
		line := body[pos+4 : pos+int(n)]
		if !bytes.Contains(line, []byte{0}) {
			pos += int(n)
			continue
		}
		line = append(bytes.TrimSuffix(bytes.Clone(line), []byte("\n")), []byte(" "+c+"\n")...)
		out := append(bytes.Clone(body[:pos]), fmt.Sprintf("%04x", len(line)+4)...)
		out = append(out, line...)
		return append(out, body[pos+int(n):]...)
	}
	t.Fatal("advertisement has no reference line")
	return nil
}

// objectBytes is the size of the objects from..to added, whole: what a pack without
// deltas carries.
func (f *fixture) objectBytes(t *testing.T, from, to string) int {
	t.Helper()
	objs := f.git(t, "rev-list", "--objects", from+".."+to)
	var names []string
	for _, l := range strings.Split(objs, "\n") {
		names = append(names, strings.Fields(l)[0])
	}
	cmd := execGit(context.Background(), []string{"GIT_DIR=" + f.bare}, "cat-file", "--batch-check=%(objectsize)")
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range strings.Fields(string(out)) {
		n, _ := strconv.Atoi(l)
		total += n
	}
	return total
}

// indexPack runs git index-pack on pack outside any repository: it fails on a thin
// pack, whose bases only the receiving repository has.
func indexPack(t *testing.T, pack []byte) error {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "p.pack")
	if err := os.WriteFile(p, pack, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := execGit(context.Background(), []string{"GIT_DIR=" + filepath.Join(dir, "none")}, "index-pack", p)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// gitIn runs git in dir, failing the test on error.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := execGit(context.Background(), nil, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v in %s: %v: %s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestApply_WideFolderPushesDeltasGitAccepts(t *testing.T) {
	const width, batch = 300, 100
	for _, tc := range []struct {
		name   string
		noThin bool
	}{
		{name: "server takes thin packs (git receive-pack)"},
		{name: "server advertises no-thin", noThin: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := flatFixture(t, width)
			proxy := &pushProxy{}
			r := open(t, proxy.start(t, f.url, tc.noThin))
			folderTree := len(f.git(t, "cat-file", "tree", "main:develop")) // bytes of the 300-entry tree, whole

			// A pass with a new tag for 100 of the 300 apps: 100 commits, each rewriting
			// the folder's tree.
			before := f.head(t)
			var changes []Change
			for i := range batch {
				changes = append(changes, promote(fmt.Sprintf("s%03d", i), flatFile(i), "1.3.0"))
			}
			if _, err := r.Apply(ctx, "main", changes...); err != nil {
				t.Fatal(err)
			}
			whole := f.objectBytes(t, before, "main")
			pushed := len(proxy.last(t))
			if pushed*10 > whole {
				t.Errorf("the pass pushed %d bytes; its objects whole are %d bytes: want at most 1/10 (trees as deltas of each other)", pushed, whole)
			}
			if tc.noThin {
				if err := indexPack(t, proxy.last(t)); err != nil {
					t.Errorf("to a no-thin server the pack must stand alone: %v", err)
				}
			}

			// One more promotion: its folder tree is a delta against the server's (thin)
			// or whole (no-thin).
			if _, err := r.Apply(ctx, "main", promote("s299", flatFile(299), "1.3.0")); err != nil {
				t.Fatal(err)
			}
			one := proxy.last(t)
			if tc.noThin {
				if err := indexPack(t, one); err != nil {
					t.Errorf("to a no-thin server the pack must stand alone: %v", err)
				}
			} else if len(one)*4 > folderTree {
				t.Errorf("one promotion pushed %d bytes; the folder's tree alone is %d bytes whole: want a delta against the server's tree", len(one), folderTree)
			}

			// Git takes the result: the server's repository is sound, a fresh clone
			// checks out every promotion, and so is the promoter's own clone.
			f.git(t, "fsck", "--full", "--strict")
			clone := filepath.Join(t.TempDir(), "clone")
			gitIn(t, t.TempDir(), "clone", "-q", f.bare, clone)
			gitIn(t, clone, "fsck", "--full", "--strict")
			for _, i := range []int{0, batch - 1, 299} {
				data, err := os.ReadFile(filepath.Join(clone, flatFile(i)))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(data), `tag: "1.3.0"`) {
					t.Errorf("%s in a fresh clone:\n%s", flatFile(i), data)
				}
			}
			if n := f.git(t, "rev-list", "--count", before+"..main"); n != strconv.Itoa(batch+1) {
				t.Errorf("commits = %s, want %d", n, batch+1)
			}
			gitIn(t, r.Dir(), "fsck", "--full")
			if v, _, err := r.ReadFetched(ctx, "main", flatFile(299), "spec.values.deployment.tag"); err != nil || v != "1.3.0" {
				t.Errorf("the promoter's clone reads %q, %v; want 1.3.0", v, err)
			}
		})
	}
}

// Two folders that hold the same files share one tree object; when one of them changes
// again in the same batch, the shared tree must still be readable for the other.
func TestApply_SharedTreeStaysReadableInABatch(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	res, err := r.Apply(context.Background(), "main",
		promote("develop-frontend", "develop/frontend/instance.yaml", "1.5.0"),
		promote("staging-frontend", "staging/frontend/instance.yaml", "1.5.0"), // now the same tree as develop/frontend
		promote("develop-frontend", "develop/frontend/instance.yaml", "1.6.0"),
		promote("staging-frontend", "staging/frontend/instance.yaml", "1.6.0"),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res {
		if x.Commit == "" {
			t.Errorf("%s %s: no commit", x.Stage, x.New)
		}
	}
	f.git(t, "fsck", "--full", "--strict")
	for _, p := range []string{"develop/frontend/instance.yaml", "staging/frontend/instance.yaml"} {
		if got := f.git(t, "show", "main:"+p); !strings.Contains(got, `tag: "1.6.0"`) {
			t.Errorf("%s:\n%s", p, got)
		}
	}
}

func TestVersionDelta_GitPatchesItBack(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: copies past 64 KiB
	changed := bytes.Clone(big)
	copy(changed[150000:], "CHANGED")
	for _, tc := range []struct {
		name     string
		src, dst []byte
		atMost   int // delta bytes
	}{
		{name: "identical", src: []byte("same"), dst: []byte("same"), atMost: 10},
		{name: "one value changed", src: []byte(`tag: "1.2.1"` + "\n"), dst: []byte(`tag: "1.2.2"` + "\n"), atMost: 12},
		{name: "grown", src: []byte("abc"), dst: []byte("abXYZc"), atMost: 16},
		{name: "shrunk", src: []byte("abXYZc"), dst: []byte("abc"), atMost: 16},
		{name: "nothing in common", src: []byte("abc"), dst: bytes.Repeat([]byte("x"), 300), atMost: 310},
		{name: "wide tree, one entry changed", src: big, dst: changed, atMost: 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := versionDelta(nil, tc.src, tc.dst)
			got, err := packfile.PatchDelta(tc.src, d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.dst) {
				t.Errorf("patched back %q, want %q", got, tc.dst)
			}
			if len(d) > tc.atMost {
				t.Errorf("delta is %d bytes, want at most %d", len(d), tc.atMost)
			}
		})
	}
}
