package warehouse

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// onTagList answers the tag list request with f for the first n requests
// (n < 0: always), and lets every other request through to the registry.
func onTagList(n int, f func(w http.ResponseWriter)) func(http.ResponseWriter, *http.Request) bool {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if n == 0 {
			return false
		}
		n--
		f(w)
		return true
	}
}

func status(code int, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

func TestDiscover_RegistryFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   func(http.ResponseWriter, *http.Request) bool
		wantErr []string // empty: Discover succeeds
		// waits the clock must have seen (exact, or within [min,max) for jittered back-off)
		wantWaits [][2]time.Duration
		wantLists int
	}{
		{
			name:      "TooManyRequestsHonoursRetryAfter",
			fault:     onTagList(2, status(http.StatusTooManyRequests, "Retry-After", "7")),
			wantWaits: [][2]time.Duration{{7 * time.Second, 7 * time.Second}, {7 * time.Second, 7 * time.Second}},
			wantLists: 3,
		},
		{
			name:      "TooManyRequestsWithHTTPDateRetryAfter",
			fault:     onTagList(1, status(http.StatusTooManyRequests, "Retry-After", t0.Add(90*time.Second).Format(http.TimeFormat))),
			wantWaits: [][2]time.Duration{{90 * time.Second, 90 * time.Second}},
			wantLists: 2,
		},
		{
			name:      "TooManyRequestsForAnHourIsReportedNotAwaited",
			fault:     onTagList(-1, status(http.StatusTooManyRequests, "Retry-After", "3600")),
			wantErr:   []string{"list tags of ", "/team/app: registry 127.0.0.1:", "is rate limiting (429 Too Many Requests)", "lower registries[].rateLimit"},
			wantLists: 1,
		},
		{
			name:      "ServerErrorIsRetriedWithBackoff",
			fault:     onTagList(2, status(http.StatusInternalServerError)),
			wantWaits: [][2]time.Duration{{250 * time.Millisecond, 500 * time.Millisecond}, {500 * time.Millisecond, time.Second}},
			wantLists: 3,
		},
		{
			name:      "ServerErrorThatPersistsGivesUpAfterBoundedTries",
			fault:     onTagList(-1, status(http.StatusServiceUnavailable)),
			wantErr:   []string{"failed (503 Service Unavailable) and kept failing on retry", "the next poll tries again"},
			wantLists: DefaultRetry.Steps + 1,
		},
		{
			name:      "UnauthorizedNamesTheCredentials",
			fault:     onTagList(-1, status(http.StatusUnauthorized)),
			wantErr:   []string{"refused access (401 Unauthorized)", "check the credentials for 127.0.0.1:"},
			wantLists: 1,
		},
		{
			name: "MalformedTagListIsNamed",
			fault: onTagList(-1, func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"name":"team/app","tags":["1.0.0",`)
			}),
			wantErr:   []string{"sent a malformed response", "does not answer as an OCI registry"},
			wantLists: 1,
		},
		{
			name: "TagListOfWrongShapeIsNamed",
			fault: onTagList(-1, func(w http.ResponseWriter) {
				fmt.Fprint(w, `{"tags":"1.0.0"}`)
			}),
			wantErr: []string{"sent a malformed response"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.push(t, "team/app", testImage(t, t0), "1.0.0")
			reg.setFault(tt.fault)
			w, clock := newTestWarehouse(t)
			reg.resetCount()
			f, _, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{})
			lists := 0
			for _, p := range reg.requestPaths() {
				if strings.HasSuffix(p, "/tags/list") {
					lists++
				}
			}
			if tt.wantErr == nil {
				if err != nil || f.Tag != "1.0.0" {
					t.Fatalf("Discover = %v, %v; want 1.0.0", f, err)
				}
			} else {
				if err == nil {
					t.Fatal("Discover succeeded, want an error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q\ndoes not contain %q", err, s)
					}
				}
			}
			if tt.wantLists > 0 && lists != tt.wantLists {
				t.Errorf("%d tag list requests, want %d", lists, tt.wantLists)
			}
			if tt.wantWaits != nil {
				waits := clock.waits()
				if len(waits) != len(tt.wantWaits) {
					t.Fatalf("clock waits %v, want %d waits", waits, len(tt.wantWaits))
				}
				for i, want := range tt.wantWaits {
					if waits[i] < want[0] || (waits[i] > want[1]) || (want[0] != want[1] && waits[i] == want[1]) {
						t.Errorf("wait %d = %v, want in [%v, %v]", i, waits[i], want[0], want[1])
					}
				}
			}
		})
	}
}

func TestDiscover_UnreachableRegistrySaysWhatToCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	w, clock := newTestWarehouse(t)
	_, _, err = w.Discover(context.Background(), addr+"/team/app", Selection{})
	if err == nil {
		t.Fatal("Discover succeeded against a closed port")
	}
	for _, s := range []string{"list tags of " + addr + "/team/app", "registry " + addr + " is unreachable", "connection refused", "check the host"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q\ndoes not contain %q", err, s)
		}
	}
	if len(clock.waits()) != 0 {
		t.Errorf("a refused connection was retried: waits %v", clock.waits())
	}
}

// basicAuth puts HTTP basic authentication in front of the registry.
func basicAuth(user, pass string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="kropipe-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

func dockerConfigJSON(host, user, pass string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth))
}

func pullSecret(name string, data []byte) corev1.Secret {
	return corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "argocd", Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: data},
	}
}

func TestDiscover_CredentialsAuthenticateAndNeverLeak(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/private", testImage(t, t0), "1.0.0")
	const user, pass, wrong = "robot", "s3cr3t-good-pass", "s3cr3t-wrong-pass"
	reg.setFault(basicAuth(user, pass))
	dir := t.TempDir()

	keychain := func(t *testing.T, source, password string) authn.Keychain {
		data := dockerConfigJSON(reg.host, user, password)
		switch source {
		case "dockerconfig-file":
			path := filepath.Join(dir, source+password+".json")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			kc, err := KeychainFromDockerConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			return kc
		case "dockerconfig-dir":
			d := filepath.Join(dir, password)
			os.MkdirAll(d, 0o700)
			if err := os.WriteFile(filepath.Join(d, "config.json"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			kc, err := KeychainFromDockerConfig(d)
			if err != nil {
				t.Fatal(err)
			}
			return kc
		case "pullsecret":
			kc, err := KeychainFromPullSecrets(context.Background(), []corev1.Secret{
				pullSecret("other", dockerConfigJSON("ghcr.io", "x", "y")),
				pullSecret("regcred", data),
			})
			if err != nil {
				t.Fatal(err)
			}
			// Combined as the promoter does: pull secrets first, then the file.
			return authn.NewMultiKeychain(kc, anonymous)
		}
		t.Fatalf("unknown source %s", source)
		return nil
	}
	for _, source := range []string{"dockerconfig-file", "dockerconfig-dir", "pullsecret"} {
		t.Run(source, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			w, _ := newTestWarehouse(t, WithKeychain(keychain(t, source, pass)), WithLogger(logger))
			f, _, err := w.Discover(context.Background(), reg.host+"/team/private", Selection{})
			if err != nil || f.Tag != "1.0.0" {
				t.Fatalf("with good credentials: %v, %v", f, err)
			}
			w, _ = newTestWarehouse(t, WithKeychain(keychain(t, source, wrong)), WithLogger(logger))
			_, _, err = w.Discover(context.Background(), reg.host+"/team/private", Selection{})
			if err == nil || !strings.Contains(err.Error(), "refused access (401 Unauthorized)") {
				t.Fatalf("with wrong credentials: err = %v", err)
			}
			encoded := base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong))
			for _, secret := range []string{wrong, encoded, pass} {
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("secret %q leaked into the error or logs:\n%v\n%s", secret, err, logs.String())
				}
			}
		})
	}
}

// Credentials rotated in the registry and then in the pull secret: the same Warehouse
// (its rate limits and caches) takes the new keychain without being rebuilt.
func TestSetKeychain_RotatedCredentialsWithoutANewWarehouse(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/private", testImage(t, t0), "1.0.0")
	reg.setFault(basicAuth("robot", "old-pass"))
	kc := func(pass string) authn.Keychain {
		k, err := KeychainFromPullSecrets(context.Background(), []corev1.Secret{pullSecret("regcred", dockerConfigJSON(reg.host, "robot", pass))})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	w, _ := newTestWarehouse(t, WithKeychain(kc("old-pass")))
	ctx := context.Background()
	if _, _, err := w.Discover(ctx, reg.host+"/team/private", Selection{}); err != nil {
		t.Fatalf("with the first credentials: %v", err)
	}
	reg.setFault(basicAuth("robot", "new-pass"))
	if _, _, err := w.Discover(ctx, reg.host+"/team/private", Selection{}); err == nil {
		t.Fatal("the registry changed its password but the old one still works: the test proves nothing")
	}
	if err := w.SetKeychain(kc("new-pass")); err != nil {
		t.Fatal(err)
	}
	if f, _, err := w.Discover(ctx, reg.host+"/team/private", Selection{}); err != nil || f.Tag != "1.0.0" {
		t.Fatalf("after SetKeychain with the new credentials: %v, %v", f, err)
	}
}

func TestKeychains_BadSourcesAreNamedWithoutContent(t *testing.T) {
	dir := t.TempDir()
	if _, err := KeychainFromDockerConfig(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: err = %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"auths": {"r": "hunter2hunter2"}}`), 0o600)
	if _, err := KeychainFromDockerConfig(bad); err == nil || !strings.Contains(err.Error(), "bad.json is not a valid Docker config file") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad file: err = %v", err)
	}
	_, err := KeychainFromPullSecrets(context.Background(), []corev1.Secret{pullSecret("broken", []byte(`{"auths": hunter2hunter2}`))})
	if err == nil || !strings.Contains(err.Error(), "pull secret argocd/broken") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad secret: err = %v", err)
	}
}

func TestRateLimit_IsPerRegistry(t *testing.T) {
	slow, fast := newTestRegistry(t), newTestRegistry(t)
	img := testImage(t, t0)
	slow.push(t, "team/app", img, "1.0.0")
	fast.push(t, "team/app", img, "1.0.0")
	var mu sync.Mutex
	sent := map[string]int{}
	w, clock := newTestWarehouse(t, WithRegistry(slow.host, RegistryConfig{RateLimit: 2}), WithMetrics(func(r string, _ int) {
		mu.Lock()
		defer mu.Unlock()
		sent[r]++
	}))
	ctx := context.Background()
	for range 3 {
		if _, _, err := w.Discover(ctx, slow.host+"/team/app", Selection{}); err != nil {
			t.Fatal(err)
		}
	}
	// The ping tries HTTPS before plain HTTP, then 3 × (list + HEAD): 8 requests at
	// 2/s with a burst of 2, so every request after the second waits 0.5s.
	mu.Lock()
	n := sent[slow.host]
	mu.Unlock()
	if want := time.Duration(n-2) * 500 * time.Millisecond; n < 7 || clock.total() != want {
		t.Errorf("slow registry: %d requests waited %v in all (%v), want %v", n, clock.total(), clock.waits(), want)
	}
	before := len(clock.waits())
	for range 3 {
		if _, _, err := w.Discover(ctx, fast.host+"/team/app", Selection{}); err != nil {
			t.Fatal(err)
		}
	}
	if after := clock.waits()[before:]; len(after) != 0 {
		t.Errorf("the default-limit registry waited %v because of the other's limit", after)
	}
}

// stallingClock makes long waits block until their context ends, as a real
// Retry-After would, and lets short ones pass.
type stallingClock struct {
	fakeClock
	stalled chan struct{}
}

func (c *stallingClock) NewTimer(d time.Duration) clock.Timer {
	if d >= 30*time.Second {
		c.stalled <- struct{}{}
		return firedTimer(make(chan time.Time)) // never fires
	}
	return c.fakeClock.NewTimer(d)
}

func TestDiscover_FailingRegistryDelaysOnlyItsOwnStages(t *testing.T) {
	failing, healthy := newTestRegistry(t), newTestRegistry(t)
	img := testImage(t, t0)
	failing.push(t, "team/app", img, "1.0.0")
	healthy.push(t, "team/app", img, "1.0.0")
	failing.setFault(onTagList(-1, status(http.StatusServiceUnavailable, "Retry-After", "60")))
	clock := &stallingClock{fakeClock: fakeClock{now: t0}, stalled: make(chan struct{}, 1)}
	w, _ := newTestWarehouse(t, WithClock(clock))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := w.Discover(ctx, failing.host+"/team/app", Selection{})
		done <- err
	}()
	<-clock.stalled // the failing registry's stage now waits out its Retry-After
	f, _, err := w.Discover(context.Background(), healthy.host+"/team/app", Selection{})
	if err != nil || f.Tag != "1.0.0" {
		t.Errorf("healthy registry while the other waits: %v, %v", f, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("stalled stage: err = %v, want context.Canceled", err)
	}
}

// TestDiscover_InsecureRegistryUsesPlainHTTP reaches a registry under a host name
// that is not loopback, so only the insecure setting can make it plain HTTP.
func TestDiscover_InsecureRegistryUsesPlainHTTP(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/app", testImage(t, t0), "1.0.0")
	_, port, _ := net.SplitHostPort(reg.host)
	host := "registry.kropipe.test:" + port
	dial := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dial.DialContext(ctx, network, reg.host)
	}}
	t.Cleanup(tr.CloseIdleConnections)

	w, _ := newTestWarehouse(t, WithTransport(tr))
	if _, _, err := w.Discover(context.Background(), host+"/team/app", Selection{}); err == nil {
		t.Fatal("reached a plain-HTTP registry without insecure: true")
	}
	w, _ = newTestWarehouse(t, WithTransport(tr), WithRegistry(host, RegistryConfig{Insecure: true}))
	f, _, err := w.Discover(context.Background(), host+"/team/app", Selection{})
	if err != nil || f.Ref() != host+"/team/app:1.0.0@"+f.Digest {
		t.Fatalf("insecure registry: %v, %v", f, err)
	}
}

func TestWithMetrics_CountsRequestsByRegistryAndCode(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/app", testImage(t, t0), "1.0.0")
	reg.setFault(onTagList(1, status(http.StatusInternalServerError)))
	var mu sync.Mutex
	counts := map[string]int{}
	w, _ := newTestWarehouse(t, WithMetrics(func(registry string, code int) {
		mu.Lock()
		defer mu.Unlock()
		counts[fmt.Sprintf("%s %d", registry, code)]++
	}))
	if _, _, err := w.Discover(context.Background(), reg.host+"/team/app", Selection{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// A tag seen for the first time: its manifest is read (and hashed) straight away.
	if counts[reg.host+" 500"] != 1 || counts[reg.host+" 200"] != 3 {
		t.Errorf("counts %v, want 1×500 and 3×200 (ping, list, manifest)", counts)
	}
}
