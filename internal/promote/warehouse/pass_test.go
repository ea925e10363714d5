package warehouse

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/registrytest"
)

// go-containerregistry asks for the auth challenge (GET /v2/) once per repository it
// opens; the warehouse asks each registry host once, however many repositories it reads.
func TestDiscover_PingsEachRegistryHostOnce(t *testing.T) {
	tr := newTestRegistry(t)
	for _, repo := range []string{"team/a", "team/b", "team/c"} {
		tr.push(t, repo, testImage(t, t0), "1.0.0")
	}
	w, _ := newTestWarehouse(t, WithRegistry(tr.host, RegistryConfig{Insecure: true, RateLimit: -1}))
	tr.resetCount()
	for _, repo := range []string{"team/a", "team/b", "team/c"} {
		if _, _, err := w.Discover(context.Background(), tr.host+"/"+repo, Selection{}); err != nil {
			t.Fatal(err)
		}
	}
	pings := 0
	for _, p := range tr.requestPaths() {
		if p == "GET /v2/" {
			pings++
		}
	}
	if pings != 1 {
		t.Fatalf("%d pings for three repositories of one registry, want 1: %q", pings, tr.requestPaths())
	}
}

// The remembered challenge still leads to authenticated requests: a private registry's
// repositories are all read with the credentials.
func TestDiscover_RememberedChallengeAuthenticatesEveryRepository(t *testing.T) {
	reg := registrytest.StartPrivate(t, "robot", "secret")
	reg.Push(t, "team/a", "1.0.0")
	reg.Push(t, "team/b", "2.0.0")
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, reg.DockerConfigJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := KeychainFromDockerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := newTestWarehouse(t, WithKeychain(kc), WithRegistry(reg.Host, RegistryConfig{Insecure: true, RateLimit: -1}))
	look := w.NewPass()
	for repo, want := range map[string]string{"team/a": "1.0.0", "team/b": "2.0.0"} {
		f, _, err := look.Discover(context.Background(), reg.Host+"/"+repo, Selection{})
		if err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
		if f.Tag != want {
			t.Fatalf("%s: tag %s, want %s", repo, f.Tag, want)
		}
	}
}

// Within a pass a repository is listed once and a tag resolved once, whatever the
// selections; the next pass lists again but takes the digest it proved before.
func TestPass_SharesTagListsAndKnownDigests(t *testing.T) {
	tr := newTestRegistry(t)
	digest := tr.push(t, "team/a", testImage(t, t0), "1.2.0")
	w, _ := newTestWarehouse(t, WithRegistry(tr.host, RegistryConfig{Insecure: true, RateLimit: -1}))
	image := tr.host + "/team/a"
	sels := []Selection{{}, {Constraint: "^1.2"}, {Strategy: StrategyLexical}}
	var perPass [][]string
	for range 2 {
		tr.resetCount()
		look := w.NewPass()
		for _, sel := range sels {
			f, _, err := look.Discover(context.Background(), image, sel)
			if err != nil {
				t.Fatal(err)
			}
			if f.Tag != "1.2.0" || f.Digest != digest {
				t.Fatalf("%+v: got %s@%s, want 1.2.0@%s", sel, f.Tag, f.Digest, digest)
			}
		}
		perPass = append(perPass, tr.requestPaths())
	}
	// A tag never proven is read once, its manifest straight away (no HEAD first).
	first := []string{"GET /v2/", "GET /v2/team/a/tags/list", "GET /v2/team/a/manifests/1.2.0"}
	if !slices.Equal(perPass[0], first) {
		t.Errorf("first pass: %q, want %q", perPass[0], first)
	}
	if want := []string{"GET /v2/team/a/tags/list"}; !slices.Equal(perPass[1], want) {
		t.Errorf("second pass: %q, want %q", perPass[1], want)
	}

	// Right before writing the engine re-checks its candidate with Pass.Resolve: a digest
	// only an earlier pass proved costs a HEAD, a tag this pass read costs nothing more.
	newer := tr.push(t, "team/a", testImage(t, t0.Add(time.Hour)), "1.3.0")
	for _, tt := range []struct {
		tag  string
		want []string
	}{
		{"1.3.0", []string{"GET /v2/team/a/tags/list", "GET /v2/team/a/manifests/1.3.0"}},  // new: read by this pass
		{"1.3.0", []string{"GET /v2/team/a/tags/list", "HEAD /v2/team/a/manifests/1.3.0"}}, // proven by the pass before
	} {
		tr.resetCount()
		look := w.NewPass()
		if f, _, err := look.Discover(context.Background(), image, Selection{}); err != nil || f.Digest != newer {
			t.Fatalf("discover: %+v, %v; want 1.3.0@%s", f, err, newer)
		}
		if _, err := look.Resolve(context.Background(), image, tt.tag); err != nil {
			t.Fatal(err)
		}
		if got := tr.requestPaths(); !slices.Equal(got, tt.want) {
			t.Errorf("discover, then re-check %s: %q, want %q", tt.tag, got, tt.want)
		}
	}
}

// With WithDigestFile the digests proven by one process serve the next: a restarted
// promoter (run --once from cron) lists the tags and reads no manifest it proved before,
// and a file it cannot read only costs those reads.
func TestWithDigestFile_ProvenDigestsOutliveTheProcess(t *testing.T) {
	tr := newTestRegistry(t)
	digest := tr.push(t, "team/a", testImage(t, t0), "1.2.0")
	image := tr.host + "/team/a"
	file := filepath.Join(t.TempDir(), "digests.json")
	pass := func() []string {
		t.Helper()
		w, _ := newTestWarehouse(t, WithRegistry(tr.host, RegistryConfig{Insecure: true, RateLimit: -1}), WithDigestFile(file))
		tr.resetCount()
		look := w.NewPass()
		f, _, err := look.Discover(context.Background(), image, Selection{})
		if err != nil || f.Digest != digest {
			t.Fatalf("discover: %+v, %v; want 1.2.0@%s", f, err, digest)
		}
		look.Done()
		return tr.requestPaths()
	}
	withManifest := []string{"GET /v2/", "GET /v2/team/a/tags/list", "GET /v2/team/a/manifests/1.2.0"}
	if got := pass(); !slices.Equal(got, withManifest) {
		t.Errorf("first process: %q, want %q", got, withManifest)
	}
	if got, want := pass(), []string{"GET /v2/", "GET /v2/team/a/tags/list"}; !slices.Equal(got, want) {
		t.Errorf("next process: %q, want %q", got, want)
	}
	if err := os.WriteFile(file, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := pass(); !slices.Equal(got, withManifest) {
		t.Errorf("after a corrupt file: %q, want %q", got, withManifest)
	}
}
