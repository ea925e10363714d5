package promoter_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/e2e/stack"
)

func TestPromoterOnce_PromotesFromDockerRegistryIntoGit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := st.Binaries.Promoter
	cfgPath := localSetup(t, ctx, "local")
	for _, tag := range []string{"1.2.1", "1.2.2", "2.0.0"} {
		pushImage(t, st.RegistryAddr, "local/frontend", tag)
	}
	run := exec.CommandContext(ctx, bin, "run", "--once", "--config", cfgPath, "--data-dir", t.TempDir())
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("promoter run --once: %v\n%s", err, out)
	}

	check, err := st.Git.Clone(ctx, "local", filepath.Join(t.TempDir(), "check"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := check.ReadFile("develop/frontend/instance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `tag: "1.2.2"`) || !strings.Contains(string(data), "# bumped by the promoter") {
		t.Fatalf("instance.yaml after the pass:\n%s\npromoter output:\n%s", data, out)
	}
	subject := lastSubject(t, check)
	if subject != "Promote image from 1.2.1 to 1.2.2" {
		t.Fatalf("last commit subject = %q", subject)
	}
}

// localSetup serves examples/gitops as repository name and writes a promoter.yaml whose one
// stage, develop-frontend, watches <registry>/<name>/frontend.
func localSetup(t *testing.T, ctx context.Context, name string) (cfgPath string) {
	t.Helper()
	if err := st.Git.CreateRepo(ctx, name); err != nil {
		t.Fatal(err)
	}
	co, err := st.Git.Clone(ctx, name, filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	if err := co.CopyTree(filepath.Join(repoRoot, "examples", "gitops"), "."); err != nil {
		t.Fatal(err)
	}
	if _, err := co.CommitAndPush(ctx, "Seed from examples/gitops"); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`git:
  url: %s
  branch: main
  author: {name: kropipe, email: kropipe@example.com}
registries:
  - host: %s
    insecure: true
stages:
  - name: develop-frontend
    image: %s/%s/frontend
    strategy: semver
    constraint: "^1.2"
    file: develop/frontend/instance.yaml
`, st.Git.RepoURL(name), st.RegistryAddr, st.RegistryAddr, name)
	cfgPath = filepath.Join(t.TempDir(), "promoter.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// The distribution registry notifies the promoter of every push (notifications endpoint with the
// shared secret); with an hour between polls, the pushed tag is still committed at once.
func TestPromoterRun_RegistryNotificationPromotesAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfgPath := localSetup(t, ctx, "notified")
	pushImage(t, st.RegistryAddr, "notified/frontend", "1.2.1")
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(webhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := stack.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	p, err := st.Run("promoter-run", st.Binaries.Promoter, []string{"run", "--config", cfgPath, "--data-dir", t.TempDir(),
		"--interval", "1h", "--addr", apiAddr, "--webhook-addr", webhookAddr, "--webhook-secret-file", secretFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(httpGet("http://"+apiAddr+"/api/v1/stages/develop-frontend"), `"up-to-date"`) {
		if exited, err := p.Exited(); exited || time.Now().After(deadline) {
			t.Fatalf("promoter run never reported develop-frontend up to date (exited %v: %v)\n%s", exited, err, p.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}

	pushed := time.Now()
	pushImage(t, st.RegistryAddr, "notified/frontend", "1.2.2")
	check, err := st.Git.Clone(ctx, "notified", filepath.Join(t.TempDir(), "check"))
	if err != nil {
		t.Fatal(err)
	}
	for lastSubject(t, check) != "Promote image from 1.2.1 to 1.2.2" {
		if time.Since(pushed) > 2*time.Minute {
			t.Fatalf("no promotion 2 minutes after the push (poll interval 1h); promoter log:\n%s", p.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
		if err := check.Pull(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("push → notification → commit in %s (poll interval 1h)", time.Since(pushed).Round(10*time.Millisecond))
}

func httpGet(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// lastSubject returns the subject of the checkout's last commit.
func lastSubject(t *testing.T, co *stack.Checkout) string {
	t.Helper()
	cmd := exec.Command("git", "log", "-1", "--format=%s")
	cmd.Dir = co.Dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// pushImage uploads a minimal image (an empty config and one tiny layer) with the OCI
// distribution API, as a CI pipeline's push would.
func pushImage(t testing.TB, registry, repo, tag string) {
	t.Helper()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z","config":{"Labels":{"tag":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, tag))
	cfgDigest := uploadBlob(t, registry, repo, config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": len(config)},
		"layers":        []any{},
	})
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/%s", registry, repo, tag), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest %s:%s: %s", repo, tag, resp.Status)
	}
}

func uploadBlob(t testing.TB, registry, repo string, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp, err := http.Post(fmt.Sprintf("http://%s/v2/%s/blobs/uploads/", registry, repo), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: %s", resp.Status)
	}
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + registry + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+digest, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload blob: %s", resp.Status)
	}
	return digest
}
