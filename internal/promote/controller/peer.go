package controller

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kropipe/kropipe/internal/promote/api"
)

// peerSecretKey is the key of --peer-secret's Secret that holds the replicas' credential.
const peerSecretKey = "token"

// peerCredential is what the replicas send each other as a bearer token: --peer-secret's
// token (filled with a random one when empty) with --peer-addr, else the API token (the
// replicas then reach each other on --addr, whose actions check it).
func (c *controller) peerCredential(ctx context.Context) (string, error) {
	if c.f.PeerAddr == "" || c.f.PeerSecret == "" {
		// A token file of named tokens: the replicas send one of them (api.Tokens.Primary).
		ts, err := api.ParseTokens(c.f.Token)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return ts.Primary(), nil
	}
	return fillPeerSecret(ctx, c.f.Kube, c.f.Namespace, c.f.PeerSecret)
}

// fillPeerSecret returns the token of Secret ns/name, writing a random one first when it has
// none. manifests/promoter ships the Secret empty, so no credential lives in Git; as Argo CD
// fills argocd-secret's server.secretkey, the first replica to start fills it, and an update
// that meets another replica's (a conflict) reads theirs instead.
func fillPeerSecret(ctx context.Context, kube kubernetes.Interface, ns, name string) (string, error) {
	var token string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if t := strings.TrimSpace(string(s.Data[peerSecretKey])); t != "" {
			token = t
			return nil
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		t := base64.RawURLEncoding.EncodeToString(b)
		s = s.DeepCopy()
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[peerSecretKey] = []byte(t)
		if _, err := kube.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return err
		}
		token = t
		return nil
	})
	switch {
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("Secret %s/%s (--peer-secret) does not exist: apply manifests/promoter, which ships it empty, or create it with a %q key holding a random string, the same for every replica: %w", ns, name, peerSecretKey, err)
	case apierrors.IsForbidden(err):
		return "", fmt.Errorf("reading or filling Secret %s/%s (--peer-secret): the promoter's Role must allow get and update on it (manifests/promoter/role.yaml does): %w", ns, name, err)
	case err != nil:
		return "", fmt.Errorf("reading or filling Secret %s/%s (--peer-secret): %w", ns, name, err)
	}
	return token, nil
}

var errPeerCredential = errors.New("this listener serves the other promoter replicas only: send their shared credential (--peer-secret's token, else --token-file) as Authorization: Bearer")

// peerOnly lets through only requests that carry the replicas' credential as a bearer token,
// compared in constant time: reads too, since a stage's status holds its verification's log
// tail and Git history. An empty credential refuses every request.
func peerOnly(credential string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || credential == "" || subtle.ConstantTimeCompare([]byte(got), []byte(credential)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kropipe-peers"`)
			writeJSON(w, http.StatusUnauthorized, api.Error{Error: errPeerCredential.Error()})
			return
		}
		h.ServeHTTP(w, r)
	})
}
