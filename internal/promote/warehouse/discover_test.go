package warehouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestDiscover_TagStrategies(t *testing.T) {
	reg := newTestRegistry(t)
	img := testImage(t, t0)
	tests := []struct {
		name    string
		tags    []string
		sel     Selection
		skip    []string
		want    string // tag; empty means ErrNoMatch
		wantErr []string
	}{
		{name: "SemverPicksHighestWithinCaret", tags: []string{"1.2.1", "1.2.2", "1.3.0", "2.0.0"},
			sel: Selection{Constraint: "^1.2"}, want: "1.3.0"},
		{name: "SemverTildeStaysOnMinor", tags: []string{"1.2.1", "1.2.2", "1.3.0"},
			sel: Selection{Strategy: "semver", Constraint: "~1.2"}, want: "1.2.2"},
		{name: "SemverSkipsPrereleaseUnlessAsked", tags: []string{"1.2.2", "1.2.3-rc.1"},
			sel: Selection{Constraint: "^1.2"}, want: "1.2.2"},
		{name: "SemverTakesPrereleaseWhenConstraintAsks", tags: []string{"1.2.2", "1.2.3-rc.1"},
			sel: Selection{Constraint: ">=1.2.3-0"}, want: "1.2.3-rc.1"},
		{name: "SemverWithoutConstraintSkipsPrerelease", tags: []string{"1.0.0", "2.0.0-beta.1"},
			sel: Selection{}, want: "1.0.0"},
		{name: "SemverAcceptsVPrefix", tags: []string{"1.2.2", "v1.2.3"},
			sel: Selection{Constraint: "^1.2"}, want: "v1.2.3"},
		{name: "SemverIgnoresNonSemverTags", tags: []string{"latest", "2024", "3.1", "sha-abc", "1.0.0"},
			sel: Selection{}, want: "1.0.0"},
		{name: "IgnoreTagsDropsMatches", tags: []string{"1.2.2", "1.3.0"},
			sel: Selection{IgnoreTags: `^1\.3\.`}, want: "1.2.2"},
		{name: "AllowTagsKeepsOnlyMatches", tags: []string{"1.2.2-alpine", "1.2.3", "1.2.4-alpine"},
			sel: Selection{Constraint: ">=1.0.0-0", AllowTags: `-alpine$`}, want: "1.2.4-alpine"},
		{name: "SkippedTagIsNotChosen", tags: []string{"1.2.1", "1.2.2"},
			sel: Selection{Constraint: "^1.2"}, skip: []string{"1.2.2"}, want: "1.2.1"},
		{name: "LexicalPicksLastString", tags: []string{"build-009", "build-010", "build-002"},
			sel: Selection{Strategy: "lexical"}, want: "build-010"},
		{name: "NoMatchNamesHighestSeen", tags: []string{"1.2.1", "2.0.0"},
			sel:     Selection{Constraint: "^3"},
			wantErr: []string{"no tag of", "/team/nomatch matches semver ^3", "2 tags listed", "highest seen 2.0.0", "push a matching tag"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := fmt.Sprintf("team/app%d", i)
			if tt.wantErr != nil {
				repo = "team/nomatch"
			}
			digest := reg.push(t, repo, img, tt.tags...)
			w, _ := newTestWarehouse(t)
			f, rep, err := w.Discover(context.Background(), reg.host+"/"+repo, tt.sel, tt.skip...)
			if tt.wantErr != nil {
				if !errors.Is(err, ErrNoMatch) {
					t.Fatalf("err = %v, want ErrNoMatch", err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if f.Tag != tt.want || f.Digest != digest || f.Image != reg.host+"/"+repo {
				t.Errorf("got %s, want %s/%s:%s@%s", f.Ref(), reg.host, repo, tt.want, digest)
			}
			if !f.DiscoveredAt.Equal(t0) {
				t.Errorf("DiscoveredAt = %v, want the clock's %v", f.DiscoveredAt, t0)
			}
			if rep.Tags != len(tt.tags) {
				t.Errorf("report %q: Tags = %d, want %d", rep, rep.Tags, len(tt.tags))
			}
		})
	}
}

func TestDiscover_NewestPicksLatestBuild(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/svc", testImage(t, t0.Add(1*time.Hour)), "sha-b")
	newest := reg.push(t, "team/svc", testImage(t, t0.Add(3*time.Hour)), "sha-a")
	reg.push(t, "team/svc", testImage(t, t0.Add(2*time.Hour)), "sha-c")
	w, _ := newTestWarehouse(t)
	f, rep, err := w.Discover(context.Background(), reg.host+"/team/svc", Selection{Strategy: "newest"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Tag != "sha-a" || f.Digest != newest {
		t.Errorf("got %s, want sha-a@%s", f.Ref(), newest)
	}
	if rep.Candidates != 3 {
		t.Errorf("report %q: want 3 candidates", rep)
	}
}

func TestDiscover_NewestSecondPassReadsNoConfigs(t *testing.T) {
	reg := newTestRegistry(t)
	for i := range 5 {
		reg.push(t, "team/svc", testImage(t, t0.Add(time.Duration(i)*time.Hour)), fmt.Sprintf("build-%d", i))
	}
	w, _ := newTestWarehouse(t)
	ctx := context.Background()
	image := reg.host + "/team/svc"
	reg.resetCount()
	if _, _, err := w.Discover(ctx, image, Selection{Strategy: "newest"}); err != nil {
		t.Fatal(err)
	}
	first := reg.resetCount()
	f, _, err := w.Discover(ctx, image, Selection{Strategy: "newest"})
	if err != nil {
		t.Fatal(err)
	}
	paths := reg.requestPaths()
	second := reg.resetCount()
	if f.Tag != "build-4" {
		t.Errorf("got %s, want build-4", f.Tag)
	}
	// Second pass: one tag list and one HEAD of the winner, no manifest or blob GETs.
	if second != 2 {
		t.Errorf("second pass made %d requests (%v), want 2: list + HEAD of the winner", second, paths)
	}
	for _, p := range paths {
		if strings.Contains(p, "/blobs/") {
			t.Errorf("second pass read a config blob: %s", p)
		}
	}
	// First pass: ping, list, 5 × (manifest + config), HEAD of the winner.
	if first < 12 {
		t.Errorf("first pass made %d requests, want at least 12", first)
	}

	// One new tag costs its manifest and config only.
	reg.push(t, "team/svc", testImage(t, t0.Add(10*time.Hour)), "build-9")
	reg.resetCount()
	f, _, err = w.Discover(ctx, image, Selection{Strategy: "newest"})
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.resetCount(); f.Tag != "build-9" || got != 4 {
		t.Errorf("after a push: got %s with %d requests, want build-9 with 4 (list, manifest, config, HEAD)", f.Tag, got)
	}
}

func TestDiscover_NewestNoticesMovedWinner(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/svc", testImage(t, t0.Add(3*time.Hour)), "main")
	reg.push(t, "team/svc", testImage(t, t0.Add(2*time.Hour)), "release")
	w, _ := newTestWarehouse(t)
	ctx := context.Background()
	image := reg.host + "/team/svc"
	if f, _, err := w.Discover(ctx, image, Selection{Strategy: "newest"}); err != nil || f.Tag != "main" {
		t.Fatalf("first pass: %v, %v", f, err)
	}
	// main is pushed again with an old build: release must win now, not the cached main.
	reg.push(t, "team/svc", testImage(t, t0), "main")
	f, _, err := w.Discover(ctx, image, Selection{Strategy: "newest"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Tag != "release" {
		t.Errorf("got %s, want release after main moved to an older build", f.Ref())
	}
}

func TestDiscover_NewestReadsConfiguredPlatformOfIndex(t *testing.T) {
	reg := newTestRegistry(t)
	idx := reg.pushIndex(t, "team/multi", "multi", map[string]time.Time{
		"linux/amd64": t0.Add(1 * time.Hour),
		"linux/arm64": t0.Add(3 * time.Hour),
	})
	reg.push(t, "team/multi", testImage(t, t0.Add(2*time.Hour)), "single")
	tests := []struct {
		platform string
		want     string
	}{
		{"linux/arm64", "multi"},
		{"linux/amd64", "single"},
		{"", "single"}, // default linux/amd64
	}
	for _, tt := range tests {
		t.Run("platform="+tt.platform, func(t *testing.T) {
			w, _ := newTestWarehouse(t)
			f, _, err := w.Discover(context.Background(), reg.host+"/team/multi", Selection{Strategy: "newest", Platform: tt.platform})
			if err != nil {
				t.Fatal(err)
			}
			if f.Tag != tt.want {
				t.Errorf("got %s, want %s", f.Tag, tt.want)
			}
			if f.Tag == "multi" && f.Digest != idx {
				t.Errorf("digest %s, want the index digest %s so every platform stays pinned", f.Digest, idx)
			}
		})
	}
}

func TestDiscover_DigestFollowsMutableTag(t *testing.T) {
	reg := newTestRegistry(t)
	w, _ := newTestWarehouse(t)
	ctx := context.Background()
	image := reg.host + "/team/edge"
	d1 := reg.push(t, "team/edge", testImage(t, t0), "latest", "1.0.0")
	f1, rep, err := w.Discover(ctx, image, Selection{Strategy: "digest"})
	if err != nil {
		t.Fatal(err)
	}
	if f1.Tag != "latest" || f1.Digest != d1 || f1.Value(StrategyDigest) != d1 {
		t.Errorf("got %s (value %s), want latest@%s", f1.Ref(), f1.Value(StrategyDigest), d1)
	}
	if rep.Constraint != "latest" {
		t.Errorf("report constraint %q, want latest (the default)", rep.Constraint)
	}
	d2 := reg.push(t, "team/edge", testImage(t, t0.Add(time.Hour)), "latest")
	f2, _, err := w.Discover(ctx, image, Selection{Strategy: "digest", Constraint: "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if f2.Digest != d2 || f2.ID() == f1.ID() {
		t.Errorf("after push: %s (id %s), want digest %s and a new id", f2.Ref(), f2.ID(), d2)
	}
	// A rejected digest is not offered again.
	_, _, err = w.Discover(ctx, image, Selection{Strategy: "digest"}, d2)
	if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("skipped digest: err = %v, want ErrNoMatch naming the rejection", err)
	}
}

// paginate answers tag lists itself, n tags a page with an OCI Link header, as
// registries such as distribution do (the in-memory registry sends no Link).
func paginate(reg *testRegistry, repo string, all []string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/"+repo+"/tags/list" {
			return false
		}
		n := 10
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		last := r.URL.Query().Get("last")
		start := 0
		for i, t := range all {
			if t == last {
				start = i + 1
			}
		}
		end := min(start+n, len(all))
		page := all[start:end]
		if end < len(all) {
			q := url.Values{"n": {fmt.Sprint(n)}, "last": {page[len(page)-1]}}
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, repo, q.Encode()))
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":%q,"tags":["%s"]}`, repo, strings.Join(page, `","`))
		return true
	}
}

func TestDiscover_FollowsTagListPages(t *testing.T) {
	reg := newTestRegistry(t)
	var tags []string
	for i := range 35 {
		tags = append(tags, fmt.Sprintf("1.0.%d", i))
	}
	reg.push(t, "team/paged", testImage(t, t0), "1.0.34")
	reg.setFault(paginate(reg, "team/paged", tags))
	w, _ := newTestWarehouse(t, WithPageSize(10))
	reg.resetCount()
	f, rep, err := w.Discover(context.Background(), reg.host+"/team/paged", Selection{Constraint: "^1"})
	if err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, p := range reg.requestPaths() {
		if strings.HasSuffix(p, "/tags/list") {
			lists++
		}
	}
	if f.Tag != "1.0.34" || rep.Tags != 35 || lists != 4 {
		t.Errorf("got %s from %d tags in %d list requests, want 1.0.34 from 35 tags in 4 pages", f.Tag, rep.Tags, lists)
	}
}

func TestResolve_MissingTagIsClearError(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push(t, "team/frontend", testImage(t, t0), "1.2.2")
	w, _ := newTestWarehouse(t)
	ctx := context.Background()
	image := reg.host + "/team/frontend"

	f, err := w.Resolve(ctx, image, "1.2.2")
	if err != nil || f.Digest != d || f.Ref() != image+":1.2.2@"+d {
		t.Fatalf("Resolve existing: %v, %v", f, err)
	}
	_, err = w.Resolve(ctx, image, "1.9.9")
	if !errors.Is(err, ErrTagNotFound) {
		t.Fatalf("err = %v, want ErrTagNotFound", err)
	}
	if want := "tag 1.9.9 not found in " + image; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if _, err := w.Resolve(ctx, image, "bad tag!"); err == nil || !strings.Contains(err.Error(), `tag "bad tag!"`) {
		t.Errorf("invalid tag: err = %v", err)
	}
}

func TestDiscover_BadImageNameSaysWhatToWrite(t *testing.T) {
	w, _ := newTestWarehouse(t)
	for _, image := range []string{"127.0.0.1:5000/team/frontend:1.2.2", "UPPER/case", ""} {
		_, _, err := w.Discover(context.Background(), image, Selection{})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("image %q", image)) || !strings.Contains(err.Error(), "write host/path") {
			t.Errorf("image %q: err = %v", image, err)
		}
	}
}

func TestSelection_ValidateNamesTheField(t *testing.T) {
	tests := []struct {
		sel  Selection
		want string // empty: valid
	}{
		{Selection{}, ""},
		{Selection{Strategy: "semver", Constraint: "^1.2", AllowTags: `^1\.`, IgnoreTags: "rc", Platform: "linux/arm64/v8"}, ""},
		{Selection{Strategy: "digest"}, ""},
		{Selection{Strategy: "digest", Constraint: "main"}, ""},
		{Selection{Strategy: "newest"}, ""},
		{Selection{Strategy: "foo"}, `strategy "foo" is unknown: use semver, lexical, newest or digest`},
		{Selection{Constraint: "^1.x.y"}, `constraint "^1.x.y": `},
		{Selection{Constraint: "banana"}, `constraint "banana": `},
		{Selection{Strategy: "lexical", Constraint: "^1"}, `constraint "^1": strategy lexical takes no constraint`},
		{Selection{Strategy: "digest", Constraint: "^1"}, `constraint "^1": the digest strategy follows one tag`},
		{Selection{AllowTags: "("}, `allowTags: invalid regex "("`},
		{Selection{IgnoreTags: "[a"}, `ignoreTags: invalid regex "[a"`},
		{Selection{Platform: "linux"}, `platform "linux": write os/arch`},
		{Selection{Platform: "a/b/c/d"}, `platform "a/b/c/d"`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.sel), func(t *testing.T) {
			err := tt.sel.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestReport_StringIsASentence(t *testing.T) {
	r := Report{Image: "r/x", Strategy: "semver", Constraint: "^1.2", Tags: 42, Filtered: 3, Candidates: 0, Highest: "2.0.0"}
	want := "42 tags in r/x, 3 filtered out by allowTags/ignoreTags/rejected, 0 match semver ^1.2 (highest seen 2.0.0)"
	if r.String() != want {
		t.Errorf("got %q\nwant %q", r, want)
	}
}

func TestDiscover_UnknownRepositorySaysCheckTheName(t *testing.T) {
	reg := newTestRegistry(t)
	w, _ := newTestWarehouse(t)
	_, _, err := w.Discover(context.Background(), reg.host+"/team/typo", Selection{})
	if err == nil || !strings.Contains(err.Error(), "repository not found in registry "+reg.host) || !strings.Contains(err.Error(), "check the image name") {
		t.Errorf("err = %v", err)
	}
}

func TestDiscover_ReportCountsFilteredAndCandidates(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/app", testImage(t, t0), "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest", "1.1.0-debug")
	w, _ := newTestWarehouse(t)
	_, rep, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{Constraint: "^1", IgnoreTags: "-debug$"}, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	// 6 listed; 1.1.0-debug ignored and 1.1.0 skipped; of 1.0.0, 1.2.0-rc.1, 2.0.0, latest only 1.0.0 fits ^1.
	want := Report{Image: reg.host + "/team/app", Strategy: "semver", Constraint: "^1", Tags: 6, Filtered: 2, Candidates: 1, Highest: "2.0.0"}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("report\n%+v\nwant\n%+v", rep, want)
	}
}

func TestDiscover_CancelledContextStopsRetryWait(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/app", testImage(t, t0), "1.0.0")
	w, _ := New(WithKeychain(anonymous)) // real clock: the wait would be a minute
	reg.setFault(func(rw http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/tags/list") {
			rw.Header().Set("Retry-After", "60")
			rw.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the first 429 has been answered.
		for !slicesContainsSuffix(reg.requestPaths(), "/tags/list") {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, _, err := w.Discover(ctx, reg.host+"/team/app", Selection{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func slicesContainsSuffix(paths []string, suffix string) bool {
	for _, p := range paths {
		if strings.HasSuffix(p, suffix) {
			return true
		}
	}
	return false
}

// artifact is a manifest whose config is not an image config, as Helm charts,
// SBOMs and signatures pushed under tags are.
type artifact struct{ config []byte }

func (a artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a artifact) RawManifest() ([]byte, error) {
	h, size, err := v1.SHA256(bytes.NewReader(a.config))
	if err != nil {
		return nil, err
	}
	return json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: "application/vnd.example.not-an-image", Size: size, Digest: h},
		Layers:        []v1.Descriptor{},
	})
}
func (a artifact) LayerByDigest(v1.Hash) (partial.CompressedLayer, error) {
	return nil, errors.New("no layers")
}

func TestDiscover_NewestSkipsTagsThatAreNotImages(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/svc", testImage(t, t0.Add(time.Hour)), "build-1")
	odd, err := partial.CompressedToImage(artifact{config: []byte("this is not JSON")})
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "team/svc", odd, "chart-9")
	w, _ := newTestWarehouse(t)
	f, rep, err := w.Discover(context.Background(), reg.host+"/team/svc", Selection{Strategy: "newest"})
	if err != nil || f.Tag != "build-1" || rep.Candidates != 1 {
		t.Errorf("got %v, %q, %v; want build-1 as the only candidate", f, rep, err)
	}
}
