package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kropipe/kropipe/internal/promote/leader"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/webhook"
)

// webhookFlags configure the listener for registry push notifications of run and controller.
type webhookFlags struct {
	addr, secretFile string
	secret           string // read by handler
}

func (w *webhookFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&w.addr, "webhook-addr", "", "where to receive registry push notifications (POST "+webhook.Path+"), e.g. :8082, so a pushed tag is seen at once instead of at the next poll (default: off)")
	fl.StringVar(&w.secretFile, "webhook-secret-file", "", "file holding the secret every notification must carry (also KROPIPE_WEBHOOK_SECRET); required with --webhook-addr")
}

// handler returns the notification listener's handler, nil when --webhook-addr is not set.
func (w *webhookFlags) handler(g *globals, notify webhook.Notify, log *slog.Logger, opts ...webhook.Option) (http.Handler, error) {
	if w.addr == "" {
		return nil, nil
	}
	secret := g.getenv("KROPIPE_WEBHOOK_SECRET")
	if w.secretFile != "" {
		b, err := os.ReadFile(w.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--webhook-secret-file: %w", err)
		}
		secret = string(b)
	}
	if strings.TrimSpace(secret) == "" {
		return nil, fmt.Errorf("--webhook-addr %s needs a secret the registry sends with each notification: give --webhook-secret-file (mount it from a Secret) or KROPIPE_WEBHOOK_SECRET", w.addr)
	}
	w.secret = secret
	h, err := webhook.NewHandler(secret, notify, log, opts...)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return mux, nil
}

// notifyEngine tells e about the pushes: the stages reading those repositories are due at once.
func notifyEngine(e *stage.Engine, pushes []webhook.Push) []string {
	repos := make([]string, len(pushes))
	for i, p := range pushes {
		repos[i] = p.Repository
	}
	return e.Notify(repos...)
}

// leaseWebhookAnnotation on the promoter's Lease holds the leader's notification URL.
const leaseWebhookAnnotation = "kropipe.io/webhook"

// notify is the controller's webhook.Notify: the leader's engine; on a standby, the leader's
// listener as its Lease advertises it. When that fails the answer is 503 (registries that
// retry deliver the notification again; polling remains).
func (g gate) notify(ctx context.Context, pushes []webhook.Push) ([]string, error) {
	e, err := g.engine()
	if err == nil {
		return notifyEngine(e, pushes), nil
	}
	if webhook.Forwarded(ctx) || !g.c.f.leaderElect {
		return nil, fmt.Errorf("%w: %w", webhook.ErrUnavailable, err)
	}
	lease, lerr := g.c.kube.CoordinationV1().Leases(g.c.f.namespace).Get(ctx, leader.DefaultName, metav1.GetOptions{})
	url := ""
	if lerr == nil {
		url = lease.Annotations[leaseWebhookAnnotation]
	}
	if url == "" {
		return nil, fmt.Errorf("%w: %w (and the leader advertises no notification listener)", webhook.ErrUnavailable, err)
	}
	stages, ferr := webhook.Forward(ctx, &http.Client{Timeout: 10 * time.Second}, url, g.c.f.webhook.secret, pushes)
	if ferr != nil {
		return nil, fmt.Errorf("%w: %w", webhook.ErrUnavailable, ferr)
	}
	return stages, nil
}

// advertiseWebhook writes the leader's notification URL into its Lease, so a standby that
// receives a notification passes it on. The host is --webhook-addr's, else $POD_IP. It runs
// before every pass (one GET when the annotation is there): a Lease written without it, by
// anyone, gets it back.
func (c *controller) advertiseWebhook(ctx context.Context) {
	if c.f.webhook.addr == "" || !c.f.leaderElect {
		return
	}
	host, port, err := net.SplitHostPort(c.f.webhook.addr)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = c.g.getenv("POD_IP")
	}
	if host == "" {
		c.log.Warn("not advertising the notification listener: --webhook-addr has no host and $POD_IP is unset; a standby answers notifications with 503")
		return
	}
	url := "http://" + net.JoinHostPort(host, port) + webhook.Path
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		leases := c.kube.CoordinationV1().Leases(c.f.namespace)
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
		return err
	})
	if err != nil {
		c.log.Warn("could not advertise the notification listener in the Lease; a standby answers notifications with 503", "error", err.Error())
		return
	}
	c.log.Info("notification listener advertised", "url", url)
}
