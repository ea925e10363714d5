package warehouse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// listing answers repo's tag list with tags, whatever the registry holds.
func listing(repo string, tags ...string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/"+repo+"/tags/list" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		quoted := make([]string, len(tags))
		for i, t := range tags {
			quoted[i] = fmt.Sprintf("%q", t)
		}
		fmt.Fprintf(w, `{"name":%q,"tags":[%s]}`, repo, strings.Join(quoted, ","))
		return true
	}
}

// The tags a registry (or a proxy in front of it) listed in the field: none may be
// promoted, whatever the strategy.
var invalidTags = []string{"1.99.0+evil", "ÿevil", "zz: [1, 2]", "zzz #comment", `zzz"; replicas: 99`, "-1.0.0", ".hidden", strings.Repeat("a", 129)}

func TestDiscover_InvalidTagsAreNeverCandidates(t *testing.T) {
	for _, strategy := range []string{StrategySemver, StrategyLexical, StrategyNewest} {
		t.Run(strategy, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.push(t, "team/app", testImage(t, t0), "1.2.0")
			reg.setFault(listing("team/app", append([]string{"1.2.0"}, invalidTags...)...))
			var mu sync.Mutex
			seen := map[string]int{}
			w, _ := newTestWarehouse(t, WithInvalidTags(func(image, tag string) {
				mu.Lock()
				defer mu.Unlock()
				seen[tag]++
			}))
			for range 2 {
				f, rep, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{Strategy: strategy})
				if err != nil {
					t.Fatal(err)
				}
				if f.Tag != "1.2.0" {
					t.Fatalf("%s picked %q, want 1.2.0", strategy, f.Tag)
				}
				if !reflect.DeepEqual(rep.Invalid, invalidTags) || rep.Tags != len(invalidTags)+1 {
					t.Errorf("report invalid %q of %d tags, want %q", rep.Invalid, rep.Tags, invalidTags)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, tag := range invalidTags {
				if seen[tag] != 1 {
					t.Errorf("tag %q reported %d times over two polls, want once", tag, seen[tag])
				}
			}
		})
	}
}

func TestValidTag_IsTheDistributionGrammar(t *testing.T) {
	for tag, want := range map[string]bool{
		"1.2.3": true, "v1.2.3-rc.1": true, "_x": true, "latest": true, strings.Repeat("a", 128): true,
		"1.2.3+build": false, "": false, "-x": false, ".x": false, "ä": false, "a b": false, strings.Repeat("a", 129): false, "a\n": false,
	} {
		if got := validTag.MatchString(tag); got != want {
			t.Errorf("validTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestDiscover_ListedTagWithoutManifestIsSkipped(t *testing.T) {
	for _, strategy := range []string{StrategySemver, StrategyLexical} {
		t.Run(strategy, func(t *testing.T) {
			reg := newTestRegistry(t)
			d := reg.push(t, "team/app", testImage(t, t0), "1.0.0")
			// 1.1.0 and 1.0.9 are listed but were never pushed (deleted, or a broken registry).
			reg.setFault(listing("team/app", "1.0.0", "1.1.0", "1.0.9"))
			w, _ := newTestWarehouse(t)
			f, rep, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{Strategy: strategy})
			if err != nil {
				t.Fatalf("a listed tag without manifest must not fail the stage: %v", err)
			}
			if f.Tag != "1.0.0" || f.Digest != d {
				t.Errorf("got %s@%s, want 1.0.0@%s", f.Tag, f.Digest, d)
			}
			if !reflect.DeepEqual(rep.Missing, []string{"1.1.0", "1.0.9"}) || !strings.Contains(rep.String(), "without a manifest, skipped: 1.1.0, 1.0.9") {
				t.Errorf("report %+v (%s) does not name the missing tags", rep, rep)
			}
		})
	}
}

func TestDiscover_ManyMissingManifestsIsANamedError(t *testing.T) {
	reg := newTestRegistry(t)
	var tags []string
	for i := range maxMissing + 2 {
		tags = append(tags, fmt.Sprintf("1.0.%d", i))
	}
	reg.setFault(listing("team/app", tags...))
	w, _ := newTestWarehouse(t)
	_, _, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{})
	if err == nil || !strings.Contains(err.Error(), "listed tags of "+reg.host+"/team/app have no manifest") {
		t.Errorf("error %v, want one naming the image and the missing manifests", err)
	}
}

// wrongDigest makes every manifest HEAD report a digest the registry does not serve.
func wrongDigest(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodHead || !strings.Contains(r.URL.Path, "/manifests/") {
		return false
	}
	w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("e", 64))
	w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	w.Header().Set("Content-Length", "100")
	w.WriteHeader(http.StatusOK)
	return true
}

func TestDiscover_DigestIsTheHashOfTheFetchedManifest(t *testing.T) {
	for _, sel := range []Selection{{}, {Strategy: StrategyDigest, Constraint: "1.2.0"}, {Strategy: StrategyNewest}, {Strategy: StrategyLexical}} {
		t.Run(sel.Strategy, func(t *testing.T) {
			reg := newTestRegistry(t)
			d := reg.push(t, "team/app", testImage(t, t0), "1.2.0")
			reg.setFault(wrongDigest)
			w, _ := newTestWarehouse(t)
			for range 2 {
				f, _, err := w.Discover(context.Background(), reg.host+"/team/app", sel)
				if err != nil {
					t.Fatal(err)
				}
				if f.Digest != d {
					t.Fatalf("digest %s, want %s (the hash of the manifest, not the registry's claim)", f.Digest, d)
				}
			}
			f, err := w.Resolve(context.Background(), reg.host+"/team/app", "1.2.0")
			if err != nil || f.Digest != d {
				t.Errorf("Resolve: %s, %v; want %s", f.Digest, err, d)
			}
		})
	}
}

func TestDiscover_ProvenDigestCostsNoRequestInSteadyState(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/app", testImage(t, t0), "1.2.0")
	w, _ := newTestWarehouse(t)
	image := reg.host + "/team/app"
	if _, _, err := w.Discover(context.Background(), image, Selection{}); err != nil {
		t.Fatal(err)
	}
	reg.resetCount()
	if _, _, err := w.Discover(context.Background(), image, Selection{}); err != nil {
		t.Fatal(err)
	}
	if paths := reg.requestPaths(); len(paths) != 2 {
		t.Errorf("second poll made %d requests %q, want 2 (tag list, HEAD)", len(paths), paths)
	}
	// A pushed-again tag is proven anew: a new manifest read.
	d := reg.push(t, "team/app", testImage(t, t0.Add(time.Hour)), "1.2.0")
	reg.resetCount()
	f, _, err := w.Discover(context.Background(), image, Selection{})
	if err != nil || f.Digest != d {
		t.Fatalf("after re-push: %s, %v; want %s", f.Digest, err, d)
	}
	if n := reg.resetCount(); n != 3 {
		t.Errorf("poll after re-push made %d requests, want 3 (tag list, HEAD, manifest)", n)
	}
}

// hang makes the registry accept requests it never answers, or answer the headers of
// a tag list and never send its body, until the test ends.
func hang(t *testing.T, reg *testRegistry, afterHeaders bool) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			return false
		}
		if afterHeaders {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, `{"name":"team/app","tags":["1.`)
			w.(http.Flusher).Flush()
		}
		<-stop
		return true
	})
}

func TestDiscover_HungRegistryFailsAfterTheRequestTimeout(t *testing.T) {
	for _, afterHeaders := range []bool{false, true} {
		t.Run(fmt.Sprintf("after-headers=%v", afterHeaders), func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.push(t, "team/app", testImage(t, t0), "1.2.0")
			hang(t, reg, afterHeaders)
			w, _ := newTestWarehouse(t, WithRequestTimeout(300*time.Millisecond))
			start := time.Now()
			_, _, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{})
			var slow errRequestTimeout
			if !errors.As(err, &slow) || !strings.Contains(err.Error(), "did not answer within 300ms") {
				t.Fatalf("error %v, want the request timeout named", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}
