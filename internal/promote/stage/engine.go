package stage

import (
	"context"
	"errors"
	"fmt"
	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/utils/clock"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// Option configures an Engine.
type Option func(*Engine)

// WithWarehouse sets the warehouse that discovers freight (default: warehouse.New()).
func WithWarehouse(w *warehouse.Warehouse) Option { return func(e *Engine) { e.wh = w } }

// WithGit sets where persistent clones live and how they are opened.
func WithGit(dataDir string, opts ...gitwrite.Option) Option {
	return func(e *Engine) { e.dataDir, e.gitOpts = dataDir, opts }
}

// WithGitOptionsFor adds options per repository, after WithGit's, when its clone is
// opened: in the cluster each repository gets the credentials Argo CD has for it.
// An error fails the stages of that repository only.
func WithGitOptionsFor(fn func(ctx context.Context, repoURL string) ([]gitwrite.Option, error)) Option {
	return func(e *Engine) { e.gitOptsFor = fn }
}

// WithStore sets where approvals, verifications and pauses are kept (default: in memory).
func WithStore(s Store) Option { return func(e *Engine) { e.store = s } }

// WithVerifier sets how freight is verified (default: CommandVerifier).
func WithVerifier(v Verifier) Option { return func(e *Engine) { e.verifier = v } }

// WithClock replaces the wall clock, for soak tests and the demo.
func WithClock(c clock.PassiveClock) Option { return func(e *Engine) { e.clock = c } }

// WithLogger sets the structured logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithParallelism bounds concurrent registry discoveries in a pass (default 8).
func WithParallelism(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.parallel = n
		}
	}
}

// DefaultCompactAfter is how many pack files a clone may gather (one per fetch that
// brings something, one per push) before the engine compacts it after a pass: go-git
// looks objects up pack by pack and has no gc.
const DefaultCompactAfter = 50

// WithCompactAfter sets the pack count past which a clone is compacted (a fresh
// clone, gitwrite.Repo.Compact) after a pass that may write; 0 never compacts.
func WithCompactAfter(n int) Option { return func(e *Engine) { e.compactAfter = n } }

// Engine runs the pipeline of a set of stages. It is safe for concurrent use:
// passes and actions that write to Git are serialised.
type Engine struct {
	specs   []Spec // upstreams first
	byName  map[string]Spec
	wh      *warehouse.Warehouse
	dataDir string
	gitOpts []gitwrite.Option
	// gitOptsFor adds per-repository options (credentials) when a clone is opened.
	gitOptsFor func(ctx context.Context, repoURL string) ([]gitwrite.Option, error)
	store      Store
	verifier   Verifier
	// sig checks the digests of stages with signature policies (signatures.go).
	sig      signatures
	clock    clock.PassiveClock
	log      *slog.Logger
	parallel int
	// compactAfter: see WithCompactAfter.
	compactAfter int

	work    sync.Mutex // one pass or Git-writing action at a time
	stateMu sync.Mutex // one read-modify-write of the Store at a time

	mu     sync.Mutex // guards the fields below
	repos  map[string]*gitwrite.Repo
	status map[string]Status
	passes int
	kick   chan struct{}
	// targets are the stages notifications and actions asked a pass for (ReconcileKicked).
	targets map[string]bool
	// stopHousekeeping cancels a running Housekeep: a pass was asked for.
	stopHousekeeping context.CancelFunc
	// soakEnds maps a unit to when the soak it waits for ends (wake.go).
	soakEnds map[string]time.Time

	// Release groups (group.go): as configured, as checked against the stages, and each
	// group's candidate set from the last pass.
	groupSpecs []GroupSpec
	groups     *groupTable
	groupCand  map[string]freight.Set

	changes changes // Subscribe's subscribers

	// Pull-request mode (propose.go): how a stage's forge is reached, and the forges made.
	forgeFor ForgeFunc
	forges   map[string]forge.Forge
	// woken are the units a forge webhook named since their last pass (NotifyPullRequest).
	woken map[string]bool
}

// New validates specs (after filling their defaults) and returns an engine for them.
func New(specs []Spec, opts ...Option) (*Engine, error) {
	e := &Engine{
		store:        &MemoryStore{},
		verifier:     CommandVerifier{},
		clock:        clock.RealClock{},
		log:          slog.Default(),
		parallel:     8,
		compactAfter: DefaultCompactAfter,
		repos:        map[string]*gitwrite.Repo{},
		status:       map[string]Status{},
		kick:         make(chan struct{}, 1),
		groupCand:    map[string]freight.Set{},
	}
	for _, o := range opts {
		o(e)
	}
	if err := e.SetSpecs(specs, e.groupSpecs...); err != nil {
		return nil, err
	}
	if e.wh == nil {
		w, err := warehouse.New(warehouse.WithLogger(e.log))
		if err != nil {
			return nil, err
		}
		e.wh = w
	}
	if e.dataDir == "" {
		return nil, errors.New("stage: no Git data directory; pass WithGit(dataDir)")
	}
	return e, nil
}

// Specs returns the stages, upstreams first.
func (e *Engine) Specs() []Spec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Spec(nil), e.specs...)
}

// SetSpecs replaces the stage set (in the cluster it follows the Applications'
// annotations; New starts with it). specs get their defaults and are validated as a whole; on error
// nothing changes. It waits for a running pass or Git-writing action to finish,
// so a pass never sees half of each set. Stages that remain keep their status;
// their approvals, verifications and pauses live in the Store under the stage
// name, so they are kept too (and come back if a removed stage returns).
// Clones of repositories no stage uses any more are forgotten, so a repository
// that comes back is opened with fresh credentials.
//
// groups are the release groups among them (see GroupSpec); they are replaced with the
// stages, so no pass sees the members without their group.
func (e *Engine) SetSpecs(specs []Spec, groups ...GroupSpec) error {
	filled := make([]Spec, len(specs))
	for i, s := range specs {
		filled[i] = s.WithDefaults()
	}
	if err := ValidateAll(filled); err != nil {
		return err
	}
	ordered := order(filled)
	// Runs last, after the locks are released: the pipeline page redraws its lanes.
	defer e.Announce()
	e.work.Lock()
	defer e.work.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	byName := make(map[string]Spec, len(ordered))
	status := make(map[string]Status, len(ordered))
	urls := map[string]bool{}
	for _, s := range ordered {
		byName[s.Name] = s
		urls[s.RepoURL] = true
		st, ok := e.status[s.Name]
		if !ok {
			st = Status{Name: s.Name, Decision: DecisionWait, Reason: "not checked yet"}
		}
		st.Image, st.Upstream, st.File, st.Key = s.Image, s.Upstream, s.File, s.Key
		status[s.Name] = st
	}
	for u := range e.repos {
		if !urls[u] {
			delete(e.repos, u)
		}
	}
	prev := e.status
	e.specs, e.byName, e.status = ordered, byName, status
	e.setGroupsLocked(groups, prev)
	return nil
}

// Kicks delivers a value when a notification or an action (approve, resume) wants a pass
// soon; the run loop selects on it next to its ticker and runs ReconcileKicked.
func (e *Engine) Kicks() <-chan struct{} { return e.kick }

// Notify says images were pushed to repositories (registry included, e.g. from a registry's
// webhook). The stages that read one of them from the registry are returned, and when there
// are any a pass over them and their downstream is due at once (Kicks, ReconcileKicked).
// Nothing else is taken from the notification: the
// pass reads the tags from the registry itself. Passes are asked for again after each of
// NotifyRechecks: a registry may announce a push before its tag list shows it (the CNCF
// distribution registry notifies from the manifest PUT before it links the tag), and the
// pass right after the notification would then wait a whole interval for the next look.
func (e *Engine) Notify(repositories ...string) []string {
	pushed := map[string]bool{}
	for _, r := range repositories {
		pushed[normalRepository(r)] = true
	}
	e.mu.Lock()
	specs := e.specs
	e.mu.Unlock()
	var stages []string
	for _, s := range specs {
		if s.Upstream == "" && pushed[normalRepository(s.Image)] {
			stages = append(stages, s.Name)
		}
	}
	if len(stages) > 0 {
		e.target(stages)
		at := e.clock.Now()
		for _, d := range NotifyRechecks {
			// A poke after the engine stopped finds nobody reading Kicks and is dropped.
			time.AfterFunc(d, func() {
				// Once every notified stage took something since, the push was seen: a
				// recheck would only hold up the next notification's pass.
				if !e.promotedSince(stages, at) {
					e.target(stages)
				}
			})
		}
	}
	return stages
}

// promotedSince reports whether every one of stages was promoted at or after at.
func (e *Engine) promotedSince(stages []string, at time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range stages {
		if st := e.status[s]; st.LastPromotion.Before(at) {
			return false
		}
	}
	return true
}

// target asks for a pass over stages (and their downstream) soon.
func (e *Engine) target(stages []string) {
	e.mu.Lock()
	if e.targets == nil {
		e.targets = map[string]bool{}
	}
	for _, s := range stages {
		e.targets[s] = true
	}
	if e.stopHousekeeping != nil {
		e.stopHousekeeping()
	}
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// ReconcileKicked runs the pass Kicks asked for: a pass over the stages that registry
// notifications and actions (approve, resume, reverify, a manual promotion) named, their
// downstream and what those need (their upstreams, the rest of their release groups); a
// whole pass (Reconcile) when none is named. With 1,000 other stages configured a push
// costs the promoter the notified repository's requests only. It does no housekeeping
// (see Housekeep): the pass answers first.
func (e *Engine) ReconcileKicked(ctx context.Context) error {
	e.mu.Lock()
	targets := e.targets
	e.targets = nil
	e.mu.Unlock()
	if len(targets) == 0 {
		return e.Reconcile(ctx)
	}
	e.work.Lock()
	defer e.work.Unlock()
	// No housekeeping here: a notification's pass answers as fast as it can; the clone is
	// compacted by the next whole pass or by Housekeep when the loop is idle.
	return e.passOver(ctx, true, e.around(targets))
}

// around is targets with their downstream, their upstreams and the other members of their
// release groups, as far as that reaches: what a pass must observe to decide them.
func (e *Engine) around(targets map[string]bool) map[string]bool {
	in := map[string]bool{}
	for t := range targets {
		if _, ok := e.byName[t]; ok {
			in[t] = true
		}
	}
	for changed := true; changed; {
		changed = false
		add := func(name string) {
			if name != "" && !in[name] {
				in[name], changed = true, true
			}
		}
		for _, s := range e.specs {
			if in[s.Upstream] {
				add(s.Name)
			}
			if in[s.Name] {
				add(s.Upstream)
			}
		}
		for _, g := range e.groups.list {
			for _, m := range g.members {
				if in[m.Name] {
					for _, other := range g.members {
						add(other.Name)
					}
					break
				}
			}
		}
	}
	return in
}

// NotifyRechecks are the delays after a registry notification at which a pass is asked for
// again (see Notify); bursts of notifications are gathered by Kicks' single slot.
var NotifyRechecks = []time.Duration{500 * time.Millisecond, 2 * time.Second}

// normalRepository is the repository as go-containerregistry names it (docker.io/x → index.docker.io/library/x).
func normalRepository(image string) string {
	if r, err := name.NewRepository(image, name.WeakValidation); err == nil {
		return r.Name()
	}
	return image
}

// targetStage asks for a pass over a stage, or a release group's members, and what they
// reach (see around): an approval, a resume, a manual promotion or a reverify concerns
// them and their downstream only.
func (e *Engine) targetStage(name string) {
	e.mu.Lock()
	u, ok := e.groups.unit(name)
	e.mu.Unlock()
	if !ok {
		e.target([]string{name}) // a member forced alone
		return
	}
	names := make([]string, 0, len(u.members))
	for _, m := range u.members {
		names = append(names, m.Name)
	}
	e.target(names)
}

// Passes is how many passes have completed; a readiness probe wants one.
func (e *Engine) Passes() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.passes
}

// Status returns every stage's status, upstreams first.
func (e *Engine) Status() []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Status, 0, len(e.specs))
	for _, s := range e.specs {
		out = append(out, e.withOrigin(e.status[s.Name]))
		for _, g := range e.groupStatusesAfter(s.Name) {
			out = append(out, e.withOrigin(g))
		}
	}
	for _, g := range e.groupStatusesAfter("") {
		out = append(out, e.withOrigin(g))
	}
	return out
}

// withOrigin is st with its Origin from the configuration: a stage's own, a release
// group's first member's. Filled when read, so that no status a pass writes can miss it.
// e.mu is held.
func (e *Engine) withOrigin(st Status) Status {
	if s, ok := e.byName[st.Name]; ok {
		st.Origin = s.Origin
	} else if g, ok := e.groups.named(st.Name); ok && len(g.members) > 0 {
		st.Origin = g.members[0].Origin
	}
	return st
}

// StatusOf returns one stage's status.
func (e *Engine) StatusOf(name string) (Status, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, ok := e.status[name]
	return e.withOrigin(st), ok
}

// ErrUnknownStage is wrapped when an action names a stage that is not configured.
var ErrUnknownStage = errors.New("unknown stage")

func (e *Engine) spec(name string) (Spec, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.byName[name]
	if !ok {
		var names []string
		for _, s := range e.specs {
			names = append(names, s.Name)
		}
		return Spec{}, fmt.Errorf("%w %q: configured stages are %s", ErrUnknownStage, name, strings.Join(names, ", "))
	}
	return s, nil
}

// Repo returns the persistent clone of url, opening it on first use with the engine's Git
// options (WithGitOptionsFor credentials included). Readers outside the engine (the Argo CD
// health gate) share it rather than open their own.
func (e *Engine) Repo(ctx context.Context, url string) (*gitwrite.Repo, error) {
	e.mu.Lock()
	r, ok := e.repos[url]
	e.mu.Unlock()
	if ok {
		return r, nil
	}
	opts := e.gitOpts
	if e.gitOptsFor != nil {
		extra, err := e.gitOptsFor(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("Git credentials for %s: %w", gitwrite.Redact(url), err)
		}
		opts = append(append([]gitwrite.Option(nil), e.gitOpts...), extra...)
	}
	r, err := gitwrite.Open(ctx, e.dataDir, url, opts...)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", gitwrite.Redact(url), err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if prev, ok := e.repos[url]; ok {
		return prev, nil
	}
	e.repos[url] = r
	return r, nil
}

// StageError is one stage's failure in a pass.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, fmt.Sprintf("stage %q", e.Stage)) {
		return msg
	}
	return fmt.Sprintf("stage %q: %s", e.Stage, msg)
}

func (e *StageError) Unwrap() error { return e.Err }

// observation is what a pass read about one stage before deciding.
type observation struct {
	spec     Spec
	current  string // value in Git
	commit   string // commit the value was read at
	records  []gitwrite.Record
	rejected map[string]bool
	err      error

	candidate freight.Freight
	report    warehouse.Report
	noMatch   bool
	// skipped are the tags better than the candidate that were not signed as the stage's
	// policies require, each with why ("2.1.0: no signature by …").
	skipped []string
}

// Reconcile runs one pass: read every stage's file and history from Git, discover
// candidates (one warehouse.Pass: each repository listed once, whatever its stages),
// decide, write every due promotion with one Apply (one push) per repository and
// branch, and verify what landed. A stage's failure is recorded in its Status and
// does not stop the others; the returned error joins the failures (*StageError).
func (e *Engine) Reconcile(ctx context.Context) error {
	e.work.Lock()
	defer e.work.Unlock()
	err := e.pass(ctx, true)
	e.compact(ctx)
	return err
}

// HousekeepAfter is how long a loop (promoter run, the controller) waits after a pass, with no
// other asked for, before it calls Housekeep.
const HousekeepAfter = time.Second

// Housekeep compacts the clones that gathered more than WithCompactAfter packs (see
// compact). A run loop calls it when idle, e.g. a while after a notification's pass, which
// does no housekeeping itself. It stops early, leaving the clone it was compacting as it
// was, when ctx ends or a pass is asked for (Notify, an approval): that pass must not wait.
func (e *Engine) Housekeep(ctx context.Context) {
	e.work.Lock()
	defer e.work.Unlock()
	e.compact(ctx)
}

// compact gives the clones that gathered too many packs a fresh single-pack clone. It
// runs between passes, while nothing else writes; a failure only costs speed. A pass asked
// for meanwhile (target) cancels it: a clone cut short stays as it was.
func (e *Engine) compact(ctx context.Context) {
	if e.compactAfter <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	repos := slices.Collect(maps.Values(e.repos))
	e.stopHousekeeping = cancel
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.stopHousekeeping = nil
		e.mu.Unlock()
	}()
	for _, r := range repos {
		if ctx.Err() != nil || len(e.kick) > 0 {
			return // a pass is due
		}
		n, err := r.PackCount()
		if err != nil || n <= e.compactAfter {
			continue
		}
		if err := r.Compact(ctx); err != nil {
			if ctx.Err() != nil {
				e.log.Debug("compacting a clone stopped: a pass was asked for", "dir", r.Dir())
				return
			}
			e.log.Warn("compacting a clone failed; it keeps working as it is", "dir", r.Dir(), "packs", n, "err", gitwrite.Redact(err.Error()))
		}
	}
}

// Refresh runs a pass that decides but writes nothing: no commit, no verification.
// `promoter status --config` uses it.
func (e *Engine) Refresh(ctx context.Context) error {
	e.work.Lock()
	defer e.work.Unlock()
	return e.pass(ctx, false)
}

func (e *Engine) pass(ctx context.Context, write bool) error {
	return e.passOver(ctx, write, nil)
}

// passOver is a pass over the stages only holds (all when only is nil). only must hold
// what deciding them needs (see around): their upstreams and their groups' members.
func (e *Engine) passOver(ctx context.Context, write bool, only map[string]bool) error {
	start := e.clock.Now()
	specs := e.specs
	if only != nil {
		specs = make([]Spec, 0, len(only))
		for _, s := range e.specs {
			if only[s.Name] {
				specs = append(specs, s)
			}
		}
	}
	loaded, err := e.loadState(ctx)
	if err != nil {
		return err
	}
	state := &working{State: loaded}
	// One look at the registries for the whole pass: each repository is listed once. The
	// lists are asked for while Git is fetched (~90 ms against ~8 ms for a list on loopback).
	look := e.wh.NewPass()
	defer look.Done()
	var images []string
	for _, s := range specs {
		if s.Upstream == "" && s.Strategy != warehouse.StrategyDigest {
			images = append(images, s.Image)
		}
	}
	prefetched := make(chan struct{})
	go func() {
		defer close(prefetched)
		look.Prefetch(ctx, e.parallel, images...)
	}()
	obs := e.observe(ctx, specs)
	e.discover(ctx, look, specs, obs)
	<-prefetched
	crashpoint.Hit(crashpoint.AfterDiscovery)

	now := e.clock.Now()
	statuses := map[string]*Status{}
	var due []*pendingSet
	var units []*group
	for _, s := range specs {
		// A unit is decided once its last member is observed (and, upstreams first, its
		// upstream's members decided).
		for _, u := range e.groups.lastAt[s.Name] {
			units = append(units, u)
			if p := e.decideUnit(ctx, u, obs, state, now, write, statuses); p != nil {
				due = append(due, p)
			}
		}
	}
	if write && len(due) > 0 {
		e.write(ctx, look, due, statuses, state)
		// Units downstream decided before their upstream moved; say so, or the table
		// reads as if they ignored the new freight.
		justTook(units, statuses)
	}
	if err := e.saveWorking(ctx, state); err != nil {
		e.log.Error("saving promoter state failed", "err", err)
		return err
	}
	var errs []error
	e.mu.Lock()
	for _, u := range units {
		var names []string
		for _, m := range u.members {
			names = append(names, m.Name)
		}
		if !u.lone {
			if e.groups.byName[u.Name] != u {
				continue // a second group of that name: its problem is the first's status
			}
			names = append(names, u.Name)
		}
		for _, name := range names {
			st := statuses[name]
			st.CheckedAt = now
			e.status[name] = *st
			if st.Decision == DecisionFailed {
				errs = append(errs, &StageError{Stage: name, Err: errors.New(st.Error)})
			}
		}
	}
	e.passes++
	e.mu.Unlock()
	e.Announce()
	// INFO is for passes that changed something; a quiet pass every few minutes is debug.
	lvl := slog.LevelDebug
	if len(due) > 0 || len(errs) > 0 {
		lvl = slog.LevelInfo
	}
	e.log.Log(ctx, lvl, "pass done", "stages", len(specs), "promoted", len(due), "failed", len(errs), "write", write, "took", e.clock.Now().Sub(start).String())
	if only != nil && write {
		// The stages downstream of a promotion were decided before it landed ("just
		// took"): a targeted pass over them follows at once, as the next whole pass would.
		var next []string
		for _, s := range specs {
			if up, ok := statuses[s.Upstream]; ok && up.Decision == DecisionPromote {
				next = append(next, s.Name)
			}
		}
		if len(next) > 0 {
			e.target(next)
		}
	}
	return errors.Join(errs...)
}

// observe reads every stage's current value and its repository's history. History is
// read once per repository and branch and shared by its stages.
func (e *Engine) observe(ctx context.Context, specs []Spec) map[string]*observation {
	obs := map[string]*observation{}
	histories := map[string][]gitwrite.Record{}
	histErr := map[string]error{}
	for _, s := range specs {
		o := &observation{spec: s, rejected: map[string]bool{}}
		obs[s.Name] = o
		repo, err := e.Repo(ctx, s.RepoURL)
		if err != nil {
			o.err = err
			continue
		}
		gk := s.RepoURL + "\x00" + s.Branch
		if _, ok := histories[gk]; !ok && histErr[gk] == nil {
			recs, err := repo.History(ctx, s.Branch, "")
			histories[gk], histErr[gk] = recs, err
		}
		if err := histErr[gk]; err != nil {
			o.err = fmt.Errorf("reading history of branch %s: %w", s.Branch, err)
			continue
		}
		for _, r := range histories[gk] {
			if r.Stage != s.Name {
				continue
			}
			o.records = append(o.records, r)
			if r.Rejected != "" {
				o.rejected[r.Rejected] = true
			}
		}
		// History just fetched the branch: every stage's file is read from there, with no
		// round trip to the Git server per stage.
		v, commit, err := repo.ReadFetched(ctx, s.Branch, s.File, s.Key)
		if err != nil {
			o.err = fmt.Errorf("reading %s (key %s): %w", s.File, s.Key, err)
			continue
		}
		o.current, o.commit = v, commit
	}
	return obs
}

// discover queries the registry for every stage without an upstream, once per
// distinct image, selection and rejected set, in parallel.
func (e *Engine) discover(ctx context.Context, look *warehouse.Pass, specs []Spec, obs map[string]*observation) {
	type query struct {
		image    string
		sel      warehouse.Selection
		skip     []string
		policies []signature.Policy
	}
	type answer struct {
		f       freight.Freight
		rep     warehouse.Report
		skipped []string
		err     error
	}
	queries := map[string]query{}
	keyOf := map[string]string{}
	for _, s := range specs {
		o := obs[s.Name]
		if s.Upstream != "" || o.err != nil {
			continue
		}
		skip := make([]string, 0, len(o.rejected))
		for v := range o.rejected {
			skip = append(skip, v)
		}
		sort.Strings(skip)
		sel := s.Selection()
		k := strings.Join([]string{s.Image, sel.Strategy, sel.Constraint, sel.AllowTags, sel.IgnoreTags, sel.Platform, strings.Join(skip, ","), policyKey(s.Signatures)}, "\x00")
		keyOf[s.Name] = k
		queries[k] = query{s.Image, sel, skip, s.Signatures}
	}
	answers := make(map[string]answer, len(queries))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, e.parallel)
	for k, q := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				answers[k] = answer{err: ctx.Err()}
				mu.Unlock()
				return
			}
			defer func() { <-sem }()
			f, rep, skipped, err := e.discoverSigned(ctx, look, q.image, q.sel, q.policies, q.skip)
			mu.Lock()
			answers[k] = answer{f, rep, skipped, err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, k := range keyOf {
		o, a := obs[name], answers[k]
		o.report, o.skipped = a.rep, a.skipped
		switch {
		case errors.Is(a.err, warehouse.ErrNoMatch):
			o.noMatch = true
		case a.err != nil:
			o.err = a.err
		default:
			o.candidate = a.f
		}
	}
}

// decideUnit decides a unit from what the pass observed and fills the statuses of the unit
// and its members. With write set, a unit already running its candidate gets it verified
// first, so units downstream can take it in the same pass. It returns the set due, if any.
func (e *Engine) decideUnit(ctx context.Context, u *group, obs map[string]*observation, state *working, now time.Time, write bool, statuses map[string]*Status) *pendingSet {
	recs := e.unitRecords(ctx, u, obs)
	var upRecs []gitwrite.Record
	if u.up != nil {
		upRecs = e.unitRecords(ctx, u.up, obs)
	}
	st := unitStatuses(u, obs, recs, state.State, statuses)
	in := input{u: u, obs: obs, recs: recs, upRecs: upRecs, state: state.State, now: now}
	d := decide(in)
	d = e.holdUnsigned(ctx, in, d)
	e.settle(u, d, statuses)
	if pr, ok := state.PullRequests[u.Name]; ok {
		st.PullRequest = &pr
	}
	if u.pullRequestMode() {
		on := e.trackPullRequest
		if !write {
			on = e.showTracked // `promoter status --config`: no forge request, no write
		}
		if !on(ctx, u, d, obs, state, now, statuses) {
			mirror(u, statuses)
			return nil
		}
	}
	if d.Verify && write {
		_ = e.verifySet(ctx, u, d.Running, d.Commit, d.PlacedAt, false, state, now, statuses)
	}
	showVerified(u, statuses, state.State)
	mirror(u, statuses)
	if d.Decision != DecisionPromote || st.Decision != DecisionPromote {
		return nil
	}
	cur := make([]string, len(u.members))
	for i, m := range u.members {
		cur[i] = obs[m.Name].current
	}
	return &pendingSet{g: u, set: d.Cand, current: cur, kind: gitwrite.Promote}
}

// unitRecords are the unit's own commits, newest first: a stage alone's from its
// observation, a group's from the branch.
func (e *Engine) unitRecords(ctx context.Context, u *group, obs map[string]*observation) []gitwrite.Record {
	if u.lone {
		if o := obs[u.members[0].Name]; o != nil {
			return o.records
		}
		return nil
	}
	return e.groupRecords(ctx, u)
}

// groupRecords are the group's commits as of the pass's fetch, newest first; nil when
// they cannot be read (the members' observation reports that).
func (e *Engine) groupRecords(ctx context.Context, g *group) []gitwrite.Record {
	first := g.members[0]
	repo, err := e.Repo(ctx, first.RepoURL)
	if err != nil {
		return nil
	}
	recs, err := repo.FetchedHistory(ctx, first.Branch, g.Name)
	if err != nil {
		return nil
	}
	return recs
}

// loadState reads the stored state as a private copy.
func (e *Engine) loadState(ctx context.Context) (State, error) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	st, err := e.store.Load(ctx)
	if err != nil {
		return State{}, err
	}
	return st.clone(), nil
}

// saveWorking adds what a pass or an action added to its State (verifications, runs, pull
// requests) to the stored state, re-reading it first so approvals and pauses made during the
// pass are kept.
func (e *Engine) saveWorking(ctx context.Context, w *working) error {
	if len(w.added) == 0 && len(w.runs) == 0 && len(w.edits) == 0 {
		return nil
	}
	return e.update(ctx, func(st *State) {
		for _, a := range w.added {
			st.addVerification(a.stage, a.v)
		}
		for _, r := range w.runs {
			st.addRun(r.stage, r.run)
		}
		if len(w.edits) > 0 && (st.PullRequests == nil || st.Refused == nil || st.PullRequestLog == nil) {
			*st = st.clone()
		}
		for _, fn := range w.edits {
			fn(st)
		}
	})
}

// verifiedValue finds the verification of the value stage runs.
func verifiedValue(s State, stage, value string) (Verification, bool) {
	if value == "" {
		return Verification{}, false
	}
	vs := s.Verifications[stage]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Value == value {
			return vs[i], true
		}
	}
	return Verification{}, false
}

// older reports whether candidate is a lower semantic version than current, so an
// automatic promotion would go backwards (after an upstream rollback, or a human
// promoting past the constraint).
func older(strategy, candidate, current string) bool {
	if strategy != warehouse.StrategySemver || current == "" {
		return false
	}
	a, err1 := semver.NewVersion(candidate)
	b, err2 := semver.NewVersion(current)
	return err1 == nil && err2 == nil && a.LessThan(b)
}

func noMatchReason(o *observation) string {
	r := o.report
	what := r.Strategy
	if r.Constraint != "" {
		what = r.Constraint
	}
	msg := fmt.Sprintf("no tag matches %s", what)
	if r.Highest != "" {
		msg += fmt.Sprintf(" (newest seen %s)", r.Highest)
	} else if r.Tags == 0 {
		msg += fmt.Sprintf(" (%s has no tags)", r.Image)
	}
	if rej := rejectedList(o.rejected); rej != "" {
		msg += "; " + rej + " rolled back here"
	}
	return msg + skippedNote(o.skipped)
}

func rejectedList(m map[string]bool) string {
	if len(m) == 0 {
		return ""
	}
	var out []string
	for v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	if len(out) == 1 {
		return out[0] + " was"
	}
	return strings.Join(out, ", ") + " were"
}

func orNothing(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// shortDigest is a digest as a person compares it: the algorithm and 12 hex digits.
func shortDigest(d string) string {
	if algo, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return algo + ":" + hex[:12] + "…"
	}
	return d
}
