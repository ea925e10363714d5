package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/webhook"
)

// webhookFlags configure the listener for registry push notifications of run and controller.
type webhookFlags struct {
	addr, secretFile string
}

func (w *webhookFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&w.addr, "webhook-addr", "", "where to receive registry push notifications (POST "+webhook.Path+"), e.g. :8082, so a pushed tag is seen at once instead of at the next poll (default: off)")
	fl.StringVar(&w.secretFile, "webhook-secret-file", "", "file holding the secret every notification must carry (also KROPIPE_WEBHOOK_SECRET); required with --webhook-addr")
}

// handler returns the notification listener's handler, nil when --webhook-addr is not set.
func (w *webhookFlags) handler(g *globals, notify webhook.Notify, log *slog.Logger) (http.Handler, error) {
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
	h, err := webhook.NewHandler(secret, notify, log)
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

// notify is the controller's webhook.Notify: the leader's engine, or on a standby a 503
// naming the leader (registries that retry deliver the notification again; polling remains).
func (g gate) notify(_ context.Context, pushes []webhook.Push) ([]string, error) {
	e, err := g.engine()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", webhook.ErrUnavailable, err)
	}
	return notifyEngine(e, pushes), nil
}
