package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/internal/promote/addrtest"
	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

const apiToken = "api-t0ken-0123456789abcdef"

// peerCall sends one request to a replica's peer listener with authorization ("" for none).
func peerCall(t *testing.T, method, url, authorization string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, _ := http.NewRequest(method, url, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fakeMember is another replica, alive in its member Lease, whose peer listener lists one
// stage to whoever sends want, and records every Authorization header it gets.
type fakeMember struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newFakeMember(t *testing.T, want string) (*fakeMember, *coordinationv1.Lease) {
	f := &fakeMember{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if r.Header.Get("Authorization") != want {
			writeJSON(w, http.StatusUnauthorized, api.Error{Error: "no"})
			return
		}
		writeJSON(w, http.StatusOK, api.StageList{Stages: []stage.Status{{Name: "peer-frontend", CurrentTag: "9.9.9"}}})
	}))
	t.Cleanup(f.srv.Close)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: "kropipe-promoter-member-1", Namespace: "argocd",
			Labels: map[string]string{shard.SetLabel: "kropipe-promoter", shard.KindLabel: "member"},
			// A replica of the same --shards (2) as the one under test: one of another count would
			// hold it back (shard.Topology).
			Annotations: map[string]string{shard.AddressAnnotation: f.srv.URL, shard.PodAnnotation: "peer", shard.ShardsAnnotation: "2"},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("peer_00000000"), LeaseDurationSeconds: ptr.To[int32](3600),
			RenewTime: &metav1.MicroTime{Time: time.Now()},
		},
	}
	return f, lease
}

func (f *fakeMember) authorizations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...)
}

// TestController_PeerListenerRefusesEveryRequestWithoutThePeerCredential: --peer-addr is
// reachable from every pod, so reads (status with verification log tails, history) need the
// credential the replicas share as much as actions do — and with a peer Secret, the API
// token (which a human holds) is not that credential.
func TestController_PeerListenerRefusesEveryRequestWithoutThePeerCredential(t *testing.T) {
	tests := []struct {
		name string
		// secret is the --peer-secret; "" authenticates the replicas with the API token.
		secret string
	}{
		{name: "the API token", secret: ""},
		{name: "a peer Secret the promoter fills", secret: "kropipe-promoter-peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := registrytest.Start(t)
			registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
			objects := []runtime.Object{}
			if tt.secret != "" {
				// As manifests/promoter ships it: empty, so no credential ever lives in Git.
				objects = append(objects, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tt.secret, Namespace: "argocd"}})
			}
			e := newClusterEnvFor(t, host, nil, objects...)
			cfg := configFor("")
			cfg.Shards, cfg.Token, cfg.RequireToken = 2, apiToken, true
			cfg.PeerAddr, cfg.PeerSecret = addrtest.Free(t), tt.secret
			_, logs, _ := e.start(t, cfg)
			peer := "http://" + cfg.PeerAddr

			credential := apiToken
			if tt.secret != "" {
				s, err := e.kube.CoreV1().Secrets("argocd").Get(context.Background(), tt.secret, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				credential = string(s.Data["token"])
				if len(credential) < 32 {
					t.Fatalf("the promoter left Secret %s without a token: %q", tt.secret, s.Data)
				}
				if strings.Contains(logs.String(), credential) {
					t.Fatal("the peer credential is in the logs")
				}
			}
			// Wait until the replica runs its stages, so a refusal is the credential's doing.
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				code, body := peerCall(t, http.MethodGet, peer+api.ShardPath, "Bearer "+credential)
				if code == http.StatusOK && strings.Contains(body, "develop-frontend") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the peer listener does not list develop-frontend: %d %s\n%s", code, body, logs.String())
				}
			}
			wrong := []struct{ what, authorization string }{
				{"no credential", ""},
				{"a wrong one", "Bearer not-the-credential"},
				{"the credential without Bearer", credential},
			}
			if tt.secret != "" {
				wrong = append(wrong, struct{ what, authorization string }{"the API token", "Bearer " + apiToken})
			}
			requests := []struct{ method, path string }{
				{http.MethodGet, api.ShardPath},
				{http.MethodGet, api.ShardPath + "/develop-frontend"},
				{http.MethodGet, "/api/v1/stages"},
				{http.MethodGet, "/api/v1/stages/develop-frontend"},
				{http.MethodGet, "/api/v1/stages/develop-frontend/history"},
				{http.MethodGet, "/api/v1/stages/develop-frontend/tags"},
				{http.MethodPost, "/api/v1/stages/develop-frontend/pause"},
			}
			for _, rq := range requests {
				for _, w := range wrong {
					if code, body := peerCall(t, rq.method, peer+rq.path, w.authorization); code != http.StatusUnauthorized {
						t.Errorf("%s %s with %s: %d, want 401: %.200s", rq.method, rq.path, w.what, code, body)
					}
				}
			}
			for _, rq := range requests[:4] {
				if code, body := peerCall(t, rq.method, peer+rq.path, "Bearer "+credential); code != http.StatusOK {
					t.Errorf("%s %s with the credential: %d %.200s", rq.method, rq.path, code, body)
				}
			}
		})
	}
}

// TestController_ReplicaSendsThePeerCredential: the stage list joins another replica's own
// stages, asked with the peer credential.
func TestController_ReplicaSendsThePeerCredential(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "kropipe-promoter-peer", Namespace: "argocd"},
		Data:       map[string][]byte{"token": []byte("peer-credential-0123456789abcdef0123")},
	}
	member, lease := newFakeMember(t, "Bearer peer-credential-0123456789abcdef0123")
	e := newClusterEnvFor(t, host, nil, secret, lease)
	cfg := configFor("")
	cfg.Shards, cfg.Token, cfg.RequireToken = 2, apiToken, true
	cfg.PeerAddr, cfg.PeerSecret = addrtest.Free(t), "kropipe-promoter-peer"
	addr, logs, _ := e.start(t, cfg)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := peerCall(t, http.MethodGet, "http://"+addr+"/api/v1/stages", "")
		var list api.StageList
		if code == http.StatusOK && json.Unmarshal([]byte(body), &list) == nil {
			if slices.ContainsFunc(list.Stages, func(st stage.Status) bool { return st.Name == "peer-frontend" }) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stage list never joined the other replica's: %d %s\nthe other replica was sent %q\n%s", code, body, member.authorizations(), logs.String())
		}
	}
	for _, got := range member.authorizations() {
		if got != "Bearer peer-credential-0123456789abcdef0123" {
			t.Errorf("the other replica was sent %q, want the peer credential", got)
		}
	}
}

// TestFillPeerSecret_EveryReplicaEndsWithTheSameToken: the first replica fills the empty
// Secret; one whose update meets another's (a conflict) takes theirs; a filled one is kept.
func TestFillPeerSecret_EveryReplicaEndsWithTheSameToken(t *testing.T) {
	empty := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kropipe-promoter-peer", Namespace: "argocd", ResourceVersion: "1"}}
	}
	tests := []struct {
		name    string
		secret  *corev1.Secret
		another bool // another replica fills it between this one's read and update
		want    string
	}{
		{name: "filled: kept", secret: &corev1.Secret{ObjectMeta: empty().ObjectMeta, Data: map[string][]byte{"token": []byte("theirs-0123456789")}}, want: "theirs-0123456789"},
		{name: "empty: filled", secret: empty()},
		{name: "filled by another meanwhile: theirs", secret: empty(), another: true, want: "another-0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := kubefake.NewClientset(tt.secret)
			if tt.another {
				once := sync.Once{}
				kube.PrependReactor("update", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
					handled := false
					once.Do(func() {
						s := empty()
						s.ResourceVersion = "2"
						s.Data = map[string][]byte{"token": []byte("another-0123456789")}
						if err := kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("secrets"), s, "argocd"); err != nil {
							t.Fatal(err)
						}
						handled = true
					})
					if handled {
						return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), "kropipe-promoter-peer", errors.New("the object has been modified"))
					}
					return false, nil, nil
				})
			}
			got, err := fillPeerSecret(context.Background(), kube, "argocd", "kropipe-promoter-peer")
			if err != nil {
				t.Fatal(err)
			}
			s, err := kube.CoreV1().Secrets("argocd").Get(context.Background(), "kropipe-promoter-peer", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if stored := string(s.Data["token"]); got != stored {
				t.Errorf("returned %q, the Secret holds %q", got, stored)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("token %q, want %q", got, tt.want)
			}
			if len(got) < 32 && tt.want == "" {
				t.Errorf("a filled token of %d characters, want at least 32", len(got))
			}
			// A second replica starting later reads the same.
			again, err := fillPeerSecret(context.Background(), kube, "argocd", "kropipe-promoter-peer")
			if err != nil || again != got {
				t.Errorf("the next replica got %q, %v; want %q", again, err, got)
			}
		})
	}
	t.Run("missing Secret: says what to apply", func(t *testing.T) {
		_, err := fillPeerSecret(context.Background(), kubefake.NewClientset(), "argocd", "kropipe-promoter-peer")
		if err == nil || !strings.Contains(err.Error(), "manifests/promoter") || !apierrors.IsNotFound(err) {
			t.Errorf("error %v, want a wrapped NotFound naming manifests/promoter", err)
		}
	})
}

func TestConfig_PeerAddrNeedsACredential(t *testing.T) {
	tests := []struct {
		name                    string
		peerAddr, secret, token string
		wantErr                 string
	}{
		{name: "peer Secret", peerAddr: ":8083", secret: "kropipe-promoter-peer"},
		{name: "API token", peerAddr: ":8083", token: apiToken},
		{name: "no --peer-addr: --addr with the API token", token: apiToken},
		{name: "neither", peerAddr: ":8083", wantErr: "--peer-secret"},
		{name: "peer Secret without --peer-addr", secret: "kropipe-promoter-peer", token: apiToken, wantErr: "give --peer-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configFor("")
			cfg.Kube = kubefake.NewClientset()
			cfg.Shards, cfg.PeerAddr, cfg.PeerSecret, cfg.Token = 4, tt.peerAddr, tt.secret, tt.token
			err := cfg.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}
