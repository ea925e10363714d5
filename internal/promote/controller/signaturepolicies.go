package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/signature"
)

// signaturePolicyRefresh is how often the Secrets and files of the signature policies are read
// again: the longest a rotated key or a Secret created late waits to be used.
var signaturePolicyRefresh = time.Minute

// signaturePolicies reads the key material the --signature-policies name (Secrets of the
// promoter's namespace, secret:<name>/<key>, or files) and gives kropipe.io/verify-signature
// the policies that can be used; a policy whose Secret is missing or does not hold its key is
// unusable, and the stages requiring it do not run (they never promote unverified).
type signaturePolicies struct {
	kube      kubernetes.Interface
	namespace string
	source    string // "--signature-policies <file>", for messages
	defined   map[string]signature.Policy
	log       *slog.Logger

	readAt time.Time
	last   argocd.SignaturePolicies
	warned map[string]string
}

func newSignaturePolicies(kube kubernetes.Interface, namespace, file string, defined map[string]signature.Policy, log *slog.Logger) *signaturePolicies {
	s := &signaturePolicies{kube: kube, namespace: namespace, defined: defined, log: log, warned: map[string]string{}}
	if file != "" {
		s.source = "--signature-policies " + file
	}
	return s
}

// update reads the policies' Secrets and files again when due and hands the result to the
// watcher, which derives the stages again only when something changed.
func (s *signaturePolicies) update(ctx context.Context, w *argocd.Watcher) {
	if !s.readAt.IsZero() && time.Since(s.readAt) < signaturePolicyRefresh {
		return
	}
	w.SetSignaturePolicies(s.resolve(ctx))
}

// resolve reads every policy's key material and checks the policy as its verifier will. A
// failure to reach the API server keeps a policy's last good reading: only a Secret that is
// not there, or not readable, makes a policy unusable.
func (s *signaturePolicies) resolve(ctx context.Context) argocd.SignaturePolicies {
	s.readAt = time.Now()
	if len(s.defined) == 0 {
		return argocd.SignaturePolicies{Source: s.source}
	}
	out := argocd.SignaturePolicies{Source: s.source, Policies: map[string]signature.Policy{}, Unusable: map[string]string{}}
	for _, name := range slices.Sorted(maps.Keys(s.defined)) {
		p, err := s.read(ctx, s.defined[name])
		if err == nil {
			err = p.Validate()
		}
		var transient *transientError
		switch {
		case err == nil:
			out.Policies[name] = p
			delete(s.warned, name)
			continue
		case errors.As(err, &transient):
			if prev, ok := s.last.Policies[name]; ok {
				out.Policies[name] = prev
				s.log.Warn("signature policy's key material not read again; using what was read before", "policy", name, "error", err.Error())
				continue
			}
		}
		why := strings.ReplaceAll(err.Error(), "\n", "; ")
		out.Unusable[name] = why
		if s.warned[name] != why {
			s.warned[name] = why
			s.log.Error("signature policy unusable; stages requiring it do not run", "policy", name, "problem", why)
		}
	}
	s.last = out
	return out
}

// transientError is a failure to reach the API server: nothing to fix in the configuration.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// read returns p with its key, trusted root and trust store read; the policy is not changed.
func (s *signaturePolicies) read(ctx context.Context, p signature.Policy) (signature.Policy, error) {
	var errs []error
	load := func(field, ref, what string) []byte {
		if ref == "" {
			return nil
		}
		b, err := s.load(ctx, ref, what)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		return b
	}
	if c := p.Cosign; c != nil {
		cp := *c
		cp.PublicKey = load("cosign.key", c.KeyRef, "the PEM public key (cosign.pub)")
		cp.TrustedRoot = load("cosign.trustedRoot", c.TrustedRootRef, "the trusted_root.json")
		p.Cosign = &cp
	}
	if n := p.Notation; n != nil {
		np := *n
		np.TrustedIdentities = slices.Clone(n.TrustedIdentities)
		np.TrustStore = load("notation.trustStore", n.TrustStoreRef, "the PEM CA certificates")
		p.Notation = &np
	}
	if p.Provenance != nil {
		pp := *p.Provenance
		p.Provenance = &pp
	}
	for _, err := range errs {
		var t *transientError
		if errors.As(err, &t) {
			return p, &transientError{errors.Join(errs...)}
		}
	}
	return p, errors.Join(errs...)
}

// load reads a secret:<name>/<key> reference from the promoter's namespace, or a file. Errors
// name the Secret or file and what to do, never its content.
func (s *signaturePolicies) load(ctx context.Context, ref, what string) ([]byte, error) {
	ref = strings.TrimSpace(ref)
	rest, isSecret := strings.CutPrefix(ref, config.SecretRefPrefix)
	if !isSecret {
		b, err := os.ReadFile(ref)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w; mount the file holding %s into the promoter, or keep it in a Secret of namespace %s and write secret:<name>/<key>", ref, err, what, s.namespace)
		}
		return b, nil
	}
	name, key, _ := strings.Cut(rest, "/")
	sec, err := s.kube.CoreV1().Secrets(s.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("Secret %s/%s does not exist; create it in the promoter's namespace with %s under the key %q", s.namespace, name, what, key)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("the promoter may not read Secret %s/%s (%v); grant its ServiceAccount get on secrets in %s (manifests/promoter's Role does)", s.namespace, name, err, s.namespace)
	case err != nil:
		return nil, &transientError{fmt.Errorf("reading Secret %s/%s: %w", s.namespace, name, err)}
	}
	b, ok := sec.Data[key]
	if !ok {
		if v, ok := sec.StringData[key]; ok {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("Secret %s/%s holds no key %q (it holds %s); add %s under that key, or name the key that holds it in %s", s.namespace, name, key, keyList(sec.Data), what, s.sourceOrFile())
	}
	return b, nil
}

func (s *signaturePolicies) sourceOrFile() string {
	if s.source == "" {
		return "the signature policies"
	}
	return s.source
}

func keyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "no keys"
	}
	keys := slices.Sorted(maps.Keys(data))
	return strings.Join(keys, ", ")
}
