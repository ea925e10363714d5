package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/leader"
)

// Labels and annotations of the Leases a Manager writes.
const (
	// SetLabel carries the Leases' prefix: the replicas sharing it share the shards.
	SetLabel = "kropipe.io/shard-set"
	// KindLabel is "member" (one per replica) or "shard" (one per shard).
	KindLabel = "kropipe.io/lease-kind"
	// AddressAnnotation is where a member's API is reached by the other replicas.
	AddressAnnotation = "kropipe.io/api-address"
	// PodAnnotation names the pod holding a member slot, for humans.
	PodAnnotation = "kropipe.io/pod"
	// WebhookAnnotation is where a member receives registry notifications.
	WebhookAnnotation = "kropipe.io/webhook"
	// ShardsAnnotation is the --shards of the replica that wrote a Lease: replicas counting
	// differently map stages to other shards, so they never act at once (see Manager).
	ShardsAnnotation = "kropipe.io/shards"
)

// Defaults are leader's: a holder that cannot renew for RenewDeadline stops its work, and
// nobody takes its shard before LeaseDuration has passed since its last renewal.
const (
	DefaultLeaseDuration = leader.DefaultLeaseDuration
	DefaultRenewDeadline = leader.DefaultRenewDeadline
	DefaultRetryPeriod   = leader.DefaultRetryPeriod
)

// Config says which shards there are and who this replica is.
type Config struct {
	Client    kubernetes.Interface
	Namespace string
	// Prefix names the Leases: <Prefix>-member-<slot> and <Prefix>-shard-<n>, each for 0 to
	// Shards-1: fixed names, so the Role can grant exactly them.
	Prefix string
	// Shards is how many shards the stages are spread over (>= 1); every replica must agree.
	// There are as many member slots: replicas beyond them stand by until a slot frees up.
	Shards int
	// Identity is this process's holder identity (leader.Identity(): unique per process).
	Identity string
	// Member is the pod's name, written next to the identity for humans.
	Member string
	// Address is the URL the other replicas reach this replica's API at ("" for none).
	Address string
	// Webhook is the URL of this replica's registry notification listener ("" for none).
	Webhook string
	// Durations; zero means the default.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Logger                                    *slog.Logger
	// Clock is the time Leases are renewed and observed by (default the wall clock).
	Clock clock.WithTickerAndDelayedExecution
	// Work runs while this replica holds shard n; its context ends when the shard is lost
	// (not renewed within RenewDeadline), moves to another member, or the Manager stops.
	// It must return soon after: the Lease is released only after it returned.
	Work func(ctx context.Context, shard int)
}

// Member is a live replica.
type Member struct {
	Identity, Address, Webhook string
}

// Manager registers this replica, campaigns for the shards rendezvous hashing gives it and
// runs their Work while it holds their Leases.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	members map[string]Member // live members by identity, as last listed
	holders map[int]string    // shard → identity of its live holder, as last listed
	held    map[int]*hold
	works   sync.WaitGroup
	full    bool // as many replicas of this count as --shards were members at the last look (logged once)

	clock clock.WithTickerAndDelayedExecution
	// seen is when each Lease's renewal was first observed here: a Lease expires its
	// duration after that, on this replica's clock, whatever its holder's clock wrote (as
	// client-go's leader election times it).
	seen seen
	// waiting is why this replica does not act, as last logged ("" while it acts).
	waiting string
}

// hold is a shard this replica holds.
type hold struct {
	cancel    context.CancelFunc
	done      chan struct{}
	watchdog  clock.Timer
	lastRenew time.Time
	moving    bool // given up for another member: renewed until its work returned
}

// New checks cfg and returns a Manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.Client == nil || cfg.Namespace == "" {
		return nil, errors.New("sharding needs a Kubernetes client and the promoter's namespace (--namespace)")
	}
	if cfg.Shards < 1 {
		return nil, fmt.Errorf("--shards is %d; it must be at least 1", cfg.Shards)
	}
	if cfg.Identity == "" || cfg.Member == "" || cfg.Prefix == "" || cfg.Work == nil {
		return nil, errors.New("sharding needs an identity, a member name, a Lease prefix and the work to run")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if err := leader.CheckDurations(cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod); err != nil {
		return nil, fmt.Errorf("shard Leases: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Manager{
		cfg: cfg, log: cfg.Logger.With("identity", cfg.Identity),
		members: map[string]Member{}, holders: map[int]string{}, held: map[int]*hold{},
		clock: cfg.Clock, seen: seen{},
	}, nil
}

// TopologyLease is the Lease recording which --shards acts now.
func (m *Manager) TopologyLease() string { return TopologyLeaseName(m.cfg.Prefix) }

// TopologyLeaseName is the name of the Lease recording which --shards acts now.
func TopologyLeaseName(prefix string) string { return prefix + "-topology" }

// MemberLease and ShardLease are the Leases' names.
func (m *Manager) MemberLease(slot int) string { return m.cfg.Prefix + "-member-" + strconv.Itoa(slot) }
func (m *Manager) ShardLease(n int) string     { return ShardLeaseName(m.cfg.Prefix, n) }

// ShardLeaseName is the name of shard n's Lease.
func ShardLeaseName(prefix string, n int) string { return prefix + "-shard-" + strconv.Itoa(n) }

// Shards is how many shards there are.
func (m *Manager) Shards() int { return m.cfg.Shards }

// Identity is this replica's holder identity.
func (m *Manager) Identity() string { return m.cfg.Identity }

// Holder returns the live member holding shard n, as last listed; ok is false when nobody
// holds it (a takeover under way).
func (m *Manager) Holder(n int) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.holders[n]
	if !ok {
		return Member{}, false
	}
	if id == m.cfg.Identity {
		return Member{Identity: id, Address: m.cfg.Address}, true
	}
	mem, ok := m.members[id]
	return mem, ok
}

// Members returns the live members but this one, by identity.
func (m *Manager) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for id, mem := range m.members {
		if id != m.cfg.Identity {
			out = append(out, mem)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	return out
}

// Run registers and campaigns until ctx ends; then it stops every Work, waits for them,
// releases their Leases and leaves, so the other replicas take the shards over at once.
func (m *Manager) Run(ctx context.Context) error {
	t := m.clock.NewTicker(m.cfg.RetryPeriod)
	defer t.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			m.stop()
			return nil
		case <-t.C():
		}
	}
}

// tick is one round: list the Leases, renew this member, then per shard renew, acquire or
// give up as the live members' rendezvous says.
func (m *Manager) tick(ctx context.Context) {
	leases, err := m.list(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("listing the shard Leases failed; holding what is held until the renew deadline", "error", err.Error())
		}
		m.renewHeld(ctx, nil, false)
		return
	}
	now := m.clock.Now()
	registered := m.register(ctx, leases, now)

	// The members counting as this one does: the others map stages to other shards.
	live := map[string]Member{}
	for _, l := range leases {
		if l.Labels[KindLabel] == "member" && m.seen.alive(l, now) && m.counts(l) {
			id := *l.Spec.HolderIdentity
			live[id] = Member{Identity: id, Address: l.Annotations[AddressAnnotation], Webhook: l.Annotations[WebhookAnnotation]}
		}
	}
	if registered && ctx.Err() == nil {
		live[m.cfg.Identity] = Member{Identity: m.cfg.Identity, Address: m.cfg.Address, Webhook: m.cfg.Webhook}
	}
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	holders := map[int]string{}
	for n := 0; n < m.cfg.Shards; n++ {
		if l := leases[m.ShardLease(n)]; l != nil && m.seen.alive(l, now) {
			holders[n] = *l.Spec.HolderIdentity
		}
	}
	m.mu.Lock()
	m.members, m.holders = live, holders
	m.mu.Unlock()

	m.renewHeld(ctx, leases, false)
	if ctx.Err() != nil || !registered {
		return
	}
	// After the shards' renewals: the topology Lease is renewed no earlier than they are, so
	// once it expired theirs have too.
	if !m.topology(ctx, leases, now) {
		return
	}
	owners := Assign(m.cfg.Shards, ids)
	// Taken concurrently: a dead member's shards all expire at once, and one request after
	// another would add their round trips to the takeover.
	var wg sync.WaitGroup
	for n := 0; n < m.cfg.Shards; n++ {
		m.mu.Lock()
		_, mine := m.held[n]
		m.mu.Unlock()
		if mine || owners[n] != m.cfg.Identity {
			continue
		}
		l := leases[m.ShardLease(n)]
		if l != nil && m.seen.alive(l, now) && *l.Spec.HolderIdentity != m.cfg.Identity {
			continue // its holder still runs; it lets go when it sees this member (or dies)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.acquire(ctx, n, l)
		}()
	}
	wg.Wait()
}

// renewHeld renews every held shard still owned, stops those that moved, and releases those
// whose work has ended. leases is nil when the list failed: nothing is renewed then, and the
// watchdogs stop the work when the renew deadline passes.
//
// stopping (the Manager's Run ended; ctx is a fresh one for the last renewals) gives every
// shard up.
func (m *Manager) renewHeld(ctx context.Context, leases map[string]*coordinationv1.Lease, stopping bool) {
	var ids []string
	if leases != nil {
		now := m.clock.Now()
		for _, l := range leases {
			if l.Labels[KindLabel] == "member" && m.seen.alive(l, now) && m.counts(l) {
				ids = append(ids, *l.Spec.HolderIdentity)
			}
		}
		if !stopping && !contains(ids, m.cfg.Identity) {
			ids = append(ids, m.cfg.Identity)
		}
	}
	owners := Assign(m.cfg.Shards, ids)
	m.mu.Lock()
	shards := make([]int, 0, len(m.held))
	for n := range m.held {
		shards = append(shards, n)
	}
	m.mu.Unlock()
	sort.Ints(shards)
	for _, n := range shards {
		m.mu.Lock()
		h := m.held[n]
		m.mu.Unlock()
		select {
		case <-h.done:
			// The work returned: lost, moved or stopping. Let the Lease go if still ours.
			h.watchdog.Stop()
			m.mu.Lock()
			delete(m.held, n)
			m.mu.Unlock()
			if leases != nil {
				m.release(n, leases[m.ShardLease(n)])
			}
			continue
		default:
		}
		if leases == nil {
			continue
		}
		if stopping || n >= len(owners) || owners[n] != m.cfg.Identity {
			// Moved to a new member (or stopping): end the work, and keep renewing until it
			// has returned (a pass may take a while to stop), so the new owner never starts
			// while it runs; the Lease is released once it is done.
			if !h.moving {
				m.log.Info("shard moves to another replica; stopping its work", "shard", n)
				h.moving = true
				h.cancel()
			}
		}
		m.renew(ctx, n, h, leases[m.ShardLease(n)])
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// counts says whether l was written by a replica with this one's --shards.
func (m *Manager) counts(l *coordinationv1.Lease) bool {
	return l.Annotations[ShardsAnnotation] == strconv.Itoa(m.cfg.Shards)
}

func (m *Manager) list(ctx context.Context) (map[string]*coordinationv1.Lease, error) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.RenewDeadline)
	defer cancel()
	ls, err := m.cfg.Client.CoordinationV1().Leases(m.cfg.Namespace).List(cctx, metav1.ListOptions{LabelSelector: SetLabel + "=" + m.cfg.Prefix})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*coordinationv1.Lease, len(ls.Items))
	for i := range ls.Items {
		out[ls.Items[i].Name] = &ls.Items[i]
	}
	return out, nil
}

func (m *Manager) newLease(name, kind string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: m.cfg.Namespace,
		Labels: map[string]string{SetLabel: m.cfg.Prefix, KindLabel: kind, "app.kubernetes.io/managed-by": "kropipe-promoter"},
	}}
}

// write creates l (when it was not listed) or updates it (a compare-and-swap on the version
// listed: a replica that raced this one wins, this one tries again next round).
func (m *Manager) write(ctx context.Context, l *coordinationv1.Lease, exists bool) error {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.RenewDeadline)
	defer cancel()
	leases := m.cfg.Client.CoordinationV1().Leases(m.cfg.Namespace)
	var err error
	if !exists {
		_, err = leases.Create(cctx, l, metav1.CreateOptions{})
	} else {
		_, err = leases.Update(cctx, l, metav1.UpdateOptions{})
	}
	return err
}

func (m *Manager) stamp(l *coordinationv1.Lease, holder string, at time.Time) {
	secs := int32(m.cfg.LeaseDuration / time.Second) // whole seconds: New checked
	t := metav1.NewMicroTime(at)
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[ShardsAnnotation] = strconv.Itoa(m.cfg.Shards)
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.RenewTime = &t
}

// register renews this replica's member slot, or claims a free one (the lowest whose Lease
// is free or expired). At most --shards replicas of this count are members (another would
// have no shard to run); the slots of replicas with another --shards neither count towards
// that nor are taken, so in a rolling update the new count registers beside the old one
// however many old replicas there are. It says whether this replica is a member now.
func (m *Manager) register(ctx context.Context, leases map[string]*coordinationv1.Lease, now time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	taken, same := map[string]bool{}, 0
	for name, l := range leases {
		if l.Labels[KindLabel] != "member" {
			continue
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == m.cfg.Identity {
			return m.claim(ctx, name, l, now)
		}
		if m.seen.alive(l, now) {
			taken[name] = true
			if m.counts(l) {
				same++
			}
		}
	}
	if same >= m.cfg.Shards {
		if !m.full {
			m.log.Warn("as many replicas as --shards are members already: this replica stands by until one leaves", "shards", m.cfg.Shards)
			m.full = true
		}
		return false
	}
	m.full = false
	free := 0
	for taken[m.MemberLease(free)] {
		free++
	}
	return m.claim(ctx, m.MemberLease(free), leases[m.MemberLease(free)], now)
}

// claim writes the member slot name with this replica's identity, address and a fresh renew
// time.
func (m *Manager) claim(ctx context.Context, name string, cur *coordinationv1.Lease, now time.Time) bool {
	l := m.newLease(name, "member")
	if cur != nil {
		l = cur.DeepCopy()
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AddressAnnotation] = m.cfg.Address
	l.Annotations[PodAnnotation] = m.cfg.Member
	l.Annotations[WebhookAnnotation] = m.cfg.Webhook
	m.stamp(l, m.cfg.Identity, now)
	if err := m.write(ctx, l, cur != nil); err != nil {
		if ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			m.log.Warn("renewing this replica's member Lease failed", "lease", l.Name, "error", err.Error())
		}
		return false
	}
	return true
}

// acquire takes shard n's Lease (free, expired or released) and starts its work.
func (m *Manager) acquire(ctx context.Context, n int, cur *coordinationv1.Lease) {
	l := m.newLease(m.ShardLease(n), "shard")
	var transitions int32
	if cur != nil {
		l = cur.DeepCopy()
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != m.cfg.Identity {
			transitions++
		}
	}
	// The renew time is taken before the request: the work's deadline counts from it, so
	// it ends before anyone else may see the Lease expired.
	at := m.clock.Now()
	m.stamp(l, m.cfg.Identity, at)
	acq := metav1.NewMicroTime(at)
	l.Spec.AcquireTime = &acq
	l.Spec.LeaseTransitions = &transitions
	if err := m.write(ctx, l, cur != nil); err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) && ctx.Err() == nil {
			m.log.Warn("acquiring a shard Lease failed", "shard", n, "lease", l.Name, "error", err.Error())
		}
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	h := &hold{cancel: cancel, done: make(chan struct{}), lastRenew: at}
	h.watchdog = m.clock.AfterFunc(m.cfg.RenewDeadline-m.clock.Since(at), m.fenced(n, cancel))
	m.mu.Lock()
	m.held[n] = h
	m.holders[n] = m.cfg.Identity
	m.mu.Unlock()
	m.log.Info("holding shard: this replica promotes its stages", "shard", n, "lease", l.Name)
	m.works.Add(1)
	go func() {
		defer m.works.Done()
		defer close(h.done)
		defer cancel()
		m.cfg.Work(wctx, n)
	}()
}

// fenced is the watchdog's action: the renew deadline passed without a renewal.
func (m *Manager) fenced(n int, cancel context.CancelFunc) func() {
	return func() {
		m.log.Warn("shard Lease not renewed within the renew deadline; stopping its work before another replica may take it", "shard", n, "renewDeadline", m.cfg.RenewDeadline.String())
		cancel()
	}
}

// renew writes a fresh renew time on a held shard's Lease and pushes its watchdog back.
func (m *Manager) renew(ctx context.Context, n int, h *hold, cur *coordinationv1.Lease) {
	if cur == nil || cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != m.cfg.Identity {
		m.log.Warn("shard Lease taken by another replica; stopping its work", "shard", n)
		h.cancel()
		return
	}
	l := cur.DeepCopy()
	at := m.clock.Now()
	m.stamp(l, m.cfg.Identity, at)
	if err := m.write(ctx, l, true); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("renewing a shard Lease failed", "shard", n, "error", err.Error())
		}
		return
	}
	m.mu.Lock()
	h.lastRenew = at
	m.mu.Unlock()
	// A watchdog that already fired has cancelled the work for good: Reset does not undo it.
	h.watchdog.Reset(m.cfg.RenewDeadline - m.clock.Since(at))
}

// release lets a shard's Lease go after its work returned, so the next owner need not wait
// for it to expire.
func (m *Manager) release(n int, cur *coordinationv1.Lease) {
	if cur == nil || cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != m.cfg.Identity {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.RenewDeadline)
	defer cancel()
	l := cur.DeepCopy()
	m.stamp(l, "", m.clock.Now())
	if err := m.write(ctx, l, true); err != nil {
		m.log.Warn("shard Lease not released; the next owner takes it when it expires", "shard", n, "error", err.Error())
		return
	}
	m.log.Info("shard released", "shard", n)
}

// stop ends every work, waits for them, releases their Leases and deletes the membership
// Lease.
func (m *Manager) stop() {
	m.mu.Lock()
	for _, h := range m.held {
		h.moving = true
		h.cancel()
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() {
		m.works.Wait()
		close(done)
	}()
	// Until every work has returned its shards stay renewed: nobody else starts on them while
	// a pass is still stopping. renewHeld releases each once its work is done.
	ctx := context.Background()
	t := m.clock.NewTicker(m.cfg.RetryPeriod)
	defer t.Stop()
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		case <-t.C():
		}
		leases, err := m.list(ctx)
		if err != nil {
			if finished {
				return // the Leases expire; the watchdogs stopped nothing that still ran
			}
			continue
		}
		m.renewHeld(ctx, leases, true)
		m.mu.Lock()
		left := len(m.held)
		m.mu.Unlock()
		if finished && left == 0 {
			m.leave(ctx, leases)
			return
		}
	}
}

// leave frees this replica's member slot, so the others see it gone at once, and, when no
// other replica of its --shards is left, the topology Lease, so replicas of another --shards
// (a rolling update) start at once.
func (m *Manager) leave(ctx context.Context, leases map[string]*coordinationv1.Lease) {
	now := m.clock.Now()
	last := true
	for _, l := range leases {
		if l.Labels[KindLabel] != "member" || l.Spec.HolderIdentity == nil {
			continue
		}
		if *l.Spec.HolderIdentity != m.cfg.Identity {
			if m.seen.alive(l, now) && m.counts(l) {
				last = false
			}
			continue
		}
		l = l.DeepCopy()
		m.stamp(l, "", now)
		if err := m.write(ctx, l, true); err != nil {
			m.log.Warn("member Lease not released; the others notice when it expires", "error", err.Error())
		}
	}
	if t := leases[m.TopologyLease()]; last && t != nil && m.counts(t) {
		t = t.DeepCopy()
		m.stamp(t, "", now)
		if err := m.write(ctx, t, true); err != nil && !apierrors.IsConflict(err) {
			m.log.Warn("topology Lease not released; replicas of another --shards start when it expires", "error", err.Error())
		}
	}
}
