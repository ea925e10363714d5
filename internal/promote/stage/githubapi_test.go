package stage

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// gitHubAPI answers the endpoints of GitHub's Git Data API that forge.FileCommitter calls
// (commits, blobs, trees, refs) over a real bare repository, with real git plumbing
// (hash-object, read-tree/update-index/write-tree, commit-tree, update-ref), so a test reads
// back with git exactly what an API commit made. Like GitHub, it makes the commit under the
// App's identity, refuses a ref update that is not a fast forward unless forced (422
// "Update is not a fast forward") and the creation of a ref that exists (422 "Reference
// already exists"). Its answers have the fields of the recorded payloads in
// internal/promote/forge/testdata/github/git-*.json that go-github reads.
type gitHubAPI struct {
	t    testing.TB
	bare string
	srv  *httptest.Server

	mu    sync.Mutex
	calls map[string]int // "POST git/commits", "PATCH git/refs", …
	// beforeRef, when set, runs once before the next ref update: another writer's window.
	beforeRef func()
}

func newGitHubAPI(t testing.TB, bare string) *gitHubAPI {
	g := &gitHubAPI{t: t, bare: bare, calls: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/{owner}/{name}/git/commits/{sha}", g.getCommit)
	mux.HandleFunc("POST /repos/{owner}/{name}/git/blobs", g.createBlob)
	mux.HandleFunc("POST /repos/{owner}/{name}/git/trees", g.createTree)
	mux.HandleFunc("POST /repos/{owner}/{name}/git/commits", g.createCommit)
	mux.HandleFunc("POST /repos/{owner}/{name}/git/refs", g.createRef)
	mux.HandleFunc("PATCH /repos/{owner}/{name}/git/refs/heads/{branch...}", g.updateRef)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer app-installation-token" {
			answer(w, 401, map[string]string{"message": "Bad credentials"})
			return
		}
		op := r.Method + " " + r.URL.Path[strings.Index(r.URL.Path, "/git/")+1:]
		if strings.Contains(op, "git/refs/heads/") {
			op = r.Method + " git/refs/heads"
		} else if strings.HasPrefix(op, "GET git/commits/") {
			op = "GET git/commits"
		}
		g.mu.Lock()
		g.calls[op]++
		g.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// forge is the real GitHub client (go-github) on this server, as kropipe makes it.
func (g *gitHubAPI) forge(repoURL string) forge.Forge {
	g.t.Helper()
	f, err := forge.New(repoURL, forge.Config{Kind: forge.GitHub, APIURL: g.srv.URL, Token: "app-installation-token"})
	if err != nil {
		g.t.Fatal(err)
	}
	return f
}

func (g *gitHubAPI) count(op string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[op]
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// gitIn runs git in the bare repository with stdin and extra environment.
func gitIn(dir string, stdin []byte, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitserver.Env(), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func (g *gitHubAPI) fail(w http.ResponseWriter, err error) {
	g.t.Errorf("GitHub API server: %v", err)
	answer(w, 500, map[string]string{"message": err.Error()})
}

func (g *gitHubAPI) getCommit(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	out, err := gitIn(g.bare, nil, nil, "show", "-s", "--format=%T %P", sha+"^{commit}")
	if err != nil {
		answer(w, 404, map[string]string{"message": "Not Found"})
		return
	}
	f := strings.Fields(out)
	var parents []map[string]string
	for _, p := range f[1:] {
		parents = append(parents, map[string]string{"sha": p})
	}
	answer(w, 200, map[string]any{"sha": sha, "tree": map[string]string{"sha": f[0]}, "parents": parents})
}

func (g *gitHubAPI) createBlob(w http.ResponseWriter, r *http.Request) {
	var b struct{ Content, Encoding string }
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Encoding != "base64" {
		answer(w, 422, map[string]string{"message": "Invalid request"})
		return
	}
	data, err := base64.StdEncoding.DecodeString(b.Content)
	if err != nil {
		answer(w, 422, map[string]string{"message": "Invalid base64"})
		return
	}
	sha, err := gitIn(g.bare, data, nil, "hash-object", "-w", "--stdin")
	if err != nil {
		g.fail(w, err)
		return
	}
	answer(w, 201, map[string]string{"sha": sha})
}

func (g *gitHubAPI) createTree(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BaseTree string `json:"base_tree"`
		Tree     []struct{ Path, Mode, Type, SHA string }
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		answer(w, 422, map[string]string{"message": "Invalid request"})
		return
	}
	// The base tree in a scratch index, the entries put in it by path: GitHub's semantics.
	idx, err := os.CreateTemp(g.t.TempDir(), "index-*")
	if err != nil {
		g.fail(w, err)
		return
	}
	idx.Close()
	os.Remove(idx.Name())
	env := []string{"GIT_INDEX_FILE=" + idx.Name()}
	if _, err := gitIn(g.bare, nil, env, "read-tree", req.BaseTree); err != nil {
		g.fail(w, err)
		return
	}
	for _, e := range req.Tree {
		if _, err := gitIn(g.bare, nil, env, "update-index", "--add", "--cacheinfo", e.Mode+","+e.SHA+","+e.Path); err != nil {
			g.fail(w, err)
			return
		}
	}
	sha, err := gitIn(g.bare, nil, env, "write-tree")
	if err != nil {
		g.fail(w, err)
		return
	}
	answer(w, 201, map[string]string{"sha": sha})
}

func (g *gitHubAPI) createCommit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Message string
		Tree    string
		Parents []string
		Author  any
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		answer(w, 422, map[string]string{"message": "Invalid request"})
		return
	}
	if req.Author != nil {
		g.t.Errorf("the commit was sent with an author (%v): GitHub would not sign it as the App", req.Author)
	}
	args := []string{"commit-tree", req.Tree}
	for _, p := range req.Parents {
		args = append(args, "-p", p)
	}
	// The App's identity, as GitHub fills it in; the message byte for byte from stdin.
	env := []string{"GIT_AUTHOR_NAME=kropipe[bot]", "GIT_AUTHOR_EMAIL=12345+kropipe[bot]@users.noreply.github.com", "GIT_COMMITTER_NAME=GitHub", "GIT_COMMITTER_EMAIL=noreply@github.com"}
	sha, err := gitIn(g.bare, []byte(req.Message), env, args...)
	if err != nil {
		g.fail(w, err)
		return
	}
	answer(w, 201, map[string]any{"sha": sha, "message": req.Message, "tree": map[string]string{"sha": req.Tree}})
}

func (g *gitHubAPI) hook() {
	g.mu.Lock()
	fn := g.beforeRef
	g.beforeRef = nil
	g.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (g *gitHubAPI) createRef(w http.ResponseWriter, r *http.Request) {
	var req struct{ Ref, SHA string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		answer(w, 422, map[string]string{"message": "Invalid request"})
		return
	}
	g.hook()
	if _, err := gitIn(g.bare, nil, nil, "update-ref", req.Ref, req.SHA, strings.Repeat("0", 40)); err != nil {
		answer(w, 422, map[string]string{"message": "Reference already exists"})
		return
	}
	answer(w, 201, map[string]any{"ref": req.Ref, "object": map[string]string{"type": "commit", "sha": req.SHA}})
}

func (g *gitHubAPI) updateRef(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SHA   string
		Force bool
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		answer(w, 422, map[string]string{"message": "Invalid request"})
		return
	}
	g.hook()
	ref := "refs/heads/" + r.PathValue("branch")
	cur, err := gitIn(g.bare, nil, nil, "rev-parse", "--verify", "-q", ref)
	if err != nil {
		answer(w, 422, map[string]string{"message": "Reference does not exist"})
		return
	}
	if !req.Force {
		if _, err := gitIn(g.bare, nil, nil, "merge-base", "--is-ancestor", cur, req.SHA); err != nil {
			answer(w, 422, map[string]string{"message": "Update is not a fast forward"})
			return
		}
	}
	if _, err := gitIn(g.bare, nil, nil, "update-ref", ref, req.SHA, cur); err != nil {
		g.fail(w, err)
		return
	}
	answer(w, 200, map[string]any{"ref": ref, "object": map[string]string{"type": "commit", "sha": req.SHA}})
}

// commitFile commits content at path on branch of the bare repository as someone else
// would (a person pushing), with the same plumbing.
func commitFile(t testing.TB, bare, branch, path, content, message string) string {
	t.Helper()
	head, err := gitIn(bare, nil, nil, "rev-parse", "refs/heads/"+branch)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := gitIn(bare, nil, nil, "show", "-s", "--format=%T", head)
	if err != nil {
		t.Fatal(err)
	}
	idx := t.TempDir() + "/index"
	env := []string{"GIT_INDEX_FILE=" + idx}
	blob, err := gitIn(bare, []byte(content), nil, "hash-object", "-w", "--stdin")
	if err == nil {
		_, err = gitIn(bare, nil, env, "read-tree", tree)
	}
	if err == nil {
		_, err = gitIn(bare, nil, env, "update-index", "--add", "--cacheinfo", "100644,"+blob+","+path)
	}
	if err == nil {
		tree, err = gitIn(bare, nil, env, "write-tree")
	}
	var commit string
	if err == nil {
		commit, err = gitIn(bare, []byte(message), nil, "commit-tree", tree, "-p", head)
	}
	if err == nil {
		_, err = gitIn(bare, nil, nil, "update-ref", "refs/heads/"+branch, commit, head)
	}
	if err != nil {
		t.Fatal(err)
	}
	return commit
}
