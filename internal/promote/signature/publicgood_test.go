package signature

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	clocktesting "k8s.io/utils/clock/testing"
)

// tufRepo is a TUF repository on 127.0.0.1 (consistent snapshots, as the public-good one)
// whose one target is a trusted_root.json; its root, timestamp, snapshot and targets roles are
// signed with keys made for the test.
type tufRepo struct {
	srv        *httptest.Server
	root       []byte // 1.root.json: what a client starts trusting
	mu         sync.Mutex
	files      map[string][]byte // URL path → body
	timestamps atomic.Int64      // timestamp.json requests: one per TUF update
	target     string            // the trusted root target's path
	isDown     atomic.Bool
	isHung     atomic.Bool
}

func newTUFRepo(t *testing.T, target []byte) *tufRepo {
	t.Helper()
	expires := time.Now().Add(24 * time.Hour * 365)
	root := metadata.Root(expires)
	targets := metadata.Targets(expires)
	snapshot := metadata.Snapshot(expires)
	timestamp := metadata.Timestamp(expires)

	tf, err := metadata.TargetFile().FromBytes(trustedRootTarget, target, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	targets.Signed.Targets[trustedRootTarget] = tf
	signers := map[string]sigsig.Signer{}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
		if signers[role], err = sigsig.LoadSigner(priv, crypto.Hash(0)); err != nil {
			t.Fatal(err)
		}
	}
	sign := func(role string, m interface {
		Sign(sigsig.Signer) (*metadata.Signature, error)
		ToBytes(bool) ([]byte, error)
	}) []byte {
		if _, err := m.Sign(signers[role]); err != nil {
			t.Fatal(err)
		}
		js, err := m.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	r := &tufRepo{files: map[string][]byte{}}
	r.root = sign(metadata.ROOT, root)
	r.files["/1.root.json"] = r.root
	r.files["/1.targets.json"] = sign(metadata.TARGETS, targets)
	snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(1)
	r.files["/1.snapshot.json"] = sign(metadata.SNAPSHOT, snapshot)
	timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(1)
	r.files["/timestamp.json"] = sign(metadata.TIMESTAMP, timestamp)
	r.target = "/targets/" + tf.Hashes["sha256"].String() + "." + trustedRootTarget
	r.files[r.target] = target

	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.isDown.Load() {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		if r.isHung.Load() {
			<-req.Context().Done() // until the client gives up
			return
		}
		if req.URL.Path == "/timestamp.json" {
			r.timestamps.Add(1)
		}
		r.mu.Lock()
		body, ok := r.files[req.URL.Path]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// tamper serves another trusted root under the target's name than the one targets.json
// signed for, as a compromised mirror would.
func (r *tufRepo) tamper() {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Same length, one byte changed: only the hash tells.
	body := bytes.Clone(r.files[r.target])
	body[bytes.IndexByte(body, 'A')] = 'B'
	r.files[r.target] = body
}

// down makes the repository drop every connection, as an unreachable CDN.
func (r *tufRepo) down() { r.isDown.Store(true) }

// hang makes the repository accept requests and never answer.
func (r *tufRepo) hang() { r.isHung.Store(true) }

// signedByVirtualSigstore is an image with a keyless signature from e's virtual Sigstore,
// which only a trusted root naming it (the one the TUF repository serves) trusts.
func signedByVirtualSigstore(t *testing.T, e *env) name.Digest {
	ref := e.reg.pushImage(t, "app", "v1")
	attach(t, ref, bundleV03, e.auth.KeylessBundle(t, testIdentity, testIssuer, cosignSig(ref, ref.DigestStr()), bundleOpts{}))
	return ref
}

// publicGoodPolicy has no trustedRoot: the public-good root verifies it.
var publicGoodPolicy = Policy{Name: "release", Cosign: &CosignPolicy{Identity: testIdentity, Issuer: testIssuer}}

func TestPublicGoodRoot_ComesFromTUFWithCachedAndEmbeddedFallbacks(t *testing.T) {
	e := newEnv(t, true)
	ref := signedByVirtualSigstore(t, e)
	type step struct {
		before  func(*tufRepo) // what happens to the repository first
		restart bool           // a new PublicGoodRoot over the cache directory of the step before
		off     bool           // --sigstore-tuf-url ""
		timeout time.Duration  // of the update; 0 for 10 s
		// wantErr is part of the ErrUnverified message, "" for verified; wantLog part of
		// what is logged, "" for nothing.
		wantErr, wantLog string
	}
	// The virtual Sigstore's log entry is checked first: "not from a log <root> trusts".
	const embedded = "not from a log " + embeddedRef
	cases := []struct {
		name  string
		steps []step
	}{{
		name:  "the TUF repository delivers the root the signature's Sigstore is in",
		steps: []step{{}},
	}, {
		name:  "repository down after a fetch: a restarted promoter uses the copy TUF delivered last",
		steps: []step{{}, {before: (*tufRepo).down, restart: true, wantLog: "using the trusted root TUF delivered last"}},
	}, {
		name:  "repository down and nothing cached: the embedded root, which refuses the signature, named",
		steps: []step{{before: (*tufRepo).down, wantErr: embedded, wantLog: "using the trusted root embedded in kropipe"}},
	}, {
		name:  "repository that never answers: the update gives up at its timeout, the embedded root",
		steps: []step{{before: (*tufRepo).hang, timeout: 200 * time.Millisecond, wantErr: embedded, wantLog: "context deadline exceeded"}},
	}, {
		name:  "tampered target: refused by TUF, the embedded root is used and why logged",
		steps: []step{{before: (*tufRepo).tamper, wantErr: embedded, wantLog: "hash verification failed"}},
	}, {
		name:  "target tampered on the server after a good fetch: TUF's verified copy is kept, not downloaded again",
		steps: []step{{}, {before: (*tufRepo).tamper, restart: true}},
	}, {
		name:  "TUF off: the embedded root",
		steps: []step{{off: true, wantErr: embedded + " (TUF updates off)"}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := newTUFRepo(t, e.auth.TrustedRoot)
			var dir string
			for i, s := range tc.steps {
				if !s.restart {
					dir = t.TempDir()
				}
				if s.before != nil {
					s.before(repo)
				}
				url := repo.srv.URL
				if s.off {
					url = ""
				}
				timeout := s.timeout
				if timeout == 0 {
					timeout = 10 * time.Second
				}
				var logs bytes.Buffer
				src, err := NewPublicGoodRoot(url, dir, WithTUFRoot(repo.root), WithTUFTimeout(timeout),
					WithTUFLogger(slog.New(slog.NewTextHandler(&logs, nil))))
				if err != nil {
					t.Fatal(err)
				}
				c, err := NewCosign(WithPublicGoodRoot(src))
				if err != nil {
					t.Fatal(err)
				}
				res, err := c.Verify(context.Background(), ref, publicGoodPolicy, e.reg.opts()...)
				switch {
				case s.wantErr == "" && err != nil:
					t.Fatalf("step %d: Verify = %v; want verified", i, err)
				case s.wantErr == "" && res.SignedBy != testIdentity+" (issuer "+testIssuer+")":
					t.Fatalf("step %d: SignedBy = %q", i, res.SignedBy)
				case s.wantErr != "" && (!errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), s.wantErr)):
					t.Fatalf("step %d: Verify = %v; want ErrUnverified saying %q", i, err, s.wantErr)
				}
				if s.wantLog == "" && logs.Len() > 0 {
					t.Fatalf("step %d logged %s", i, logs.String())
				}
				if !strings.Contains(logs.String(), s.wantLog) {
					t.Fatalf("step %d logged %q; want %q", i, logs.String(), s.wantLog)
				}
				t.Logf("step %d: %v; logged %s", i, err, logs.String())
			}
		})
	}
}

func TestPublicGoodRoot_AsksTUFAtMostOncePerRefreshAndLogsAFailureOnce(t *testing.T) {
	e := newEnv(t, true)
	repo := newTUFRepo(t, e.auth.TrustedRoot)
	clk := clocktesting.NewFakeClock(time.Now())
	var logs bytes.Buffer
	src, err := NewPublicGoodRoot(repo.srv.URL, t.TempDir(), WithTUFRoot(repo.root), WithTUFClock(clk),
		WithTUFRefresh(24*time.Hour), WithTUFLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		after       time.Duration
		down        bool
		wantUpdates int64
		wantRef     string
		wantLogs    int
	}{
		{0, false, 1, "from TUF", 0},
		{0, false, 1, "from TUF", 0},
		{23 * time.Hour, false, 1, "from TUF", 0},
		{2 * time.Hour, false, 2, "from TUF", 0},
		// Down: the root delivered earlier stays; why is logged once, not every day.
		{25 * time.Hour, true, 2, "from TUF", 1},
		{25 * time.Hour, false, 2, "from TUF", 1},
	}
	for i, s := range steps {
		clk.Step(s.after)
		if s.down {
			repo.down()
		}
		tr, ref, err := src.TrustedRoot()
		if err != nil || tr == nil {
			t.Fatalf("step %d: TrustedRoot = %v, %v", i, tr, err)
		}
		if got := repo.timestamps.Load(); got != s.wantUpdates {
			t.Fatalf("step %d: %d TUF updates; want %d", i, got, s.wantUpdates)
		}
		if !strings.Contains(ref, s.wantRef) {
			t.Fatalf("step %d: root named %q; want %q", i, ref, s.wantRef)
		}
		if got := strings.Count(logs.String(), "sigstore TUF update failed"); got != s.wantLogs {
			t.Fatalf("step %d: %d failures logged; want %d: %s", i, got, s.wantLogs, logs.String())
		}
	}
}
