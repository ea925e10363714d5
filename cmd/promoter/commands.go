package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
	"github.com/kropipe/kropipe/internal/promote/webhook"
	"github.com/kropipe/kropipe/internal/version"
)

// globals are the flags every command shares.
type globals struct {
	config    string
	addr      string
	dataDir   string
	tokenFile string
	logLevel  string
	// registryTimeout bounds each registry request.
	registryTimeout time.Duration
	stdout          io.Writer
	stderr          io.Writer
	getenv          func(string) string
}

func newRootCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, getenv: getenv}
	root := &cobra.Command{
		Use:   "promoter",
		Short: "Promote new image tags through stages by committing them to Git",
		Long: "promoter watches image registries and writes each stage's new tag into its instance.yaml\n" +
			"in the GitOps repository: one commit per promotion, rollbacks as commits too.\n\n" +
			"Commands that act on stages work either on the repository itself (--config promoter.yaml)\n" +
			"or against a running promoter's API (--addr, default " + api.DefaultAddr + ").",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.PersistentFlags()
	f.StringVarP(&g.config, "config", "c", "", "promoter.yaml to work from directly (local mode)")
	f.StringVar(&g.addr, "addr", api.DefaultAddr, "API address: where run listens, and which promoter the other commands talk to without --config")
	f.StringVar(&g.dataDir, "data-dir", "", "where persistent clones and state live (default $XDG_STATE_HOME/kropipe or ~/.local/state/kropipe)")
	f.StringVar(&g.tokenFile, "token-file", "", "file holding the API bearer token (also KROPIPE_TOKEN); required by run when --addr is not loopback")
	f.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&g.registryTimeout, "registry-timeout", warehouse.DefaultRequestTimeout, "limit for each registry request, answer body included; a registry slower than this fails only its own stages for the pass")
	root.AddCommand(
		newRunCommand(g),
		newControllerCommand(g),
		newStatusCommand(g),
		newPromoteCommand(g),
		newRollbackCommand(g),
		newApproveCommand(g),
		newPauseCommand(g, true),
		newPauseCommand(g, false),
		newHistoryCommand(g),
		&cobra.Command{
			Use:   "version",
			Short: "Print the promoter's version",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(stdout, "promoter", version.Version) },
		},
	)
	if newDemoCommand != nil {
		root.AddCommand(newDemoCommand(g))
	}
	return root
}

// newDemoCommand makes `promoter demo`; nil in a binary built with -tags nodemo (demo.go).
var newDemoCommand func(g *globals) *cobra.Command

func (g *globals) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: g.level()}))
}

// level is --log-level; a value slog does not know means info.
func (g *globals) level() slog.Level {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return lvl
}

func (g *globals) token() (string, error) {
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("--token-file %s is empty", g.tokenFile)
		}
		return t, nil
	}
	return strings.TrimSpace(g.getenv("KROPIPE_TOKEN")), nil
}

// apiAuth reads the API token and refuses to serve a listener others can reach without one;
// instead says what to do about it ("give --token-file ... or ...").
func (g *globals) apiAuth(reachableBy, instead string) (token string, loopback bool, err error) {
	token, err = g.token()
	if err != nil {
		return "", false, err
	}
	if loopback, err = isLoopback(g.addr); err != nil {
		return "", false, err
	}
	if !loopback && token == "" {
		return "", false, fmt.Errorf("--addr %s is reachable from %s: %s", g.addr, reachableBy, instead)
	}
	return token, loopback, nil
}

func (g *globals) stateDir() (string, error) {
	if g.dataDir != "" {
		return filepath.Abs(g.dataDir)
	}
	if d := g.getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "kropipe"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no --data-dir and no home directory: pass --data-dir DIR")
	}
	return filepath.Join(home, ".local", "state", "kropipe"), nil
}

// engine builds the local-mode engine from --config.
func (g *globals) engine(ctx context.Context, log *slog.Logger, extra ...stage.Option) (*stage.Engine, *config.Config, error) {
	cfg, err := config.Load(g.config)
	if err != nil {
		return nil, nil, err
	}
	dir, err := g.stateDir()
	if err != nil {
		return nil, nil, err
	}
	wh, err := warehouse.New(append(cfg.WarehouseOptions(), warehouse.WithLogger(log), warehouse.WithRequestTimeout(g.registryTimeout))...)
	if err != nil {
		return nil, nil, err
	}
	gitOpts, err := cfg.GitOptions()
	if err != nil {
		return nil, nil, err
	}
	opts := []stage.Option{
		stage.WithWarehouse(wh),
		stage.WithGit(filepath.Join(dir, "git"), append(gitOpts, gitwrite.WithLogger(log))...),
		stage.WithStore(stage.NewFileStore(filepath.Join(dir, "state.json"))),
		stage.WithLogger(log),
	}
	e, err := stage.New(cfg.Stages, append(opts, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return e, cfg, nil
}

// backend is what the stage commands act on: the repository itself or a running promoter.
type backend interface {
	Stages(ctx context.Context) ([]stage.Status, error)
	Promote(ctx context.Context, name, tag string) (stage.Outcome, error)
	Rollback(ctx context.Context, name, to string) (stage.Outcome, error)
	Approve(ctx context.Context, name, tag string) (string, error)
	Pause(ctx context.Context, name string, paused bool) error
	History(ctx context.Context, name string) (api.History, error)
}

func (g *globals) backend(ctx context.Context) (backend, error) {
	if g.config != "" {
		e, _, err := g.engine(ctx, g.logger())
		if err != nil {
			return nil, err
		}
		return localBackend{e}, nil
	}
	tok, err := g.token()
	if err != nil {
		return nil, err
	}
	return api.NewClient(g.addr, tok, &http.Client{Timeout: 2 * time.Minute}), nil
}

// localBackend runs the engine in this process on the repository itself.
type localBackend struct{ e *stage.Engine }

func (l localBackend) Stages(ctx context.Context) ([]stage.Status, error) {
	err := l.e.Refresh(ctx)
	var se *stage.StageError
	if err != nil && !errors.As(err, &se) {
		return nil, err
	}
	return l.e.Status(), nil
}

func (l localBackend) Promote(ctx context.Context, name, tag string) (stage.Outcome, error) {
	return l.e.Promote(ctx, name, tag)
}

func (l localBackend) Rollback(ctx context.Context, name, to string) (stage.Outcome, error) {
	return l.e.Rollback(ctx, name, to)
}

func (l localBackend) Approve(ctx context.Context, name, tag string) (string, error) {
	if tag == "" {
		// The candidate is only known after a look at the registry.
		if _, err := l.Stages(ctx); err != nil {
			return "", err
		}
	}
	return l.e.Approve(ctx, name, tag)
}

func (l localBackend) Pause(ctx context.Context, name string, paused bool) error {
	if paused {
		return l.e.Pause(ctx, name)
	}
	return l.e.Resume(ctx, name)
}

func (l localBackend) History(ctx context.Context, name string) (api.History, error) {
	recs, err := l.e.History(ctx, name)
	if err != nil {
		return api.History{}, err
	}
	h := api.History{Stage: name}
	for _, r := range recs {
		h.Entries = append(h.Entries, api.HistoryEntry{Commit: r.Commit, Time: r.Time, Subject: r.Subject, Kind: r.Kind.String(), Image: r.Image, Value: r.Value, Previous: r.Previous, Freight: r.Freight, Rejected: r.Rejected})
	}
	return h, nil
}

func newRunCommand(g *globals) *cobra.Command {
	var (
		interval    time.Duration
		wf          webhookFlags
		once        bool
		grace       time.Duration
		passTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run --config promoter.yaml",
		Short: "Poll the registries and promote, serving the HTTP API",
		Long: "run checks every stage each --interval (and at once after an approve or resume),\n" +
			"commits due promotions and serves the API on --addr. --once does one pass, prints the\n" +
			"status table and exits non-zero if any stage failed, for CI and cron.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.config == "" {
				return errors.New("run needs --config promoter.yaml")
			}
			ctx := cmd.Context()
			log := g.logger()
			e, cfg, err := g.engine(ctx, log)
			if err != nil {
				return err
			}
			if passTimeout <= 0 || grace < 0 {
				return errors.New("--pass-timeout must be positive and --shutdown-grace not negative, e.g. --pass-timeout 10m --shutdown-grace 25s")
			}
			work, stop := outliving(ctx, grace, log)
			defer stop()
			if once {
				err := runPass(work, e, passTimeout)
				printTable(g.stdout, e.Status())
				var se *stage.StageError
				if errors.As(err, &se) {
					return fmt.Errorf("%d stage(s) failed; see REASON above", countFailed(e.Status()))
				}
				return err
			}
			if !cmd.Flags().Changed("interval") && cfg.Interval > 0 {
				interval = cfg.Interval
			}
			for _, s := range cfg.Stages {
				if s.Interval > 0 && s.Interval < interval {
					interval = s.Interval
				}
			}
			if interval <= 0 {
				return errors.New("--interval must be positive, e.g. 5m")
			}
			hook, err := wf.handler(g, e, log)
			if err != nil {
				return err
			}
			return serve(ctx, work, g, e, interval, passTimeout, wf.addr, hook, log)
		},
	}
	cmd.Flags().DurationVar(&grace, "shutdown-grace", defaultShutdownGrace, "on SIGTERM or SIGINT, how long the running pass may take to finish before it is cancelled (Kubernetes waits 30s before SIGKILL)")
	cmd.Flags().DurationVar(&passTimeout, "pass-timeout", defaultPassTimeout, "limit for one whole pass; a pass over it is cancelled and its unfinished stages fail (with --once: a non-zero exit naming this limit)")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Minute, "time between passes (the config's interval wins when this flag is not given)")
	wf.register(cmd.Flags())
	cmd.Flags().BoolVar(&once, "once", false, "do one pass and exit; non-zero if any stage failed")
	return cmd
}

// serve runs the API (and, when hook is set, the registry notification listener on
// hookAddr) and the poll loop until ctx is done. Passes run under work, which outlives
// ctx by the shutdown grace: the pass running when the signal comes finishes first.
func serve(ctx, work context.Context, g *globals, e *stage.Engine, interval, passTimeout time.Duration, hookAddr string, hook http.Handler, log *slog.Logger) error {
	tok, loopback, err := g.apiAuth("other machines", "give --token-file (or KROPIPE_TOKEN) so only holders of the token can promote, or listen on 127.0.0.1")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (another promoter running? pick another port with --addr)", g.addr, err)
	}
	srv := &http.Server{
		Handler:           api.New(e, api.WithToken(tok), api.WithRequireToken(!loopback), api.WithLogger(log)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	servers := []*http.Server{srv}
	if hook != nil {
		hln, err := net.Listen("tcp", hookAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("listening on %s for registry notifications (--webhook-addr): %w", hookAddr, err)
		}
		hs := &http.Server{Handler: hook, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, hs)
		go func() { served <- hs.Serve(hln) }()
		log.Info("receiving registry notifications", "addr", hln.Addr().String(), "path", webhook.Path)
	}
	log.Info("promoter running", "addr", ln.Addr().String(), "interval", interval.String(), "stages", len(e.Specs()), "version", version.Version)

	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := runPass(work, e, passTimeout); err != nil {
			log.Warn("pass finished with failures", "err", err)
		}
		select {
		case <-ctx.Done():
			log.Info("shutting down", "passes", e.Passes())
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var errs []error
			for _, s := range servers {
				errs = append(errs, s.Shutdown(sctx))
			}
			return errors.Join(errs...)
		case err := <-served:
			return fmt.Errorf("HTTP server stopped: %w", err)
		case <-tick.C:
		case <-e.Kicks():
		}
	}
}

func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--addr %q: %w; write host:port such as 127.0.0.1:8080", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

func countFailed(sts []stage.Status) int {
	n := 0
	for _, s := range sts {
		if s.Failed() {
			n++
		}
	}
	return n
}

func newStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [STAGE]",
		Short: "Show every stage (or one): current tag, candidate, decision and why",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			sts, err := b.Stages(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var one []stage.Status
				for _, s := range sts {
					if s.Name == args[0] {
						one = append(one, s)
					}
				}
				if len(one) == 0 {
					return fmt.Errorf("unknown stage %q", args[0])
				}
				sts = one
			}
			printTable(g.stdout, sts)
			return nil
		},
	}
}

func newPromoteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote STAGE [TAG]",
		Short: "Promote TAG (default: the stage's candidate) to STAGE now",
		Long:  "promote commits TAG to the stage at once, past soak, approval and pause. The tag must exist in the registry.",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			out, err := b.Promote(cmd.Context(), args[0], optionalArg(args, 1))
			if err != nil {
				return err
			}
			printOutcome(g.stdout, out)
			return nil
		},
	}
}

// optionalArg is args[i], or "" when it was not given.
func optionalArg(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

func newRollbackCommand(g *globals) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "rollback STAGE [--to TAG]",
		Short: "Roll STAGE back to its previous tag (from Git history) or to --to",
		Long: "rollback commits `Roll back image from X to Y` with a Kropipe-Rejected: X trailer; X is then\n" +
			"never promoted to the stage automatically again, newer tags are.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			out, err := b.Rollback(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			printOutcome(g.stdout, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "tag to roll back to (default: the one before the current, from Git history)")
	return cmd
}

func newApproveCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "approve STAGE [TAG]",
		Short: "Let a stage with autoPromote: false take TAG (default: its candidate)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			v, err := b.Approve(cmd.Context(), args[0], optionalArg(args, 1))
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "approved %s for %s; it is promoted on the next pass\n", v, args[0])
			return nil
		},
	}
}

func newPauseCommand(g *globals, pause bool) *cobra.Command {
	use, short := "resume STAGE", "Let automatic promotions to STAGE continue"
	if pause {
		use, short = "pause STAGE", "Stop automatic promotions to STAGE (manual ones still work)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			if err := b.Pause(cmd.Context(), args[0], pause); err != nil {
				return err
			}
			word := "resumed"
			if pause {
				word = "paused"
			}
			fmt.Fprintf(g.stdout, "%s %s\n", args[0], word)
			return nil
		},
	}
}

func newHistoryCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history STAGE",
		Short: "List a stage's promotions and rollbacks from Git",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			h, err := b.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printHistory(g.stdout, h)
			return nil
		},
	}
}
