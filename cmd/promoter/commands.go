package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/local"
	"github.com/kropipe/kropipe/internal/promote/pass"
	"github.com/kropipe/kropipe/internal/promote/printers"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
	"github.com/kropipe/kropipe/internal/version"
)

// globals are the flags every command shares.
type globals struct {
	config    string
	addr      string
	dataDir   string
	tokenFile string
	tokenName string
	logLevel  string
	// registryTimeout bounds each registry request.
	registryTimeout time.Duration
	sigstoreTUF     string // --sigstore-tuf-url
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
	g.register(root.PersistentFlags())
	root.AddCommand(
		newRunCommand(g),
		newControllerCommand(g),
		newStatusCommand(g),
		newPromoteCommand(g),
		newRollbackCommand(g),
		newApproveCommand(g),
		newVerifyCommand(g),
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

// register adds the flags every command shares.
func (g *globals) register(f *pflag.FlagSet) {
	f.StringVarP(&g.config, "config", "c", "", "promoter.yaml to work from directly (local mode)")
	f.StringVar(&g.addr, "addr", api.DefaultAddr, "API address: where run listens, and which promoter the other commands talk to without --config")
	f.StringVar(&g.dataDir, "data-dir", "", "where persistent clones and state live (default $XDG_STATE_HOME/kropipe or ~/.local/state/kropipe)")
	f.StringVar(&g.tokenFile, "token-file", "", "file holding the API bearer token (also KROPIPE_TOKEN), or lines \"name: token\" whose names the commits record as who asked; required by run when --addr is not loopback")
	f.StringVar(&g.tokenName, "token-name", "", "which token of a --token-file of named tokens the command sends (default: the only one, or \"api\")")
	f.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&g.sigstoreTUF, "sigstore-tuf-url", signature.PublicGoodTUF, "TUF repository the public-good Sigstore trusted root is read from, daily, for keyless signature policies without a trustedRoot (cached under --data-dir/sigstore-tuf); \"\" uses the root built into the binary, which lacks keys added since")
	f.DurationVar(&g.registryTimeout, "registry-timeout", warehouse.DefaultRequestTimeout, "limit for each registry request, answer body included; a registry slower than this fails only its own stages for the pass")
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

// apiAuth reads the API token and refuses to serve a listener others can reach without one;
// instead says what to do about it ("give --token-file ... or ...").
func (g *globals) apiAuth(reachableBy, instead string) (token string, loopback bool, err error) {
	token, err = api.ReadToken(g.tokenFile, g.getenv)
	if err != nil {
		return "", false, err
	}
	if _, err := api.ParseTokens(token); err != nil {
		return "", false, fmt.Errorf("--token-file (or KROPIPE_TOKEN): %w", err)
	}
	if loopback, err = api.IsLoopback(g.addr); err != nil {
		return "", false, err
	}
	if !loopback && token == "" {
		return "", false, fmt.Errorf("--addr %s is reachable from %s: %s", g.addr, reachableBy, instead)
	}
	return token, loopback, nil
}

func (g *globals) stateDir() (string, error) { return local.StateDir(g.dataDir, g.getenv) }

// engine builds the local-mode engine from --config.
func (g *globals) engine(_ context.Context, log *slog.Logger, extra ...stage.Option) (*stage.Engine, *config.Config, error) {
	dir, err := g.stateDir()
	if err != nil {
		return nil, nil, err
	}
	return local.Open(g.config, dir, g.registryTimeout, g.sigstoreTUF, log, extra...)
}

// backend is what the stage commands act on: the repository itself or a running promoter.
type backend interface {
	Stages(ctx context.Context) ([]stage.Status, error)
	// The actions take the value the stage is expected to run (see stage.Expect).
	Promote(ctx context.Context, name, tag, expect string) (stage.Outcome, error)
	Rollback(ctx context.Context, name, to, expect string) (stage.Outcome, error)
	PromoteMember(ctx context.Context, name, tag, expect string) (stage.Outcome, error)
	RollbackMember(ctx context.Context, name, to, expect string) (stage.Outcome, error)
	Approve(ctx context.Context, name, tag, expect string) (string, error)
	Pause(ctx context.Context, name string, paused bool) error
	History(ctx context.Context, name string) (api.History, error)
	Reverify(ctx context.Context, name string) (string, error)
}

// onBackend is a stage command's RunE: run with the backend --config or --addr names.
func (g *globals) onBackend(run func(ctx context.Context, b backend, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		b, err := g.backend(cmd.Context())
		if err != nil {
			return err
		}
		return run(cmd.Context(), b, args)
	}
}

func (g *globals) backend(ctx context.Context) (backend, error) {
	if g.config != "" {
		e, _, err := g.engine(ctx, g.logger())
		if err != nil {
			return nil, err
		}
		return local.Backend{E: e, By: g.requester()}, nil
	}
	raw, err := api.ReadToken(g.tokenFile, g.getenv)
	if err != nil {
		return nil, err
	}
	ts, err := api.ParseTokens(raw)
	if err != nil {
		return nil, fmt.Errorf("--token-file (or KROPIPE_TOKEN): %w", err)
	}
	tok, err := ts.Pick(g.tokenName)
	if err != nil {
		return nil, err
	}
	// The promoter records the token's name; the user's own counts where it takes actions
	// without a token.
	return api.NewClient(g.addr, tok, &http.Client{Timeout: 2 * time.Minute}).As(g.requester()), nil
}

// requester is who the command acts for: $USER@host (the commits' Kropipe-Requested-By in
// local mode).
func (g *globals) requester() string {
	name := g.getenv("USER")
	if name == "" {
		name = g.getenv("LOGNAME")
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	host, _ := os.Hostname()
	if host == "" {
		return name
	}
	return name + "@" + host
}

func newRunCommand(g *globals) *cobra.Command {
	var (
		interval time.Duration
		wf       webhookFlags
		limits   passFlags
		once     bool
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
			if err := limits.check(); err != nil {
				return err
			}
			work, stop := pass.Outliving(ctx, limits.grace, log)
			defer stop()
			if once {
				err := pass.Run(work, limits.timeout, e.Reconcile)
				printers.Table(g.stdout, e.Status())
				return local.OnceError(err, e.Status())
			}
			if interval = local.Interval(cfg, interval, cmd.Flags().Changed("interval")); interval < 0 || interval == 0 && wf.addr == "" {
				return errors.New("--interval must be positive, e.g. 5m (0, passes on registry notifications only, needs --webhook-addr)")
			}
			secret, err := wf.readSecret(g)
			if err != nil {
				return err
			}
			tok, loopback, err := g.apiAuth("other machines", "give --token-file (or KROPIPE_TOKEN) so only holders of the token can promote, or listen on 127.0.0.1")
			if err != nil {
				return err
			}
			return local.Serve(ctx, work, e, local.ServeConfig{
				Addr: g.addr, Token: tok, RequireToken: !loopback,
				Interval: interval, PassTimeout: limits.timeout,
				WebhookAddr: wf.addr, WebhookSecret: secret, Logger: log,
			})
		},
	}
	limits.register(cmd.Flags())
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Minute, "time between passes (the config's interval wins when this flag is not given); 0 with --webhook-addr: no polling, passes on notifications, approvals and resumes only")
	wf.register(cmd.Flags())
	cmd.Flags().BoolVar(&once, "once", false, "do one pass and exit; non-zero if any stage failed")
	return cmd
}

func newStatusCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [STAGE]",
		Short: "Show every stage (or one): current tag, candidate, decision and why",
		Args:  cobra.MaximumNArgs(1),
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			sts, err := b.Stages(ctx)
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
			return printers.Status(g.stdout, sts, output)
		}),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table; wide (adds pull request URLs); json (as GET /api/v1/stages)")
	return cmd
}

// expectFlag is --expect: the value an action expects the stage to run. Without it the
// command reads the stage's status first and expects what it shows, so an action retried
// after an unknown outcome (a timeout) is refused instead of done twice.
type expectFlag struct{ value string }

func (f *expectFlag) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.value, "expect", "", "the value the stage must still run (a release group: its set, e.g. \"develop-frontend=1.2.2, develop-backend=2.1.0\") or nothing is done (default: what promoter status shows now)")
}

// of is the expected value for the stage: --expect, else the status's current value.
func (f *expectFlag) of(ctx context.Context, b backend, name string) (string, error) {
	if f.value != "" {
		return f.value, nil
	}
	sts, err := b.Stages(ctx)
	if err != nil {
		return "", err
	}
	for _, st := range sts {
		if st.Name == name {
			return st.CurrentTag, nil
		}
	}
	return "", nil // the promoter names the unknown stage
}

// unanswered adds to an action's error, when the promoter gave no answer at all (a timeout, a
// dropped connection), that its outcome is unknown and how to act again safely: with the same
// expected value, which the promoter refuses if the stage moved meanwhile.
func unanswered(err error, verb, name, want string) error {
	var se *api.StatusError
	if err == nil || errors.As(err, &se) || want == "" {
		return err
	}
	var sterr *stage.StageError
	if errors.As(err, &sterr) || errors.Is(err, stage.ErrMoved) || errors.Is(err, stage.ErrNothingToDo) {
		return err // the engine's own answer (local mode)
	}
	return fmt.Errorf("%w\nwhether %s was done is not known: promoter status %s shows what it runs; to act again only if it still runs %s: promoter %s %s --expect %q", err, verb, name, want, verb, name, want)
}

func newPromoteCommand(g *globals) *cobra.Command {
	var (
		member bool
		expect expectFlag
	)
	cmd := &cobra.Command{
		Use:   "promote STAGE [TAG]",
		Short: "Promote TAG (default: the stage's candidate) to STAGE now",
		Long: "promote commits TAG to the stage at once, past soak, approval and pause. The tag must exist in the registry.\n" +
			"For a release group (STAGE is the group, e.g. develop/shop) TAG is member=tag pairs, e.g.\n" +
			"frontend=1.2.3,backend=2.1.0, written in one commit; a member of a group moves alone only with --member.",
		Args: cobra.RangeArgs(1, 2),
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			promote := b.Promote
			if member {
				promote = b.PromoteMember
			}
			want, err := expect.of(ctx, b, args[0])
			if err != nil {
				return err
			}
			out, err := promote(ctx, args[0], optionalArg(args, 1), want)
			if err != nil {
				return unanswered(err, "promote", args[0], want)
			}
			printers.Outcome(g.stdout, out)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&member, "member", false, "promote a member of a release group alone ("+stage.MemberAloneWarning+")")
	expect.register(cmd.Flags())
	return cmd
}

// optionalArg is args[i], or "" when it was not given.
func optionalArg(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

func newRollbackCommand(g *globals) *cobra.Command {
	var (
		to     string
		member bool
		expect expectFlag
	)
	cmd := &cobra.Command{
		Use:   "rollback STAGE [--to TAG]",
		Short: "Roll STAGE back to its previous tag (from Git history) or to --to",
		Long: "rollback commits `Roll back image from X to Y` with a Kropipe-Rejected: X trailer; X is then\n" +
			"never promoted to the stage automatically again, newer tags are.",
		Args: cobra.ExactArgs(1),
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			rollback := b.Rollback
			if member {
				rollback = b.RollbackMember
			}
			want, err := expect.of(ctx, b, args[0])
			if err != nil {
				return err
			}
			out, err := rollback(ctx, args[0], to, want)
			if err != nil {
				return unanswered(err, "rollback", args[0], want)
			}
			printers.Outcome(g.stdout, out)
			return nil
		}),
	}
	cmd.Flags().StringVar(&to, "to", "", "tag to roll back to (default: the one before the current, from Git history); for a release group member=tag pairs")
	cmd.Flags().BoolVar(&member, "member", false, "roll a member of a release group back alone ("+stage.MemberAloneWarning+")")
	expect.register(cmd.Flags())
	return cmd
}

func newApproveCommand(g *globals) *cobra.Command {
	var expect expectFlag
	cmd := &cobra.Command{
		Use:   "approve STAGE [TAG]",
		Short: "Let a stage with autoPromote: false take TAG (default: its candidate)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			want, err := expect.of(ctx, b, args[0])
			if err != nil {
				return err
			}
			v, err := b.Approve(ctx, args[0], optionalArg(args, 1), want)
			if err != nil {
				return unanswered(err, "approve", args[0], want)
			}
			fmt.Fprintf(g.stdout, "approved %s for %s; it is promoted on the next pass\n", v, args[0])
			return nil
		}),
	}
	expect.register(cmd.Flags())
	return cmd
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
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			if err := b.Pause(ctx, args[0], pause); err != nil {
				return err
			}
			word := "resumed"
			if pause {
				word = "paused"
			}
			fmt.Fprintf(g.stdout, "%s %s\n", args[0], word)
			return nil
		}),
	}
}

func newHistoryCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history STAGE",
		Short: "List a stage's promotions and rollbacks from Git",
		Args:  cobra.ExactArgs(1),
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			h, err := b.History(ctx, args[0])
			if err != nil {
				return err
			}
			printers.History(g.stdout, h)
			return nil
		}),
	}
}
