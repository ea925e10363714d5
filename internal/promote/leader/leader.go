// Package leader makes one promoter replica at a time the writer: the replicas campaign for a
// coordination.k8s.io Lease, and only the holder runs the promotion loop.
package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults are client-go's usual durations: a dead leader is replaced within about
// LeaseDuration, a leader that cannot renew for RenewDeadline stops itself first, and the
// LeaseDuration-RenewDeadline gap is the time it has to finish before anyone else may start.
const (
	DefaultName          = "kropipe-promoter"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config says which Lease to campaign for and as whom.
type Config struct {
	Client kubernetes.Interface
	// Namespace and Name locate the Lease (Name default DefaultName).
	Namespace string
	Name      string
	// Identity is this replica's name in the Lease (default: Identity()).
	Identity string
	// Durations; zero means the default.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// OnNewLeader, when set, is told the identity of every leader this replica observes,
	// itself included; a standby uses it to say where the leader is.
	OnNewLeader func(identity string)
}

// Identity returns $POD_NAME (or the host name, which is the pod's name in a pod) plus a
// random suffix: a restarted process must never inherit its predecessor's lease while that
// one could still be finishing a push.
func Identity() string {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	if name == "" {
		name = "promoter"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return name + "_" + hex.EncodeToString(b)
}

// CheckDurations refuses Lease timings that cannot fence. A Lease stores its duration in whole
// seconds and the other replicas time its expiry from that (from when they saw it renewed): a
// lease duration of 1500ms would be written as 1s, and a renew deadline of 1200ms would let
// another replica start while this one still works. The errors name the flags.
func CheckDurations(leaseDuration, renewDeadline, retryPeriod time.Duration) error {
	switch {
	case leaseDuration < time.Second || leaseDuration%time.Second != 0:
		return fmt.Errorf("--lease-duration %s: a Lease keeps whole seconds (the other replicas read it from there); give at least 1s in whole seconds, e.g. %s", leaseDuration, max(time.Second, leaseDuration.Round(time.Second)))
	case renewDeadline <= 0 || renewDeadline >= leaseDuration:
		return fmt.Errorf("--renew-deadline %s must be positive and shorter than --lease-duration %s: a replica that could not renew stops its work then, before another may take its Lease", renewDeadline, leaseDuration)
	case retryPeriod <= 0 || retryPeriod*6/5 >= renewDeadline:
		// client-go's elector jitters the retry period by up to 1.2.
		return fmt.Errorf("--retry-period %s must be positive and, with 20%% jitter, shorter than --renew-deadline %s", retryPeriod, renewDeadline)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Identity == "" {
		c.Identity = Identity()
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Run campaigns for the Lease until ctx is done. Each time this replica becomes leader it
// calls onStartedLeading with a context that ends when leadership is lost or ctx is done;
// once that call has returned it calls onStoppedLeading and campaigns again.
//
// On shutdown the Lease is released (so the other replica takes over at once instead of after
// LeaseDuration), but only after onStartedLeading has returned. client-go's ReleaseOnCancel is
// not used: it releases as soon as renewing stops — also when renewing failed for
// RenewDeadline, before the work has even been cancelled — which would let the next leader
// start while this one is still pushing. A lease lost that way is left to expire.
func Run(ctx context.Context, cfg Config, onStartedLeading func(ctx context.Context), onStoppedLeading func()) error {
	cfg = cfg.withDefaults()
	if cfg.Client == nil || cfg.Namespace == "" {
		return errors.New("leader election needs a Kubernetes client and the promoter's namespace (--namespace)")
	}
	if err := CheckDurations(cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod); err != nil {
		return fmt.Errorf("lease %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	log := cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	for ctx.Err() == nil {
		if err := campaign(ctx, cfg, lock, log, onStartedLeading, onStoppedLeading); err != nil {
			return err
		}
	}
	return nil
}

// campaign runs one election: it returns when this replica lost the lease it held, or ctx
// ended.
func campaign(ctx context.Context, cfg Config, lock resourcelock.Interface, log *slog.Logger, onStarted func(context.Context), onStopped func()) error {
	electorCtx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElector()

	var (
		mu      sync.Mutex
		working chan struct{} // closed when onStarted returns; nil while not leading
	)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            cfg.Name,
		LeaseDuration:   cfg.LeaseDuration,
		RenewDeadline:   cfg.RenewDeadline,
		RetryPeriod:     cfg.RetryPeriod,
		ReleaseOnCancel: false,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leCtx context.Context) {
				done := make(chan struct{})
				mu.Lock()
				working = done
				mu.Unlock()
				defer close(done)
				// The work ends when leadership is lost (leCtx) or the process stops (ctx).
				workCtx, cancel := context.WithCancel(leCtx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				log.Info("leading: this replica promotes")
				onStarted(workCtx)
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if id != cfg.Identity {
					log.Info("another replica leads; standing by", "leader", id)
				}
				if cfg.OnNewLeader != nil {
					cfg.OnNewLeader(id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("lease %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}

	// Shutdown: wait for the work, then end the elector, which releases the lease.
	go func() {
		select {
		case <-ctx.Done():
		case <-electorCtx.Done():
			return
		}
		mu.Lock()
		done := working
		mu.Unlock()
		if done != nil {
			<-done
		}
		stopElector()
	}()

	elector.Run(electorCtx)

	mu.Lock()
	done := working
	mu.Unlock()
	if done != nil {
		// Lost (or gave up) the lease: the work's context is already cancelled; wait for it
		// before campaigning again, so this replica never runs two loops.
		<-done
		log.Info("stopped leading")
		if ctx.Err() != nil {
			release(lock, cfg, log)
		}
		if onStopped != nil {
			onStopped()
		}
	}
	return nil
}

// release gives the Lease up after a clean shutdown, as client-go's ReleaseOnCancel would,
// but only now that the work has returned: the other replica may start at once.
func release(lock resourcelock.Interface, cfg Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.RenewDeadline)
	defer cancel()
	rec, _, err := lock.Get(ctx)
	if err != nil {
		log.Warn("lease not released; the other replica takes over when it expires", "error", err.Error())
		return
	}
	if rec.HolderIdentity != cfg.Identity {
		return
	}
	now := metav1.NewTime(time.Now())
	if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions:    rec.LeaderTransitions,
		LeaseDurationSeconds: 1,
		RenewTime:            now,
		AcquireTime:          now,
	}); err != nil {
		log.Warn("lease not released; the other replica takes over when it expires", "error", err.Error())
		return
	}
	log.Info("lease released")
}
