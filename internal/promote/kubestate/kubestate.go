// Package kubestate keeps the promoter's approvals, verifications (and their runs) and pauses
// in ConfigMaps it owns, so a restarted or newly elected promoter forgets nothing: Stages keeps
// each stage's in the ConfigMap its name hashes to; Store is one ConfigMap.
package kubestate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

const (
	// DefaultName is the ConfigMap's name unless WithName says otherwise.
	DefaultName = "kropipe-promoter-state"
	// DataKey is the ConfigMap key holding the state as JSON.
	DataKey = "state.json"
	// SetLabel names the state ConfigMaps a ConfigMap is one of (Stages' buckets carry the
	// --state-configmap name): `kubectl delete cm -l kropipe.io/state-set=<name>` forgets it all.
	SetLabel = "kropipe.io/state-set"
	// DefaultMaxBytes bounds the JSON Save writes. A ConfigMap holds at most 1 MiB, and a
	// verification takes about 350 bytes: the engine's 50 per stage fill it at about 60
	// stages, so older verifications are dropped first (see Save).
	DefaultMaxBytes = 900 << 10
)

// Store is a stage.Store backed by one ConfigMap. Save is a compare-and-swap on the
// ConfigMap's resourceVersion: the engine is the only writer while it holds the lease, but a
// leader that lost its lease a moment ago must not silently overwrite its successor's state
// with a stale read. When the ConfigMap changed since this store last read or wrote it, Save
// merges: per stage, what this writer changed wins and everything else is the other writer's.
type Store struct {
	client    kubernetes.Interface
	namespace string
	name      string
	log       *slog.Logger
	maxBytes  int
	// backoff spaces the retries of a request the API server could not answer.
	backoff wait.Backoff
	clock   clock.Clock

	mu sync.Mutex
	// base is the state (as JSON: the caller owns and changes the maps it was given) as this
	// store last read or wrote it, at baseRV: what the caller's next Save is a change of.
	base   []byte
	baseRV string
	// found: the ConfigMap existed at the last Load, or Save wrote it.
	found bool
	// set is the SetLabel value of the ConfigMap (Stages' buckets), "" for none.
	set string
	// conflicts spaces the retries after another writer's change: ConflictRetry, or
	// SharedConflictRetry for a ConfigMap several replicas write.
	conflicts wait.Backoff
}

// Option configures a Store.
type Option func(*Store)

// WithName sets the ConfigMap's name (default DefaultName).
func WithName(name string) Option { return func(s *Store) { s.name = name } }

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// DefaultBackoff spaces the retries of a request the API server could not answer: 200ms
// doubling to 10s, jittered so two replicas coming back from an outage do not retry in lock
// step. Its Steps only bound the doubling: retries go on until the context is done.
var DefaultBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: 10 * time.Second}

// ConflictRetry spaces the retries of a save that met another writer's change (read again,
// merge, write): client-go's retry.DefaultRetry, five tries, then the conflict is the error.
var ConflictRetry = retry.DefaultRetry

// SharedConflictRetry is ConflictRetry for a ConfigMap the replicas share by design (Stages'
// buckets: each writes its own stages' entries): their passes end together, so conflicts come
// in bursts; 20 tries spread over up to a few seconds.
var SharedConflictRetry = wait.Backoff{Steps: 20, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: time.Second}

// WithBackoff replaces DefaultBackoff.
func WithBackoff(b wait.Backoff) Option { return func(s *Store) { s.backoff = b } }

// WithClock replaces the wall clock the retries wait on, for tests.
func WithClock(c clock.Clock) Option { return func(s *Store) { s.clock = c } }

// WithMaxBytes sets the largest state Save writes (default DefaultMaxBytes).
func WithMaxBytes(n int) Option { return func(s *Store) { s.maxBytes = n } }

// New returns a store for the ConfigMap in namespace (the promoter's own namespace).
func New(client kubernetes.Interface, namespace string, opts ...Option) *Store {
	s := &Store{
		client:    client,
		namespace: namespace,
		name:      DefaultName,
		maxBytes:  DefaultMaxBytes,
		log:       slog.Default(),
		backoff:   DefaultBackoff,
		conflicts: ConflictRetry,
		clock:     clock.RealClock{},
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
		if st, err = s.decode(cm); err != nil {
			return err
		}
		if cm != nil {
			s.remember([]byte(cm.Data[DataKey]), cm)
		} else {
			s.remember(nil, nil)
		}
		return nil
	})
	return st, err
}

// Read returns the state and whether the ConfigMap exists, retrying a failing API server
// until ctx is done. Unlike Load it leaves what Save merges against alone: Read and Update
// are the store's other use, one writer per stage (see Stages).
func (s *Store) Read(ctx context.Context) (st stage.State, found bool, err error) {
	err = s.retry(ctx, "read", func() error {
		cm, err := s.get(ctx)
		if err != nil {
			return err
		}
		found = cm != nil
		st, err = s.decode(cm)
		return err
	})
	return st, found, err
}

// Update changes the state in the ConfigMap by fn: fn is given the state as read now (found
// false when the ConfigMap does not exist yet) and changes it in place. The write is a
// compare-and-swap on the resourceVersion read (a create when there was none); when another
// writer came first, the ConfigMap is read again and fn called again (ConflictRetry), so fn
// must set only what its caller changed. Other API errors are retried as Save's are.
func (s *Store) Update(ctx context.Context, fn func(st *stage.State, found bool)) error {
	return s.retry(ctx, "write", func() error {
		cm, err := s.get(ctx)
		if err != nil {
			return err
		}
		st, err := s.decode(cm)
		if err != nil {
			return err
		}
		fn(&st, cm != nil)
		raw, err := s.encode(st)
		if err != nil {
			return err
		}
		return s.put(ctx, cm, raw)
	})
}

// put creates the ConfigMap holding raw (cm nil) or updates cm to hold it. The update carries
// cm's resourceVersion: the API server refuses it with a conflict if the ConfigMap changed
// since it was read.
func (s *Store) put(ctx context.Context, cm *corev1.ConfigMap, raw []byte) error {
	if cm == nil {
		_, err := s.client.CoreV1().ConfigMaps(s.namespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace, Labels: s.labels()},
			Data:       map[string]string{DataKey: string(raw)},
		}, metav1.CreateOptions{})
		return err
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[DataKey] = string(raw)
	_, err := s.client.CoreV1().ConfigMaps(s.namespace).Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// labels are the ConfigMap's labels: the promoter's, and the state set it belongs to.
func (s *Store) labels() map[string]string {
	l := map[string]string{"app.kubernetes.io/managed-by": "kropipe-promoter"}
	if s.set != "" {
		l[SetLabel] = s.set
	}
	return l
}

// Found says whether the last Load or Save found (or made) the ConfigMap: false for a store
// never written, whose empty State means "nothing yet" rather than "nothing left".
func (s *Store) Found() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.found
}

func (s *Store) remember(raw []byte, cm *corev1.ConfigMap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base, s.baseRV, s.found = raw, "", cm != nil
	if cm != nil {
		s.baseRV = cm.ResourceVersion
	}
}

// Save writes the state. When someone else wrote the ConfigMap since this store last read or
// wrote it (seen at once, or as a conflict on update) it reads again and merges by stage (see
// Store); on other API errors it backs off and retries until ctx is done, so a short API
// server outage delays a save but loses nothing.
//
// A state larger than the ConfigMap can hold loses its oldest verifications and verification
// runs first (every stage keeps as many), never a stage's newest one (what downstream stages
// and the API read), nor approvals or pauses.
func (s *Store) Save(ctx context.Context, st stage.State) error {
	return s.retry(ctx, "write", func() error {
		cm, err := s.get(ctx)
		if err != nil {
			return err
		}
		s.mu.Lock()
		baseRaw, baseRV := s.base, s.baseRV
		s.mu.Unlock()
		write := st
		if cm != nil && cm.ResourceVersion != baseRV {
			// Someone else wrote since this store's last look: keep their changes.
			theirs, err := s.decode(cm)
			if err != nil {
				return err
			}
			var base stage.State
			if len(baseRaw) > 0 {
				_ = json.Unmarshal(baseRaw, &base) // it was written or read by this store
			}
			if write, err = mergeStates(base, st, theirs); err != nil {
				return permanent{err}
			}
		}
		raw, err := s.encode(write)
		if err != nil {
			return err
		}
		if cm == nil {
			created, err := s.client.CoreV1().ConfigMaps(s.namespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{
					Name:      s.name,
					Namespace: s.namespace,
					Labels:    s.labels(),
				},
				Data: map[string]string{DataKey: string(raw)},
			}, metav1.CreateOptions{})
			if err == nil {
				s.remember(raw, created)
			}
			return err
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[DataKey] = string(raw)
		// Update carries cm's resourceVersion: the API server refuses it with a conflict if
		// the ConfigMap changed since get, and the retry merges again.
		updated, err := s.client.CoreV1().ConfigMaps(s.namespace).Update(ctx, cm, metav1.UpdateOptions{})
		if err == nil {
			s.remember(raw, updated)
		}
		return err
	})
}

// mergeStates is merge on states: per stage, what ours changed from base wins.
func mergeStates(base, ours, theirs stage.State) (stage.State, error) {
	var e [3]entries
	for i, st := range []stage.State{base, ours, theirs} {
		var err error
		if e[i], err = entriesOf(st); err != nil {
			return stage.State{}, err
		}
	}
	return merge(e[0], e[1], e[2]).state()
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
	for _, r := range st.Runs {
		longest = max(longest, len(r))
	}
	capped := func(k int) ([]byte, error) {
		c := st // the caller's state is the engine's: trim copies of the maps
		c.Verifications = make(map[string][]stage.Verification, len(st.Verifications))
		for name, v := range st.Verifications {
			c.Verifications[name] = v[max(0, len(v)-k):]
		}
		c.Runs = make(map[string][]stage.VerificationRun, len(st.Runs))
		for name, r := range st.Runs {
			c.Runs[name] = r[max(0, len(r)-k):]
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
	s.log.Warn("state too large for its ConfigMap; keeping only the newest verifications and runs of each stage", "configmap", s.namespace+"/"+s.name, "kept", bestK, "bytes", len(best))
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
// AlreadyExists (two writers racing) retry after a moment, ConflictRetry's Steps times at
// most; other API errors back off (DefaultBackoff) for as long as ctx lasts.
func (s *Store) retry(ctx context.Context, what string, op func() error) error {
	outage, conflicts := s.backoff, s.conflicts
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) || !retriable(err) {
			return s.wrap(what, err)
		}
		var d time.Duration
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			if conflicts.Steps < 1 {
				return s.wrap(what, fmt.Errorf("%w (another writer changed it %d times in a row: is a second promoter using the same ConfigMap?)", err, s.conflicts.Steps))
			}
			d = conflicts.Step()
			s.log.Debug("state ConfigMap changed meanwhile; reading it again", "configmap", s.namespace+"/"+s.name, "attempt", attempt)
		} else {
			d = outage.Step()
			s.log.Warn("state ConfigMap unavailable; retrying", "configmap", s.namespace+"/"+s.name, "op", what, "attempt", attempt, "retryIn", d.Round(time.Millisecond).String(), "error", err.Error())
		}
		if serr := s.sleep(ctx, d); serr != nil {
			return s.wrap(what, fmt.Errorf("%w (gave up: %w)", err, serr))
		}
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

func (s *Store) sleep(ctx context.Context, d time.Duration) error {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
