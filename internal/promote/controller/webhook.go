package controller

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/leader"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/webhook"
)

// notifyEngine tells e about the pushes: the stages reading those repositories are due at once.
func notifyEngine(e *stage.Engine, pushes []webhook.Push) []string {
	return e.Notify(webhook.Repositories(pushes)...)
}

// webhookURL is where the other replicas reach this one's notification listener: the host is
// --webhook-addr's, else $POD_IP; "" when neither gives one.
func (cfg *Config) webhookURL() string {
	u := cfg.reachableURL(cfg.WebhookAddr)
	if u == "" {
		return ""
	}
	return u + webhook.Path
}

// leaseWebhookAnnotation on the promoter's Lease holds the leader's notification URL.
const leaseWebhookAnnotation = "kropipe.io/webhook"

// notify is the controller's webhook.Notify: the leader's engine; on a standby, the leader's
// listener as its Lease advertises it. When that fails the answer is 503 (registries that
// retry deliver the notification again; polling remains).
func (g gate) notify(ctx context.Context, pushes []webhook.Push) ([]string, error) {
	e, err := g.engine()
	if err == nil && g.c.shards != nil {
		return g.notifyAll(ctx, e, pushes), nil
	}
	if err == nil {
		return notifyEngine(e, pushes), nil
	}
	return g.toLeader(ctx, err, func(hc *http.Client, registryURL string) ([]string, error) {
		return webhook.Forward(ctx, hc, registryURL, g.c.f.WebhookSecret, pushes)
	})
}

// toLeader is how a standby (notReady: why it has no engine) hands a notification or a forge
// event to the leader: send gets the leader's notification URL as its Lease advertises it.
// Anything in the way answers ErrUnavailable (503), so the sender delivers it again.
func (g gate) toLeader(ctx context.Context, notReady error, send func(hc *http.Client, registryURL string) ([]string, error)) ([]string, error) {
	if webhook.Forwarded(ctx) || !g.c.f.LeaderElect {
		return nil, fmt.Errorf("%w: %w", webhook.ErrUnavailable, notReady)
	}
	lease, lerr := g.c.kube.CoordinationV1().Leases(g.c.f.Namespace).Get(ctx, leader.DefaultName, metav1.GetOptions{})
	url := ""
	if lerr == nil {
		url = lease.Annotations[leaseWebhookAnnotation]
	}
	if url == "" {
		return nil, fmt.Errorf("%w: %w (and the leader advertises no notification listener)", webhook.ErrUnavailable, notReady)
	}
	stages, err := send(&http.Client{Timeout: 10 * time.Second}, url)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", webhook.ErrUnavailable, err)
	}
	return stages, nil
}

// advertiseWebhook writes the leader's notification URL into its Lease, so a standby that
// receives a notification passes it on. The host is --webhook-addr's, else $POD_IP. It runs
// before every pass (one GET when the annotation is there): a Lease written without it, by
// anyone, gets it back.
func (c *controller) advertiseWebhook(ctx context.Context) {
	if c.f.WebhookAddr == "" || !c.f.LeaderElect || c.shards != nil {
		return // with shards, each member Lease carries its replica's URL (newSharding)
	}
	url := c.f.webhookURL()
	if url == "" {
		c.log.Warn("not advertising the notification listener: --webhook-addr has no host and $POD_IP is unset; a standby answers notifications with 503")
		return
	}
	written := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		leases := c.kube.CoordinationV1().Leases(c.f.Namespace)
		l, err := leases.Get(ctx, leader.DefaultName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Annotations[leaseWebhookAnnotation] == url {
			return nil
		}
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[leaseWebhookAnnotation] = url
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		written = err == nil
		return err
	})
	if err != nil {
		c.log.Warn("could not advertise the notification listener in the Lease; a standby answers notifications with 503", "error", err.Error())
		return
	}
	// Info only when it changed the Lease: this runs before every pass.
	if written {
		c.log.Info("notification listener advertised", "url", url)
	}
}

// notifyAll is notify with shards: this replica's engine runs its own stages of the pushed
// repositories, and the notification goes on to every other live replica for theirs (a
// registry sends it to one of them). A replica that cannot be reached is logged: its stages
// see the tag at their next scheduled pass.
func (g gate) notifyAll(ctx context.Context, e *stage.Engine, pushes []webhook.Push) []string {
	stages := notifyEngine(e, pushes)
	if webhook.Forwarded(ctx) {
		return stages
	}
	return append(stages, g.passOn("registry notification not passed on to another replica; its stages see the tag at their next pass", func(hc *http.Client, registryURL string) ([]string, error) {
		return webhook.Forward(ctx, hc, registryURL, g.c.f.WebhookSecret, pushes)
	})...)
}

// passOn sends to every other live replica's listener (send gets its registry notification
// URL) and gathers the stages they name; a replica that cannot be reached is logged with
// failed.
func (g gate) passOn(failed string, send func(hc *http.Client, registryURL string) ([]string, error)) []string {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		stages []string
	)
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, m := range g.c.shards.mgr.Members() {
		if m.Webhook == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			theirs, err := send(hc, m.Webhook)
			if err != nil {
				g.c.log.Warn(failed, "replica", m.Identity, "error", err.Error())
				return
			}
			mu.Lock()
			stages = append(stages, theirs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return stages
}

// notifyPullRequest is the controller's webhook.NotifyPullRequest: the engine running the
// stage wakes it. With shards the event goes, as it came, to every other replica too (only the
// owner of the stage has it); a standby passes it to the leader.
func (g gate) notifyPullRequest(ctx context.Context, ev forge.Event, d webhook.Delivery) ([]string, error) {
	e, err := g.engine()
	if err == nil {
		stages := e.NotifyPullRequest(ev)
		if g.c.shards == nil || webhook.Forwarded(ctx) {
			return stages, nil
		}
		return append(stages, g.passOn("forge event not passed on to another replica; its stages ask the forge at their next poll", func(hc *http.Client, registryURL string) ([]string, error) {
			return webhook.ForwardForge(ctx, hc, forgeURL(registryURL), d)
		})...), nil
	}
	return g.toLeader(ctx, err, func(hc *http.Client, registryURL string) ([]string, error) {
		return webhook.ForwardForge(ctx, hc, forgeURL(registryURL), d)
	})
}

// forgeURL is the forge listener beside a replica's registry notification listener.
func forgeURL(registryURL string) string {
	return strings.TrimSuffix(registryURL, webhook.Path) + webhook.ForgePath
}
