package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/pass"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/webhook"
	"github.com/kropipe/kropipe/internal/version"
)

// ServeConfig is `promoter run`'s settings (flags in brackets); cmd/promoter checks them
// first, so its errors can name the flags.
type ServeConfig struct {
	Addr         string // the API listener (--addr)
	Token        string // the API's token file content (api.ParseTokens); "" for none (--token-file)
	RequireToken bool   // refuse API calls without Token: Addr is reachable from other machines

	Interval    time.Duration // time between passes (--interval); 0: only on notifications and actions
	PassTimeout time.Duration // limit of one pass (--pass-timeout)

	WebhookAddr   string // registry notifications; "" for none (--webhook-addr)
	WebhookSecret string // the secret every notification carries (--webhook-secret-file)

	Logger *slog.Logger
}

// Serve runs the API (and, with cfg.WebhookAddr, the registry notification listener) and
// the poll loop until ctx is done. Passes run under work, which outlives ctx by the
// shutdown grace (pass.Outliving): the pass running when the signal comes finishes first.
func Serve(ctx, work context.Context, e *stage.Engine, cfg ServeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval < 0 || cfg.PassTimeout <= 0 {
		return errors.New("run: the interval and the pass timeout must be positive")
	}
	if cfg.Interval == 0 && cfg.WebhookAddr == "" {
		return errors.New("run: an interval of 0 (passes on notifications only) needs the notification listener")
	}
	var hook http.Handler
	if cfg.WebhookAddr != "" {
		h, err := NotificationHandler(cfg.WebhookSecret, e, log)
		if err != nil {
			return err
		}
		hook = h
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (another promoter running? pick another port with --addr)", cfg.Addr, err)
	}
	handler := api.New(e, api.WithToken(cfg.Token), api.WithRequireToken(cfg.RequireToken), api.WithLogger(log))
	pipeline := page.Mount(handler, e, page.WithLogger(log))
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	// The pipeline page's event streams never go idle: Shutdown would wait for them.
	srv.RegisterOnShutdown(pipeline.Close)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	servers := []*http.Server{srv}
	if hook != nil {
		hln, err := net.Listen("tcp", cfg.WebhookAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("listening on %s for registry notifications (--webhook-addr): %w", cfg.WebhookAddr, err)
		}
		hs := &http.Server{Handler: hook, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, hs)
		go func() { served <- hs.Serve(hln) }()
		log.Info("receiving registry notifications", "addr", hln.Addr().String(), "path", webhook.Path)
	}
	log.Info("promoter running", "addr", ln.Addr().String(), "interval", cfg.Interval.String(), "stages", len(e.Specs()), "version", version.Version)

	// With no interval, passes run only when asked for (a notification, an approval).
	var ticks <-chan time.Time
	if cfg.Interval > 0 {
		tick := time.NewTicker(cfg.Interval)
		defer tick.Stop()
		ticks = tick.C
	}
	// idle: housekeeping (clone compaction) runs a while after a pass, unless another one
	// is asked for first; the pass a notification asks for never waits for it.
	idle := time.NewTimer(stage.HousekeepAfter)
	defer idle.Stop()
	// kicked: the pass was asked for through Kicks (a notification runs only its stages).
	kicked := false
	for {
		run := e.Reconcile
		if kicked {
			run = e.ReconcileKicked
		}
		kicked = false
		if err := pass.Run(work, cfg.PassTimeout, run); err != nil {
			log.Warn("pass finished with failures", "err", err)
		}
		idle.Reset(stage.HousekeepAfter)
		// A soak ending before the next tick (or with no ticks at all) gets its pass then.
		var wake <-chan time.Time
		if d := e.WakeAfter(0); d > 0 {
			wake = time.After(d)
		}
		if kicked, err = waitForPass(ctx, e, ticks, wake, idle.C, served); err != nil || ctx.Err() != nil {
			break
		}
	}
	log.Info("shutting down", "passes", e.Passes())
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Shutdown(sctx))
	}
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// waitForPass waits until a pass is due: a tick, a soak's end (wake), or a kick (kicked, a
// targeted pass). When idle fires first it does the engine's housekeeping and goes on
// waiting. It returns when ctx is done, or with the error of a server that stopped.
func waitForPass(ctx context.Context, e *stage.Engine, ticks, wake, idle <-chan time.Time, served <-chan error) (kicked bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case err := <-served:
			return false, fmt.Errorf("HTTP server stopped: %w", err)
		case <-ticks:
			return false, nil
		case <-wake:
			return false, nil
		case <-e.Kicks():
			return true, nil
		case <-idle:
			e.Housekeep(ctx) // a signal stops it at once, unlike a pass
		}
	}
}

// NotificationHandler is run's webhook listener: a registry's push makes e's stages reading the
// pushed repositories due at once, a forge's pull request event the stage proposing from its
// branch (webhook.ForgePath).
func NotificationHandler(secret string, e *stage.Engine, log *slog.Logger) (http.Handler, error) {
	h, err := webhook.NewHandler(secret, func(_ context.Context, pushes []webhook.Push) ([]string, error) {
		return e.Notify(webhook.Repositories(pushes)...), nil
	}, log)
	if err != nil {
		return nil, err
	}
	fh, err := webhook.NewForgeHandler(secret, func(_ context.Context, ev forge.Event, _ webhook.Delivery) ([]string, error) {
		return e.NotifyPullRequest(ev), nil
	}, log)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	h.Register(mux)
	fh.Register(mux)
	return mux, nil
}
