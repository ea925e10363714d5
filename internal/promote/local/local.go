// Package local is the promoter without a cluster: the engine built from promoter.yaml with
// clones and state on disk, the commands acting on it, and `run`'s poll loop and listeners.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// Open builds the engine of the promoter.yaml at path, with persistent clones under
// dataDir/git, the state in dataDir/state.json and the proven digests in dataDir/digests.json; each registry request is bounded by
// registryTimeout (0 or less: warehouse.DefaultRequestTimeout). Keyless signature policies
// without a trustedRoot verify with the public-good Sigstore root from the TUF repository at
// sigstoreTUF (its cache in dataDir/sigstore-tuf; "": the root embedded in the binary).
func Open(path, dataDir string, registryTimeout time.Duration, sigstoreTUF string, log *slog.Logger, extra ...stage.Option) (*stage.Engine, *config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	// The proven digests outlive the process: `run --once` from cron then costs one tag
	// list per repository when nothing is new.
	wh, err := warehouse.New(append(cfg.WarehouseOptions(), warehouse.WithLogger(log), warehouse.WithRequestTimeout(registryTimeout),
		warehouse.WithDigestFile(filepath.Join(dataDir, "digests.json")))...)
	if err != nil {
		return nil, nil, err
	}
	// Signatures are read through the warehouse's transport, credentials and insecure hosts.
	publicGood, err := signature.NewPublicGoodRoot(sigstoreTUF, filepath.Join(dataDir, "sigstore-tuf"), signature.WithTUFLogger(log))
	if err != nil {
		return nil, nil, err
	}
	sigs, err := stage.NewSignatureVerifier(wh, clock.RealClock{}, signature.WithPublicGoodRoot(publicGood))
	if err != nil {
		return nil, nil, err
	}
	gitOpts, err := cfg.GitOptions()
	if err != nil {
		return nil, nil, err
	}
	signer, err := cfg.Signer()
	if err != nil {
		return nil, nil, err
	}
	if signer != nil {
		gitOpts = append(gitOpts, gitwrite.WithSigner(signer))
		log.Info("signing commits", "format", signer.Format(), "key", signer.KeyID(), "author", cfg.Git.Author.Email)
	}
	// Pull-request mode's forge credentials are read once, when a stage first needs its forge:
	// a promoter.yaml without such stages needs none.
	forges := func(ctx context.Context, s stage.Spec) (forge.Forge, error) {
		fc, err := cfg.ForgeCredentials()
		if err != nil {
			return nil, err
		}
		return stage.DefaultForge(s, fc)
	}
	opts := []stage.Option{
		stage.WithWarehouse(wh),
		stage.WithSignatureVerifier(sigs),
		stage.WithForges(forges),
		stage.WithGit(filepath.Join(dataDir, "git"), append(gitOpts, gitwrite.WithLogger(log))...),
		stage.WithStore(stage.NewFileStore(filepath.Join(dataDir, "state.json"))),
		stage.WithLogger(log),
		stage.WithGroups(cfg.Groups...),
	}
	e, err := stage.New(cfg.Stages, append(opts, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return e, cfg, nil
}

// Backend runs the stage commands (status, promote, rollback, ...) with the engine in this
// process, on the repository itself; api.Client does the same against a running promoter.
type Backend struct {
	E *stage.Engine
	// By is who the command acts for ($USER@host): the commits' Kropipe-Requested-By.
	By string
}

// as are the options of an action expecting expect, asked for by l.By.
func (l Backend) as(expect string) []stage.ActionOption {
	return []stage.ActionOption{stage.Expect(expect), stage.RequestedBy(l.By)}
}

// Stages looks at the registries and Git, then returns every stage's status; a stage that
// failed is in its status, not an error.
func (l Backend) Stages(ctx context.Context) ([]stage.Status, error) {
	err := l.E.Refresh(ctx)
	var se *stage.StageError
	if err != nil && !errors.As(err, &se) {
		return nil, err
	}
	return l.E.Status(), nil
}

// The actions take the value the caller expects the stage to run, "" for none (see
// stage.Expect), as api.Client's do.

func (l Backend) Promote(ctx context.Context, name, tag, expect string) (stage.Outcome, error) {
	return l.E.Promote(ctx, name, tag, l.as(expect)...)
}

func (l Backend) PromoteMember(ctx context.Context, name, tag, expect string) (stage.Outcome, error) {
	return l.E.PromoteMember(ctx, name, tag, l.as(expect)...)
}

func (l Backend) RollbackMember(ctx context.Context, name, to, expect string) (stage.Outcome, error) {
	return l.E.RollbackMember(ctx, name, to, l.as(expect)...)
}

func (l Backend) Rollback(ctx context.Context, name, to, expect string) (stage.Outcome, error) {
	return l.E.Rollback(ctx, name, to, l.as(expect)...)
}

func (l Backend) Approve(ctx context.Context, name, tag, expect string) (string, error) {
	if tag == "" {
		// The candidate is only known after a look at the registry.
		if _, err := l.Stages(ctx); err != nil {
			return "", err
		}
	}
	return l.E.Approve(ctx, name, tag, l.as(expect)...)
}

func (l Backend) Pause(ctx context.Context, name string, paused bool) error {
	if paused {
		return l.E.Pause(ctx, name, stage.RequestedBy(l.By))
	}
	return l.E.Resume(ctx, name, stage.RequestedBy(l.By))
}

func (l Backend) History(ctx context.Context, name string) (api.History, error) {
	recs, err := l.E.History(ctx, name)
	if err != nil {
		return api.History{}, err
	}
	prs, err := l.E.PullRequestLog(ctx, name)
	if err != nil {
		return api.History{}, err
	}
	as, err := l.E.Approvals(ctx, name)
	if err != nil {
		return api.History{}, err
	}
	return api.NewHistory(name, recs, prs).WithApprovals(as), nil
}

// Interval is the time between run's passes: the --interval flag when given, else the file's
// interval:, shortened by any stage's interval:.
func Interval(cfg *config.Config, flag time.Duration, flagGiven bool) time.Duration {
	interval := flag
	if !flagGiven && cfg.Interval > 0 {
		interval = cfg.Interval
	}
	for _, s := range cfg.Stages {
		if s.Interval > 0 && s.Interval < interval {
			interval = s.Interval
		}
	}
	return interval
}

// OnceError is `run --once`'s verdict on a pass that returned err: how many stages failed
// (their reasons are in the status table), or why the pass itself did not finish.
func OnceError(err error, sts []stage.Status) error {
	var se *stage.StageError
	if !errors.As(err, &se) {
		return err
	}
	n := 0
	for _, s := range sts {
		if s.Failed() {
			n++
		}
	}
	return fmt.Errorf("%d stage(s) failed; see REASON above", n)
}

// Reverify forgets the stage's verdict on the tag it runs; the next pass of `promoter run`
// runs its verify command again.
func (l Backend) Reverify(ctx context.Context, name string) (string, error) {
	// The tag the stage runs is known after a look at Git.
	if _, err := l.Stages(ctx); err != nil {
		return "", err
	}
	return l.E.Reverify(ctx, name)
}

// StateDir is where local mode keeps its clones and state: dataDir (--data-dir) when given,
// else $XDG_STATE_HOME/kropipe, else ~/.local/state/kropipe.
func StateDir(dataDir string, getenv func(string) string) (string, error) {
	if dataDir != "" {
		return filepath.Abs(dataDir)
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "kropipe"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no --data-dir and no home directory: pass --data-dir DIR")
	}
	return filepath.Join(home, ".local", "state", "kropipe"), nil
}
