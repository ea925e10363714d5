package stack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The helpers the pull-request tests build on, against the real Gitea: a human reviewer
// merges and closes what the bot opened, a required check gates the merge, and the fault
// proxy makes the API (not Git) answer 503 for a while.
func TestGitea_HelpersDriveARealForge(t *testing.T) {
	g := StartGitea(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := g.Admin
	if addrs := listening(t, g.Process.cmd.Process.Pid); len(addrs) == 0 || len(addrs) != strings.Count(strings.Join(addrs, " "), "127.0.0.1:") {
		t.Errorf("Gitea listens on %v, want 127.0.0.1 only", addrs)
	}

	repo, err := admin.CreateRepo(ctx, "gitops", map[string]string{"develop/frontend/instance.yaml": "tag: \"1.2.1\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	if repo != "kropipe/gitops" {
		t.Fatalf("repository %q, want kropipe/gitops", repo)
	}
	alice, err := g.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.AddCollaborator(ctx, repo, alice.Login, "write"); err != nil {
		t.Fatal(err)
	}
	if err := admin.ProtectBranch(ctx, repo, "main", "ci"); err != nil {
		t.Fatal(err)
	}

	hooks := make(chan string, 100)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte("hook-secret"))
		mac.Write(body)
		var ev struct{ Action string }
		_ = json.Unmarshal(body, &ev)
		signed := hex.EncodeToString(mac.Sum(nil)) == r.Header.Get("X-Gitea-Signature")
		hooks <- fmt.Sprintf("%s %s signed=%v", r.Header.Get("X-Gitea-Event"), ev.Action, signed)
	}))
	defer receiver.Close()
	if err := admin.CreateWebhook(ctx, repo, receiver.URL, "hook-secret", "pull_request"); err != nil {
		t.Fatal(err)
	}

	head, err := admin.PushFiles(ctx, repo, "kropipe/develop", "main", map[string]string{"develop/frontend/instance.yaml": "tag: \"1.2.2\"\n"}, "Promote image from 1.2.1 to 1.2.2")
	if err != nil {
		t.Fatal(err)
	}
	pr, err := admin.CreatePullRequest(ctx, repo, "kropipe/develop", "main", "Promote image from 1.2.1 to 1.2.2", "body")
	if err != nil {
		t.Fatal(err)
	}
	if pr.Head.SHA != head || pr.State != "open" {
		t.Fatalf("new pull request: head %s state %s, want %s open", pr.Head.SHA, pr.State, head)
	}

	// The required check has not passed: Gitea refuses the human's merge.
	err = alice.MergePullRequest(ctx, repo, pr.Number, "merge", "")
	var ge *GiteaError
	if !errors.As(err, &ge) || ge.Status/100 != 4 {
		t.Fatalf("merge before the required check passed: %v, want a 4xx refusal", err)
	}
	if err := admin.SetCommitStatus(ctx, repo, head, "ci", "success"); err != nil {
		t.Fatal(err)
	}
	if err := alice.MergePullRequest(ctx, repo, pr.Number, "squash", "Promote image from 1.2.1 to 1.2.2\n\nsquashed by alice"); err != nil {
		t.Fatal(err)
	}
	merged, err := alice.PullRequest(ctx, repo, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if !merged.Merged || merged.MergedBy == nil || merged.MergedBy.Login != "alice" || merged.MergeCommitSHA == "" {
		t.Fatalf("after alice's merge: merged %v by %+v commit %q", merged.Merged, merged.MergedBy, merged.MergeCommitSHA)
	}
	if on, err := admin.IsAncestor(ctx, repo, merged.MergeCommitSHA, "main"); err != nil || !on {
		t.Fatalf("merge commit %s on main: %v %v", merged.MergeCommitSHA, on, err)
	}
	if on, err := admin.IsAncestor(ctx, repo, head, "main"); err != nil || on {
		t.Fatalf("squashed head %s on main: %v %v, want not on it", head, on, err)
	}

	// A second one, closed unmerged with a comment.
	if _, err := admin.PushFiles(ctx, repo, "kropipe/staging", "main", map[string]string{"staging.yaml": "x\n"}, "Promote staging"); err != nil {
		t.Fatal(err)
	}
	pr2, err := admin.CreatePullRequest(ctx, repo, "kropipe/staging", "main", "Promote staging", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.ClosePullRequest(ctx, repo, pr2.Number, "not now"); err != nil {
		t.Fatal(err)
	}
	prs, err := admin.PullRequests(ctx, repo, "all")
	if err != nil {
		t.Fatal(err)
	}
	states := map[int]string{}
	for _, p := range prs {
		states[p.Number] = p.State
		if p.Merged {
			states[p.Number] = "merged"
		}
	}
	if states[pr.Number] != "merged" || states[pr2.Number] != "closed" || len(states) != 2 {
		t.Fatalf("pull requests: %v, want #%d merged and #%d closed", states, pr.Number, pr2.Number)
	}
	if cs, err := admin.Comments(ctx, repo, pr2.Number); err != nil || len(cs) != 1 || cs[0] != "not now" {
		t.Fatalf("comments on #%d: %q %v", pr2.Number, cs, err)
	}
	// The webhook told of the two openings, the merge and the close ("closed" for both: the
	// payload's pull_request.merged tells them apart).
	want := map[string]int{"pull_request opened signed=true": 2, "pull_request closed signed=true": 2}
	got := map[string]int{}
	for timeout := time.After(30 * time.Second); len(got) < 2 || got["pull_request closed signed=true"] < 2; {
		select {
		case h := <-hooks:
			got[h]++
		case <-timeout:
			t.Fatalf("webhook deliveries after 30 s: %v, want %v", got, want)
		}
	}

	// The fault proxy: the API answers 503 while Git over HTTP still passes.
	proxy, err := StartFaultProxy(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.FailFor(time.Minute, http.StatusServiceUnavailable, GiteaAPI)
	for _, c := range []struct {
		path string
		want int
	}{
		{"/api/v1/version", http.StatusServiceUnavailable},
		{"/" + repo + ".git/info/refs?service=git-upload-pack", http.StatusOK},
	} {
		resp, err := http.Get(proxy.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s through the failing proxy: %d, want %d", c.path, resp.StatusCode, c.want)
		}
	}
	proxy.Heal()
	resp, err := http.Get(proxy.URL + "/api/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/version after Heal: %d, want 200", resp.StatusCode)
	}
	if passed, injected := proxy.Counts(); passed != 2 || injected != 1 {
		t.Errorf("proxy counts: %d passed, %d injected; want 2 and 1", passed, injected)
	}
}

// FailNext and FailFor end by themselves.
func TestFaultProxy_FailuresEndByThemselves(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	p, err := StartFaultProxy("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	get := func() int {
		resp, err := http.Get(p.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	p.FailNext(2, http.StatusBadGateway, nil)
	if got := []int{get(), get(), get()}; got[0] != 502 || got[1] != 502 || got[2] != 204 {
		t.Errorf("FailNext(2): %v, want [502 502 204]", got)
	}
	p.FailFor(-time.Second, http.StatusServiceUnavailable, nil) // already over
	if got := get(); got != 204 {
		t.Errorf("FailFor after its end: %d, want 204", got)
	}
}

// listening lists the TCP addresses process pid listens on (IPv4 as a.b.c.d:port, IPv6 as
// hex), from its socket descriptors and the kernel's socket tables.
func listening(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			host, port, _ := strings.Cut(f[1], ":")
			p, _ := strconv.ParseUint(port, 16, 16)
			if len(host) == 8 {
				v, _ := strconv.ParseUint(host, 16, 32) // little-endian
				host = fmt.Sprintf("%d.%d.%d.%d", v&0xff, v>>8&0xff, v>>16&0xff, v>>24)
			}
			addrs = append(addrs, fmt.Sprintf("%s:%d", host, p))
		}
	}
	return addrs
}
