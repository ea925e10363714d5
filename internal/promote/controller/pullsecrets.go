package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// pullSecretRefresh is how often the pull secrets are read again when their names did not
// change: the longest a rotated Secret's old credentials stay in use.
var pullSecretRefresh = time.Minute

// pullSecrets keeps the leader's Warehouse on the registry credentials the image pull Secrets
// hold now: those named by --pull-secrets and by kropipe.io/pull-secrets annotations, in the
// promoter's namespace. They are read again when the names change and every
// pullSecretRefresh, and the keychain is replaced only when a name or a Secret's
// content changed, so a rotation needs no restart and costs nothing otherwise.
type pullSecrets struct {
	kube      kubernetes.Interface
	namespace string
	flagged   []string
	wh        *warehouse.Warehouse
	log       *slog.Logger

	names   string // sorted, comma-joined: what was read last
	readAt  time.Time
	applied string // name@content hash of the Secrets behind the keychain in use; never logged
	warned  map[string]string
}

func newPullSecrets(kube kubernetes.Interface, namespace string, flagged []string, wh *warehouse.Warehouse, log *slog.Logger) *pullSecrets {
	return &pullSecrets{kube: kube, namespace: namespace, flagged: flagged, wh: wh, log: log, warned: map[string]string{}}
}

// annotatedPullSecrets lists the Secrets the stages' kropipe.io/pull-secrets name.
func annotatedPullSecrets(cfg argocd.Config) []string {
	var names []string
	for _, b := range cfg.Bindings {
		names = append(names, b.PullSecrets...)
	}
	return names
}

// update reads the Secrets if they are due and gives the Warehouse a new keychain if they
// changed. A Secret that cannot be read or parsed is left out with one log line (not one per
// pass); registries needing it then refuse, and the stage says so.
func (p *pullSecrets) update(ctx context.Context, annotated []string) {
	names := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(p.flagged), annotated...))))
	key := strings.Join(names, ",")
	if key == p.names && time.Since(p.readAt) < pullSecretRefresh {
		return
	}
	p.names, p.readAt = key, time.Now()
	var (
		secrets []corev1.Secret
		used    []string
	)
	for _, name := range names {
		s, err := p.kube.CoreV1().Secrets(p.namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			// Parsed alone so that one bad Secret does not take the others' credentials away.
			_, err = warehouse.KeychainFromPullSecrets(ctx, []corev1.Secret{*s})
		}
		if err != nil {
			if p.warned[name] != err.Error() {
				p.warned[name] = err.Error()
				p.log.Error("pull secret left out; registries needing it will refuse", "secret", p.namespace+"/"+name, "error", err.Error())
			}
			continue
		}
		delete(p.warned, name)
		secrets = append(secrets, *s)
		used = append(used, name+"@"+contentHash(s))
	}
	fingerprint := strings.Join(used, ",")
	if fingerprint == p.applied {
		return
	}
	var kc authn.Keychain = authn.DefaultKeychain
	if len(secrets) > 0 {
		k, err := warehouse.KeychainFromPullSecrets(ctx, secrets)
		if err != nil {
			p.log.Error("pull secrets unusable; using anonymous registry access", "secrets", key, "error", err.Error())
		} else {
			kc = authn.NewMultiKeychain(k, authn.DefaultKeychain)
		}
	}
	if err := p.wh.SetKeychain(kc); err != nil {
		p.log.Error("registry credentials not replaced", "error", err.Error())
		return
	}
	if p.applied != "" || fingerprint != "" {
		p.log.Info("registry credentials loaded", "namespace", p.namespace, "secrets", len(secrets), "names", key)
	}
	p.applied = fingerprint
}

// contentHash tells one version of a Secret's data from another without keeping or showing it.
func contentHash(s *corev1.Secret) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(s.Data[k])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
