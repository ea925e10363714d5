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

// readSecret returns the secret notifications must carry, "" when --webhook-addr is not set.
func (w *webhookFlags) readSecret(g *globals) (string, error) {
	if w.addr == "" {
		return "", nil
	}
	secret := g.getenv("KROPIPE_WEBHOOK_SECRET")
	if w.secretFile != "" {
		b, err := os.ReadFile(w.secretFile)
		if err != nil {
			return "", fmt.Errorf("--webhook-secret-file: %w", err)
		}
		secret = string(b)
	}
	if strings.TrimSpace(secret) == "" {
		return "", fmt.Errorf("--webhook-addr %s needs a secret the registry sends with each notification: give --webhook-secret-file (mount it from a Secret) or KROPIPE_WEBHOOK_SECRET", w.addr)
	}
	return secret, nil
}

// handler returns run's notification listener, which makes e's stages reading the pushed
// repositories due at once; nil when --webhook-addr is not set.
func (w *webhookFlags) handler(g *globals, e *stage.Engine, log *slog.Logger) (http.Handler, error) {
	secret, err := w.readSecret(g)
	if err != nil || secret == "" {
		return nil, err
	}
	h, err := webhook.NewHandler(secret, func(_ context.Context, pushes []webhook.Push) ([]string, error) {
		return e.Notify(webhook.Repositories(pushes)...), nil
	}, log)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return mux, nil
}
