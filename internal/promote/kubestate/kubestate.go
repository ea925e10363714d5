// Package kubestate keeps the promoter's approvals, verifications and pauses in one
// ConfigMap it owns, so a restarted or newly elected promoter forgets nothing.
package kubestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

const (
	// DefaultName is the ConfigMap's name unless WithName says otherwise.
	DefaultName = "kropipe-promoter-state"
	// DataKey is the ConfigMap key holding the state as JSON.
	DataKey = "state.json"
	// DefaultMaxBytes bounds the JSON Save writes. A ConfigMap holds at most 1 MiB, and a
	// verification takes about 350 bytes: the engine's 50 per stage fill it at about 60
	// stages, so older verifications are dropped first (see Save).
	DefaultMaxBytes = 900 << 10
)

// Store is a stage.Store backed by one ConfigMap. Save is a compare-and-swap on the
// ConfigMap's resourceVersion: the engine is the only writer while it holds the lease, but a
// leader that lost its lease a moment ago must not silently overwrite its successor's state
// with a stale read.
type Store struct {
	client    kubernetes.Interface
	namespace string
	name      string
	log       *slog.Logger
	maxBytes  int
	// backoff is the first wait after a failed request; it doubles up to maxBackoff.
	backoff    time.Duration
	maxBackoff time.Duration
	sleep      func(ctx context.Context, d time.Duration) error
}

// Option configures a Store.
type Option func(*Store)

// WithName sets the ConfigMap's name (default DefaultName).
func WithName(name string) Option { return func(s *Store) { s.name = name } }

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithBackoff sets the first and the longest wait between retries of a failed request
// (default 200ms doubling to 10s). Retries go on until the context is done.
func WithBackoff(first, max time.Duration) Option {
	return func(s *Store) { s.backoff, s.maxBackoff = first, max }
}

// WithMaxBytes sets the largest state Save writes (default DefaultMaxBytes).
func WithMaxBytes(n int) Option { return func(s *Store) { s.maxBytes = n } }

// New returns a store for the ConfigMap in namespace (the promoter's own namespace).
func New(client kubernetes.Interface, namespace string, opts ...Option) *Store {
	s := &Store{
		client:     client,
		namespace:  namespace,
		name:       DefaultName,
		maxBytes:   DefaultMaxBytes,
		log:        slog.Default(),
		backoff:    200 * time.Millisecond,
		maxBackoff: 10 * time.Second,
		sleep:      sleepCtx,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Load reads the state; a ConfigMap that does not exist yet is an empty State. A failing API
// server is retried until ctx is done.
func (s *Store) Load(ctx context.Context) (stage.State, error) {
	var st stage.State
	err := s.retry(ctx, "read", func() error {
		cm, err := s.get(ctx)
		if err != nil {
			return err
		}
		st, err = s.decode(cm)
		return err
	})
	return st, err
}

// Save replaces the state. On a conflict (someone wrote the ConfigMap since it was read) it
// reads again and writes again; on other API errors it backs off and retries until ctx is
// done, so a short API server outage delays a save but loses nothing.
//
// A state larger than the ConfigMap can hold loses its oldest verifications first (every
// stage keeps as many), never a stage's newest one (what downstream stages and the API read),
// nor approvals or pauses.
func (s *Store) Save(ctx context.Context, st stage.State) error {
	raw, err := s.encode(st)
	if err != nil {
		return err
	}
	return s.retry(ctx, "write", func() error {
		cm, err := s.get(ctx)
		if err != nil {
			return err
		}
		if cm == nil {
			_, err = s.client.CoreV1().ConfigMaps(s.namespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{
					Name:      s.name,
					Namespace: s.namespace,
					Labels:    map[string]string{"app.kubernetes.io/managed-by": "kropipe-promoter"},
				},
				Data: map[string]string{DataKey: string(raw)},
			}, metav1.CreateOptions{})
			return err
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[DataKey] = string(raw)
		// Update carries cm's resourceVersion: the API server refuses it with a conflict if
		// the ConfigMap changed since get.
		_, err = s.client.CoreV1().ConfigMaps(s.namespace).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
}

// encode marshals st. When that is more than maxBytes it keeps only the newest k
// verifications of each stage, for the largest k that fits (a binary search: a handful of
// marshals).
func (s *Store) encode(st stage.State) ([]byte, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: encode state: %w", s.namespace, s.name, err)
	}
	if len(raw) <= s.maxBytes {
		return raw, nil
	}
	longest := 0
	for _, v := range st.Verifications {
		longest = max(longest, len(v))
	}
	capped := func(k int) ([]byte, error) {
		c := st // the caller's state is the engine's: trim a copy of the map
		c.Verifications = make(map[string][]stage.Verification, len(st.Verifications))
		for name, v := range st.Verifications {
			c.Verifications[name] = v[max(0, len(v)-k):]
		}
		return json.Marshal(c)
	}
	var best []byte
	bestK := 0
	for lo, hi := 1, longest-1; lo <= hi; {
		k := (lo + hi) / 2
		b, err := capped(k)
		if err != nil {
			return nil, err
		}
		if len(b) <= s.maxBytes {
			best, bestK, lo = b, k, k+1
		} else {
			hi = k - 1
		}
	}
	if best == nil {
		one, _ := capped(1)
		return nil, permanent{fmt.Errorf("ConfigMap %s/%s: the promoter's state is %d bytes with only each stage's newest verification, more than the %d a ConfigMap can take; split the stages between two promoters (each with its own --state-configmap)", s.namespace, s.name, len(one), s.maxBytes)}
	}
	s.log.Warn("state too large for its ConfigMap; keeping only the newest verifications of each stage", "configmap", s.namespace+"/"+s.name, "kept", bestK, "bytes", len(best))
	return best, nil
}

// get returns the ConfigMap, or nil when it does not exist.
func (s *Store) get(ctx context.Context) (*corev1.ConfigMap, error) {
	cm, err := s.client.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cm, err
}

func (s *Store) decode(cm *corev1.ConfigMap) (stage.State, error) {
	var st stage.State
	if cm == nil || cm.Data[DataKey] == "" {
		return st, nil
	}
	if err := json.Unmarshal([]byte(cm.Data[DataKey]), &st); err != nil {
		return st, permanent{fmt.Errorf("ConfigMap %s/%s key %s is not the promoter's state (%v); "+
			"fix or delete the key (approvals, verifications and pauses are then forgotten)", s.namespace, s.name, DataKey, err)}
	}
	return st, nil
}

// permanent marks an error retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retry runs op until it succeeds, fails permanently or ctx is done. Conflicts and
// AlreadyExists (two writers racing) retry at once; other API errors back off.
func (s *Store) retry(ctx context.Context, what string, op func() error) error {
	wait := s.backoff
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) || !retriable(err) {
			return s.wrap(what, err)
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			s.log.Debug("state ConfigMap changed meanwhile; reading it again", "configmap", s.namespace+"/"+s.name, "attempt", attempt)
			if ctx.Err() != nil {
				return s.wrap(what, err)
			}
			continue
		}
		s.log.Warn("state ConfigMap unavailable; retrying", "configmap", s.namespace+"/"+s.name, "op", what, "attempt", attempt, "retryIn", wait.String(), "error", err.Error())
		// Jitter so two replicas coming back from an outage do not retry in lock step.
		d := wait/2 + rand.N(wait/2+1)
		if serr := s.sleep(ctx, d); serr != nil {
			return s.wrap(what, fmt.Errorf("%w (gave up: %v)", err, serr))
		}
		wait = min(2*wait, s.maxBackoff)
	}
}

// retriable says whether an API error may go away by itself. Forbidden, Invalid and the like
// need a human (RBAC, a bad object) and fail at once.
func retriable(err error) bool {
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsInvalid(err),
		apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err),
		apierrors.IsRequestEntityTooLargeError(err):
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

func (s *Store) wrap(what string, err error) error {
	hint := ""
	if apierrors.IsForbidden(err) {
		hint = "; give the promoter's ServiceAccount get, create and update on this ConfigMap (manifests/promoter has the Role)"
	}
	return fmt.Errorf("%s promoter state in ConfigMap %s/%s: %w%s", what, s.namespace, s.name, err, hint)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
