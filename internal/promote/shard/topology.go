package shard

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// seen remembers, per Lease, the renewal last read and when this replica first read it. A
// Lease is alive until its duration has passed since then on this replica's clock: the
// holder's renewTime is only compared for change, never with this clock, so a holder whose
// clock runs behind is not taken over early (client-go's leader election does the same with
// its observedTime). A Lease seen for the first time counts as just renewed.
type seen map[string]observation

type observation struct {
	renewal string // holder and renewTime as read
	at      time.Time
}

// alive says whether l is held and its holder renewed it within its duration, timed from when
// this replica saw the renewal; now is this replica's clock.
func (s seen) alive(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		delete(s, l.Name)
		return false
	}
	renewal := *l.Spec.HolderIdentity + "@" + l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	o, ok := s[l.Name]
	if !ok || o.renewal != renewal {
		o = observation{renewal: renewal, at: now}
		s[l.Name] = o
	}
	return now.Before(o.at.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// topology says whether this replica's --shards is the one acting, recorded in the topology
// Lease: replicas counting shards differently map stages to other shards and must never act
// at once (a rolling update of --shards 16 → 8 has both alive). The count in the Lease acts,
// and its replicas renew it; a replica of another count waits (it stays Ready: readiness
// does not depend on holding shards) until that Lease expires or is released by the count's
// last replica leaving, and also while a replica of an older promoter is alive (a member or
// shard Lease without a count, or the one leader's Lease of a promoter without shards). Then
// it takes the Lease; the Leases of the shards it then acquires are free or expired.
func (m *Manager) topology(ctx context.Context, leases map[string]*coordinationv1.Lease, now time.Time) bool {
	t := leases[m.TopologyLease()]
	if t != nil && m.seen.alive(t, now) {
		if !m.counts(t) {
			m.wait(fmt.Sprintf("replicas with --shards %s act (topology Lease %s)", t.Annotations[ShardsAnnotation], t.Name))
			return false
		}
		if *t.Spec.HolderIdentity != m.cfg.Identity {
			// Its holder renews it; should it die, the Lease expires and this replica takes
			// it (no other count holds shards then).
			return m.acting()
		}
		l := t.DeepCopy()
		m.stamp(l, m.cfg.Identity, now)
		if err := m.write(ctx, l, true); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			m.log.Warn("renewing the topology Lease failed", "lease", t.Name, "error", err.Error())
		}
		return m.acting()
	}
	if why := m.olderAlive(ctx, leases, now); why != "" {
		m.wait(why)
		return false
	}
	l := m.newLease(m.TopologyLease(), "topology")
	if t != nil {
		l = t.DeepCopy()
	}
	m.stamp(l, m.cfg.Identity, now)
	if err := m.write(ctx, l, t != nil); err != nil {
		if ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			m.log.Warn("taking the topology Lease failed", "lease", l.Name, "error", err.Error())
		}
		return false
	}
	m.log.Info("this --shards acts now", "shards", m.cfg.Shards, "lease", l.Name)
	return m.acting()
}

// olderAlive names a replica of another count that may still act, "" when there is none: one
// holding a shard Lease, or one of an older promoter, which acts without the topology Lease.
// A member of another count holding no shard waits as this one does, and does not count (or
// two counts starting together would wait for each other).
func (m *Manager) olderAlive(ctx context.Context, leases map[string]*coordinationv1.Lease, now time.Time) string {
	for _, l := range leases {
		kind := l.Labels[KindLabel]
		if (kind != "member" && kind != "shard") || m.counts(l) || !m.seen.alive(l, now) {
			continue
		}
		c := l.Annotations[ShardsAnnotation]
		switch {
		case c == "":
			return fmt.Sprintf("a replica of an older promoter is alive (Lease %s)", l.Name)
		case kind == "shard":
			return fmt.Sprintf("a replica with --shards %s still holds a shard (Lease %s)", c, l.Name)
		}
	}
	// A promoter without shards holds one Lease, named as the prefix, and no label.
	cctx, cancel := context.WithTimeout(ctx, m.cfg.RenewDeadline)
	defer cancel()
	l, err := m.cfg.Client.CoordinationV1().Leases(m.cfg.Namespace).Get(cctx, m.cfg.Prefix, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ""
	case err != nil:
		return fmt.Sprintf("the Lease %s of a promoter without shards could not be read (%v)", m.cfg.Prefix, err)
	case m.seen.alive(l, now):
		return fmt.Sprintf("a promoter without shards leads (Lease %s, held by %s)", l.Name, *l.Spec.HolderIdentity)
	}
	return ""
}

// wait logs, once per reason, why this replica does not act.
func (m *Manager) wait(why string) {
	if m.waiting != why {
		m.log.Info("not acting: waiting for replicas with another shard count to stop; this replica stays ready and serves the API", "why", why, "shards", m.cfg.Shards)
		m.waiting = why
	}
}

// acting notes that this replica's count acts.
func (m *Manager) acting() bool {
	if m.waiting != "" {
		m.log.Info("replicas with another shard count are gone; acting", "shards", m.cfg.Shards)
		m.waiting = ""
	}
	return true
}

// Others watches, for a promoter without shards (--shards 1), the Leases of replicas with
// shards sharing its Lease name as their prefix: after winning its Lease it waits (Await)
// until none is alive, so a rolling update from --shards N to 1 never has both acting. Leases
// expire as seen here (see seen).
type Others struct {
	client            kubernetes.Interface
	namespace, prefix string
	clock             clock.WithTicker
	seen              seen
}

// NewOthers watches the Leases of prefix in namespace; clk nil is the wall clock.
func NewOthers(client kubernetes.Interface, namespace, prefix string, clk clock.WithTicker) *Others {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Others{client: client, namespace: namespace, prefix: prefix, clock: clk, seen: seen{}}
}

// Alive names a replica with shards still alive, "" when there is none.
func (o *Others) Alive(ctx context.Context) (string, error) {
	ls, err := o.client.CoordinationV1().Leases(o.namespace).List(ctx, metav1.ListOptions{LabelSelector: SetLabel + "=" + o.prefix})
	if err != nil {
		return "", fmt.Errorf("listing the Leases of replicas with shards (%s=%s): %w", SetLabel, o.prefix, err)
	}
	now := o.clock.Now()
	for i := range ls.Items {
		if l := &ls.Items[i]; o.seen.alive(l, now) {
			return fmt.Sprintf("a replica with --shards %s is alive (Lease %s)", or(l.Annotations[ShardsAnnotation], "of an older promoter"), l.Name), nil
		}
	}
	return "", nil
}

// Await returns once Alive finds none (asked every retry), or with ctx's error.
func (o *Others) Await(ctx context.Context, retry time.Duration, log *slog.Logger) error {
	t := o.clock.NewTicker(retry)
	defer t.Stop()
	logged := ""
	for {
		why, err := o.Alive(ctx)
		if err != nil {
			why = err.Error()
		}
		if why == "" {
			if logged != "" {
				log.Info("replicas with shards are gone; acting")
			}
			return nil
		}
		if why != logged {
			log.Info("not acting yet: waiting for replicas with shards to stop; this replica stays ready", "why", why)
			logged = why
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
		}
	}
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
