package faults

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRegistryFaults_NeverWriteWhatTheRegistryDidNotProve runs `run --once` against a
// registry misbehaving in each way the field has seen. Recoverable faults end in the
// right promotion (with the digest of the manifest actually served); the others fail
// only the stage, with an error naming the registry, and write nothing.
func TestRegistryFaults_NeverWriteWhatTheRegistryDidNotProve(t *testing.T) {
	const image = "svc00"
	tests := []struct {
		name  string
		fault fault
		// want is develop-svc00's value afterwards; "1.0.0" means nothing was written.
		want      string
		wantErr   string // in the output when the stage must fail
		wantLog   string // in stderr
		maxTook   time.Duration
		minFaults int
	}{
		{name: "429 with Retry-After", fault: onKind("list", 2, statusCode(http.StatusTooManyRequests, "Retry-After", "1")), want: "1.1.0", wantLog: "registry asked to retry", minFaults: 2},
		{name: "503 then fine", fault: onKind("list", 2, statusCode(http.StatusServiceUnavailable)), want: "1.1.0", minFaults: 2},
		{name: "500 for ever", fault: onKind("list", -1, statusCode(http.StatusInternalServerError)), want: "1.0.0", wantErr: "failed (500 Internal Server Error) and kept failing on retry", minFaults: 5},
		{name: "truncated tag list", fault: onKind("list", -1, truncated(true)), want: "1.0.0", wantErr: "list tags of"},
		{name: "tag list cut short without length", fault: onKind("list", -1, truncated(false)), want: "1.0.0", wantErr: "sent a malformed response"},
		{name: "tag list not JSON", fault: onKind("list", -1, notJSON), want: "1.0.0", wantErr: "sent a malformed response"},
		{name: "invalid tags listed", fault: onKind("list", -1, addTags("1.99.0+evil", `9.9.9"; replicas: 99`, "zz: [1, 2]", "zzz #comment")), want: "1.1.0", wantLog: "not a valid tag name"},
		{name: "listed tag without manifest", fault: onKind("list", -1, addTags("1.5.0")), want: "1.1.0", wantLog: "tag is listed but has no manifest"},
		// A tag seen for the first time is read with a GET and its digest hashed from the bytes:
		// the registry's header is never taken (a HEAD's wrong header for a tag proven before:
		// warehouse's TestDiscover_DigestIsTheHashOfTheFetchedManifest).
		{name: "wrong digest", fault: onKind("get", -1, wrongDigest), want: "1.1.0", minFaults: 1},
		{name: "hung connection", fault: onKind("list", -1, hung), want: "1.0.0", wantErr: "did not answer within 1s", maxTook: 20 * time.Second},
		{name: "hung after the tag list", fault: onKind("get", -1, hung), want: "1.0.0", wantErr: "did not answer within 1s", maxTook: 20 * time.Second},
		{name: "slow answers", fault: onKind("list", -1, slow(300*time.Millisecond)), want: "1.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, chains(1, "develop"), "")
			digest := w.push(image, "1.1.0")
			w.proxy.set(tt.fault)
			start := time.Now()
			p, err := w.once(nil, "--registry-timeout", "1s")
			took := time.Since(start)
			out := p.stdout.String() + p.stderr.String()
			if got := w.values()["develop-svc00"]; got != tt.want {
				t.Fatalf("develop-svc00 holds %s, want %s (err %v)\n%s", got, tt.want, err, out)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(p.stdout.String(), tt.wantErr) || !strings.Contains(p.stdout.String(), `stage "develop-svc00"`) {
					t.Errorf("want the stage failed with %q, got %v\n%s", tt.wantErr, err, p.stdout)
				}
			} else if err != nil {
				t.Errorf("run --once: %v\n%s", err, out)
			}
			if tt.wantLog != "" && strings.Count(p.stderr.String(), tt.wantLog) == 0 {
				t.Errorf("stderr does not say %q:\n%s", tt.wantLog, p.stderr)
			}
			if tt.maxTook > 0 && took > tt.maxTook {
				t.Errorf("took %s, want under %s", took, tt.maxTook)
			}
			reqs, injected := w.proxy.counts()
			if injected < tt.minFaults {
				t.Errorf("%d faults injected, want at least %d", injected, tt.minFaults)
			}
			for _, pr := range w.promotions() {
				if !strings.HasSuffix(pr.image, "@"+digest) {
					t.Errorf("commit %s names image %s, want the digest of the manifest served, %s", pr.commit[:7], pr.image, digest)
				}
				for _, bad := range []string{"evil", "replicas: 99", "zz", "1.5.0"} {
					if strings.Contains(pr.value, bad) {
						t.Errorf("wrote %q", pr.value)
					}
				}
			}
			t.Logf("took %s; requests %v, faults injected %d", took.Round(time.Millisecond), reqs, injected)
		})
	}
}

// TestRegistryFaults_DeadRegistryDelaysOnlyItsOwnStages hangs one image's tag list:
// the other image's stages are promoted in the same pass, and --once ends with the
// hung one named.
func TestRegistryFaults_DeadRegistryDelaysOnlyItsOwnStages(t *testing.T) {
	w := newWorld(t, chains(2, "develop"), "")
	w.push("svc00", "1.1.0")
	w.push("svc01", "1.1.0")
	w.proxy.set(func(p *faultProxy, rw http.ResponseWriter, r *http.Request) bool {
		if kind(r) == "list" && strings.Contains(r.URL.Path, "/svc01/") {
			hung(p, rw, r)
			return true
		}
		return false
	})
	start := time.Now()
	p, err := w.once(nil, "--registry-timeout", "2s")
	took := time.Since(start)
	if v := w.values(); v["develop-svc00"] != "1.1.0" || v["develop-svc01"] != "1.0.0" {
		t.Fatalf("values %v: svc00 must be promoted despite svc01's hung registry\n%s", v, p.stderr)
	}
	if err == nil || !strings.Contains(p.stdout.String(), "did not answer within 2s") {
		t.Errorf("--once: %v, want the hung registry named\n%s", err, p.stdout)
	}
	if took > 30*time.Second {
		t.Errorf("took %s", took)
	}
	t.Logf("pass with one hung registry took %s", took.Round(time.Millisecond))
}
