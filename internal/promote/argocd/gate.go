package argocd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

// ErrUnhealthy is wrapped when a promoted Application stayed Degraded, or its
// sync failed, beyond the gate's timeout. The stage fails; with
// kropipe.io/auto-rollback "true" the caller rolls it back (see TakeFailures).
var ErrUnhealthy = errors.New("application unhealthy after promotion")

// ErrVerificationFailed is wrapped when a stage's verification (kropipe.io/verify-job)
// failed or timed out: the stage fails, and with kropipe.io/auto-rollback "true" the
// caller rolls it back (see TakeFailures), as for ErrUnhealthy.
var ErrVerificationFailed = errors.New("verification failed")

// ErrHydrationFailed is wrapped when Argo CD's Source Hydrator failed to render the stage's
// promotion commit (or a dry commit after it): nothing was synced, and the stage fails with
// Argo CD's message until a dry commit hydrates. Nothing is rolled back: the freight was not
// judged, the dry source could not be rendered.
var ErrHydrationFailed = errors.New("hydration failed")

// VerifySource reads what a verification needs from the stage's repository.
type VerifySource interface {
	// ReadAt returns the file or folder p (see gitwrite.Repo.ReadAt) at commit.
	ReadAt(ctx context.Context, spec stage.Spec, commit, p string) (map[string][]byte, error)
	// Previous is the value the stage ran before the promotion commit, "" when unknown.
	Previous(ctx context.Context, spec stage.Spec, commit string) string
}

// DefaultGateTimeout is how long an Application may stay Degraded or failed
// before its promotion counts as failed.
const DefaultGateTimeout = 5 * time.Minute

// AppLookup finds the Application behind a stage; *Watcher implements it.
type AppLookup interface {
	App(stage string) (Binding, bool)
}

// Failure is a promotion the gate gave up on.
type Failure struct {
	Stage        string
	App          AppRef
	Value        string // the tag or digest written
	Commit       string
	AutoRollback bool
	Err          error // wraps ErrUnhealthy or ErrVerificationFailed
}

// HealthGate is the Argo CD mode's stage.Verifier: it asks Argo CD to sync the
// promoted Application to the promotion commit, and verifies the freight only
// once the Application is Synced and Healthy at that commit, its operation
// Succeeded and Argo CD compared it after the operation finished.
type HealthGate struct {
	client   dynamic.Interface
	apps     AppLookup
	syncer   *Syncer
	timeout  time.Duration
	contains func(ctx context.Context, spec stage.Spec, ancestor, descendant string) bool
	subject  func(ctx context.Context, spec stage.Spec, commit string) string
	syncIf   func(ctx context.Context, spec stage.Spec, commit string) bool
	landed   func(ctx context.Context, spec stage.Spec, commit string) string
	clock    clock.PassiveClock
	log      *slog.Logger
	source   VerifySource
	jobs     *verify.JobRunner
	analysis *verify.AnalysisRunner
	clusters *Clusters   // the destination clusters of verifications outside the promoter's own
	store    stage.Store // approvals (which pass an inconclusive analysis) and the runs the engine keeps

	mu       sync.Mutex
	tracked  map[string]*tracking             // by stage
	runs     map[string]stage.VerificationRun // by stage: the last verification seen
	waiting  map[string]string                // by stage: the last reason to wait
	failures []Failure
}

// tracking is what the gate remembers about the freight a stage is verifying.
// It lives in memory: after a restart the Application's own operation fields
// say whether a sync was already asked for.
type tracking struct {
	freightID string
	commit    string // the first commit the freight was verified at: its promotion
	badSince  time.Time
	reported  bool
	// verifyReported: the failed verification was handed to TakeFailures. After a restart
	// the failed Job is adopted and reported again; the rollback then finds the stage moved on.
	verifyReported bool
	// hydrateAsked: Argo CD was asked to hydrate the promotion's dry commit (once per
	// promotion; after a restart it is asked once more, which is harmless).
	hydrateAsked bool
	// since is when the gate first saw the commit, after it was pushed: a hydration Argo CD
	// started later read a dry branch that held it.
	since time.Time
}

// GateOption configures a HealthGate.
type GateOption func(*HealthGate)

// WithTimeout sets how long an Application may stay Degraded or failed (from
// when the gate first sees it so) before the promotion fails (default 5m).
func WithTimeout(d time.Duration) GateOption { return func(g *HealthGate) { g.timeout = d } }

// WithContains lets a synced revision that descends from the promotion commit
// count (default: only the commit itself). fn reports whether descendant, a
// commit of spec's repository, contains ancestor. Without it a commit to another
// folder that lands before the verification would keep the stage waiting: with
// manifest-generate-paths Argo CD moves the Application's revision to that commit
// without a sync.
func WithContains(fn func(ctx context.Context, spec stage.Spec, ancestor, descendant string) bool) GateOption {
	return func(g *HealthGate) { g.contains = fn }
}

// WithSubject gives the sync operation's reason, normally the commit subject
// (default "kropipe: <stage> → <value>").
func WithSubject(fn func(ctx context.Context, spec stage.Spec, commit string) string) GateOption {
	return func(g *HealthGate) { g.subject = fn }
}

// WithSyncIf limits which commits the gate syncs (default: all). The engine also
// verifies freight a stage already ran before kropipe started, at whatever
// commit the branch is; fn returning false there makes the gate wait for Argo
// CD instead of starting an operation, e.g. true only when commit is the stage's
// newest promotion in Git.
func WithSyncIf(fn func(ctx context.Context, spec stage.Spec, commit string) bool) GateOption {
	return func(g *HealthGate) { g.syncIf = fn }
}

// WithLanded tells a stage in pull-request mode which commit brought its promotion commit into
// the branch: fn returns the merge commit of a pull request merged with one (the promotion
// commit itself when it is on the branch's first-parent line, "" when unknown). That is what
// the gate asks Argo CD to sync: kropipe's own commit sits on the pull request's branch, whose
// tree lacks what reached the branch while the pull request was open. Without it (or in push
// mode) the gate syncs the promotion commit.
func WithLanded(fn func(ctx context.Context, spec stage.Spec, commit string) string) GateOption {
	return func(g *HealthGate) { g.landed = fn }
}

// WithVerification runs the stages' kropipe.io/verify-job Jobs through jobs, reading their
// manifests through src, once the Application is Synced and Healthy at the promotion
// commit. Without it a stage with a verification fails, saying so.
func WithVerification(src VerifySource, jobs *verify.JobRunner) GateOption {
	return func(g *HealthGate) { g.source, g.jobs = src, jobs }
}

// WithAnalysis runs the stages' kropipe.io/verify-analysis AnalysisRuns through a. An
// inconclusive analysis holds the stage until an approval of its value made after the run
// started is in store (promoter approve), or a rollback replaces it.
func WithAnalysis(a *verify.AnalysisRunner, store stage.Store) GateOption {
	return func(g *HealthGate) { g.analysis, g.store = a, store }
}

// WithClusters runs each verification in its Application's destination cluster, reached
// with the credentials of Argo CD's cluster Secret for it. Without it a verification whose
// destination is not Argo CD's in-cluster one fails, saying so: run elsewhere it would judge
// the wrong environment.
func WithClusters(c *Clusters) GateOption { return func(g *HealthGate) { g.clusters = c } }

// WithRecords reads the verification runs the engine keeps in store (stage.State.Runs): a
// stage's freight that failed verification, or whose analysis was inconclusive, keeps that
// verdict after a restart or a leader change even when its Job or AnalysisRun is gone, and is
// verified again only by promoter verify. WithAnalysis sets the same store.
func WithRecords(store stage.Store) GateOption { return func(g *HealthGate) { g.store = store } }

// WithGateClock replaces the wall clock, for timeout tests.
func WithGateClock(c clock.PassiveClock) GateOption { return func(g *HealthGate) { g.clock = c } }

// WithGateLogger sets the logger (default slog.Default()).
func WithGateLogger(l *slog.Logger) GateOption { return func(g *HealthGate) { g.log = l } }

// NewHealthGate returns a gate reading and patching Applications through client.
func NewHealthGate(client dynamic.Interface, apps AppLookup, opts ...GateOption) *HealthGate {
	g := &HealthGate{
		client: client, apps: apps, syncer: NewSyncer(client),
		timeout:  DefaultGateTimeout,
		contains: func(_ context.Context, _ stage.Spec, a, d string) bool { return a == d },
		clock:    clock.RealClock{}, log: slog.Default(),
		tracked: map[string]*tracking{}, waiting: map[string]string{},
		runs: map[string]stage.VerificationRun{},
	}
	for _, o := range opts {
		o(g)
	}
	return g
}

// TakeFailures returns the promotions that failed since the last call, once
// each. Call it after the engine's pass returned — never from inside a pass
// (Verify runs inside one, holding the engine's lock) — and roll back those with
// AutoRollback.
func (g *HealthGate) TakeFailures() []Failure {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.failures
	g.failures = nil
	return out
}

// ReturnFailures gives back failures taken with TakeFailures that the caller could not hand
// over durably (its pass was cancelled before it recorded them as owed): the next
// TakeFailures returns them again, instead of their rollback being lost.
func (g *HealthGate) ReturnFailures(fs ...Failure) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures = append(append([]Failure(nil), fs...), g.failures...)
}

// Waiting returns the last reason the stage's verification is pending, "" when
// it is not: the engine's status says only "verification pending".
func (g *HealthGate) Waiting(stage string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting[stage]
}

// Verification returns the stage's last verification in the cluster, nil when it ran none.
func (g *HealthGate) Verification(stage string) *stage.VerificationRun {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.runs[stage]
	if !ok {
		return nil
	}
	return &r
}

// LastRun implements stage.RunReporter: the engine keeps what the gate last saw of the stage's
// verification in its State.
func (g *HealthGate) LastRun(stage string) (stage.VerificationRun, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.runs[stage]
	return r, ok
}

// Awaiting returns the stages whose verification is pending (Waiting is not "").
func (g *HealthGate) Awaiting() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.waiting))
	for stage := range g.waiting {
		out = append(out, stage)
	}
	return out
}

// Verify implements stage.Verifier.
func (g *HealthGate) Verify(ctx context.Context, spec stage.Spec, f freight.Freight, commit string) error {
	err := g.verify(ctx, spec, f, commit)
	g.mu.Lock()
	defer g.mu.Unlock()
	if errors.Is(err, stage.ErrPending) {
		g.waiting[spec.Name] = err.Error()
	} else {
		delete(g.waiting, spec.Name)
	}
	return err
}

func (g *HealthGate) verify(ctx context.Context, spec stage.Spec, f freight.Freight, commit string) error {
	b, ok := g.apps.App(spec.Name)
	if !ok {
		return fmt.Errorf("stage %q has no Argo CD Application (were its kropipe.io annotations removed?)", spec.Name)
	}
	u, err := g.syncer.get(ctx, b.App)
	if err != nil {
		g.forget(spec.Name)
		if errors.Is(err, ErrAppNotFound) {
			return fmt.Errorf("stage %q: %s was written in %s but %w", spec.Name, f.Value(spec.Strategy), short(commit), err)
		}
		return err
	}
	promo := g.track(ctx, spec, f.ID(), commit)
	// In pull-request mode the promotion reaches the branch through the merge commit that
	// landed it; the verification's Jobs come from there too: a change merged into the
	// branch meanwhile is part of what runs.
	landed, verifyAt := "", promo
	if spec.Write == stage.WritePullRequest && g.landed != nil {
		if l := g.landed(ctx, spec, commit); l != "" && l != commit {
			landed, verifyAt = l, l
		}
	}
	a := readApp(u, b.SourceIndex)
	value := f.Value(spec.Strategy)
	var targets []string
	var syncTo, syncWhat string
	var at bool
	if b.Hydrator != nil {
		// The dry commit reaches the cluster only through its hydrated commit: that is
		// what the Application must run, and what the gate syncs.
		hs, err := g.hydrationOf(ctx, spec, b, u, promo)
		if err != nil {
			return err
		}
		targets, syncTo = hs.targets, hs.syncTo
		syncWhat = fmt.Sprintf("hydrated commit %s (dry commit %s)", short(hs.syncTo), short(hs.dry))
		at = a.revision != "" && contains(targets, a.revision)
	} else {
		targets, syncTo = []string{promo}, commit
		if commit != promo {
			targets = append(targets, commit)
		}
		if landed != "" {
			syncTo = landed
			targets = append(targets, landed)
		}
		syncWhat = short(syncTo)
		at = g.atAny(ctx, spec, a.revision, targets)
	}

	opForUs := a.opRevision != "" && contains(targets, a.opRevision)
	// An operation for the commit must have Succeeded; one for another revision
	// (an old failed manual sync) says nothing about this commit.
	if at && a.syncStatus == "Synced" && a.health == "Healthy" && !a.running && (!opForUs || a.phase == "Succeeded") {
		if a.phase != "" && a.reconciledAt.Before(a.finishedAt) {
			return pending("waiting: Argo CD has not compared %s since its sync finished at %s", u.GetName(), a.finishedAt.Format(time.RFC3339))
		}
		if b.Verify != nil {
			if err := g.runVerification(ctx, spec, b, f, verifyAt); err != nil {
				return err
			}
		}
		g.forget(spec.Name)
		return nil
	}

	bad, why := "", ""
	switch {
	case opForUs && (a.phase == "Failed" || a.phase == "Error") && !a.running:
		bad, why = "sync "+a.phase, a.message
	case at && a.health == "Degraded":
		bad, why = "Degraded", a.healthMessage
	}
	if bad != "" {
		if err := g.unhealthy(spec, b, value, promo, u.GetName(), bad, why, a); err != nil {
			return err
		}
	} else {
		g.healthyAgain(spec.Name)
	}

	inSync := at && a.syncStatus == "Synced"
	if !a.running && !opForUs && !inSync && (g.syncIf == nil || g.syncIf(ctx, spec, commit)) {
		reason := fmt.Sprintf("kropipe: %s → %s", spec.Name, value)
		if g.subject != nil {
			if s := g.subject(ctx, spec, commit); s != "" {
				reason = s
			}
		}
		if err := g.syncer.sync(ctx, u, b.SourceIndex, syncTo, reason); err != nil {
			if errors.Is(err, ErrAppNotFound) {
				g.forget(spec.Name)
				return fmt.Errorf("stage %q: %s was written in %s but %w", spec.Name, value, short(commit), err)
			}
			return err
		}
		g.log.Info("sync requested", "stage", spec.Name, "app", b.App.String(), "revision", syncTo, "reason", reason)
		return pending("waiting: asked %s to sync to %s", u.GetName(), syncWhat)
	}
	if a.running {
		// Argo CD's phase of a running operation is Running or Terminating; any other phase
		// belongs to the previous, finished operation while the requested one has not started.
		phase := a.phase
		if phase != "Running" && phase != "Terminating" {
			phase = "operation requested"
		}
		return pending("waiting: %s is syncing (%s) at %s", u.GetName(), phase, short(orUnknown(a.opRevision, a.revision)))
	}
	return pending("waiting: %s is %s/%s at %s", u.GetName(), orUnknown(a.syncStatus, "Unknown"), orUnknown(a.health, "Unknown"), orUnknown(short(a.revision), "no revision"))
}

// runVerification runs the stage's verification for the freight at its promotion commit:
// nil once it passed, ErrPending while it runs, ErrVerificationFailed when it failed, and
// any other error for a problem with its manifests or the cluster (the stage fails, nothing
// is rolled back: the freight was not judged).
func (g *HealthGate) runVerification(ctx context.Context, spec stage.Spec, b Binding, f freight.Freight, commit string) error {
	value := f.Value(spec.Strategy)
	run := stage.VerificationRun{Value: value, Freight: f.ID(), Commit: commit}
	res, settled := g.settled(ctx, spec.Name, f.ID(), commit)
	if !settled {
		var err error
		res, err = g.runChecks(ctx, spec, b, f, commit)
		if err != nil {
			run.Phase, run.Message = "Error", err.Error()
			g.record(spec.Name, run)
			return err
		}
	}
	run.Phase, run.Message, run.Log, run.Started = string(res.Phase), res.Message, res.Log, res.Started
	g.record(spec.Name, run)
	switch res.Phase {
	case verify.Running:
		return pending("verifying: %s", res.Message)
	case verify.Passed:
		g.log.Info("verification passed", "stage", spec.Name, "value", value, "result", res.Message)
		return nil
	case verify.Inconclusive:
		if g.approvedSince(ctx, spec.Name, value, res.Started) {
			g.log.Info("inconclusive verification approved", "stage", spec.Name, "value", value, "result", res.Message)
			run.Phase, run.Message = string(verify.Passed), res.Message+"; approved by promoter approve"
			g.record(spec.Name, run)
			return nil
		}
		return pending("verification inconclusive: %s; a human decides: promoter approve %s %s passes it, promoter rollback %s rejects it", res.Message, spec.Name, value, spec.Name)
	}
	msg := res.Message
	if res.Log != "" {
		msg += "; log: " + res.Log
	}
	err := fmt.Errorf("stage %q: %w for %s: %s", spec.Name, ErrVerificationFailed, value, msg)
	g.mu.Lock()
	defer g.mu.Unlock()
	if tr := g.tracked[spec.Name]; tr != nil && !tr.verifyReported {
		tr.verifyReported = true
		g.failures = append(g.failures, Failure{Stage: spec.Name, App: b.App, Value: value, Commit: commit, AutoRollback: b.AutoRollback, Err: err})
	}
	return err
}

// settled returns the verdict already reached on the stage's freight at its promotion commit
// — Failed, or Inconclusive waiting for a human — from this gate's memory, else (after a
// restart or a leader change) from the runs the engine keeps in the store. A verdict is not
// asked of the cluster again: its Job or AnalysisRun may be gone, and a new one could judge
// differently. A verdict on the same freight at an earlier commit does not count.
func (g *HealthGate) settled(ctx context.Context, stage, id, commit string) (verify.Result, bool) {
	g.mu.Lock()
	r, ok := g.runs[stage]
	g.mu.Unlock()
	if !ok || r.Freight != id || r.Commit != commit {
		if g.store == nil {
			return verify.Result{}, false
		}
		st, err := g.store.Load(ctx)
		if err != nil {
			g.log.Warn("reading the verification runs kept in the promoter's state", "stage", stage, "error", err.Error())
			return verify.Result{}, false
		}
		if r, ok = st.SettledRun(stage, id, commit); !ok {
			return verify.Result{}, false
		}
	}
	if r.Phase != string(verify.Failed) && r.Phase != string(verify.Inconclusive) {
		return verify.Result{}, false
	}
	return verify.Result{Phase: verify.Phase(r.Phase), Message: r.Message, Log: r.Log, Started: r.Started}, true
}

// runChecks runs the stage's Job and analysis verifications side by side and combines
// them: Failed when one failed, else Running while one runs, else Inconclusive when one
// is, else Passed.
func (g *HealthGate) runChecks(ctx context.Context, spec stage.Spec, b Binding, f freight.Freight, commit string) (verify.Result, error) {
	v := b.Verify
	var results []verify.Result
	var prev *string
	previous := func() string {
		if prev == nil {
			p := ""
			if g.source != nil {
				p = g.source.Previous(ctx, spec, commit)
			}
			prev = &p
		}
		return *prev
	}
	cluster, err := g.cluster(ctx, v.Destination)
	if err != nil {
		return verify.Result{}, fmt.Errorf("stage %q: %w", spec.Name, err)
	}
	request := func() verify.Request {
		return verify.Request{
			Stage: spec.Name, Namespace: v.Namespace, Freight: f, Value: f.Value(spec.Strategy),
			Previous: previous(), Commit: commit, Timeout: v.Timeout, Cluster: cluster,
		}
	}
	if v.Job != "" {
		if g.jobs == nil || g.source == nil {
			return verify.Result{}, fmt.Errorf("stage %q: %s is set but this promoter runs no verification Jobs", spec.Name, AnnVerifyJob)
		}
		files, err := g.source.ReadAt(ctx, spec, commit, v.Job)
		if err != nil {
			return verify.Result{}, fmt.Errorf("stage %q: %s: %w", spec.Name, AnnVerifyJob, err)
		}
		res, err := g.jobs.Run(ctx, request(), files)
		if err != nil {
			return verify.Result{}, fmt.Errorf("stage %q: %s: %w%s", spec.Name, AnnVerifyJob, err, ranIn(cluster))
		}
		res.Message += ranIn(cluster)
		results = append(results, res)
	}
	if len(v.Analysis) > 0 {
		if g.analysis == nil {
			return verify.Result{}, fmt.Errorf("stage %q: %s is set but this promoter runs no analysis", spec.Name, AnnVerifyAnalysis)
		}
		res, err := g.analysis.Run(ctx, request(), v.Analysis)
		if err != nil {
			return verify.Result{}, fmt.Errorf("stage %q: %s: %w%s", spec.Name, AnnVerifyAnalysis, err, ranIn(cluster))
		}
		res.Message += ranIn(cluster)
		results = append(results, res)
	}
	for _, want := range []verify.Phase{verify.Failed, verify.Running, verify.Inconclusive} {
		var msgs []string
		var out verify.Result
		for _, r := range results {
			if r.Phase == want {
				msgs = append(msgs, r.Message)
				if out.Log == "" {
					out.Log = r.Log
				}
				if out.Started.IsZero() || r.Started.Before(out.Started) {
					out.Started = r.Started
				}
			}
		}
		if len(msgs) > 0 {
			out.Phase, out.Message = want, strings.Join(msgs, "; ")
			return out, nil
		}
	}
	var msgs []string
	for _, r := range results {
		msgs = append(msgs, r.Message)
	}
	return verify.Result{Phase: verify.Passed, Message: strings.Join(msgs, "; ")}, nil
}

// Reverify deletes the Jobs and AnalysisRun that verified value in the stage, so its
// next verification starts new ones (promoter verify; the caller then makes the engine
// forget its verdict). A stage without verification in the cluster has nothing to delete.
func (g *HealthGate) Reverify(ctx context.Context, stage, value string) error {
	b, ok := g.apps.App(stage)
	if !ok || b.Verify == nil {
		return nil
	}
	cluster, err := g.cluster(ctx, b.Verify.Destination)
	if err != nil {
		return fmt.Errorf("stage %q: %w", stage, err)
	}
	if b.Verify.Job != "" && g.jobs != nil {
		if _, err := g.jobs.Forget(ctx, cluster, b.Verify.Namespace, stage, value); err != nil {
			return fmt.Errorf("stage %q: %w", stage, err)
		}
	}
	if len(b.Verify.Analysis) > 0 && g.analysis != nil {
		if _, err := g.analysis.Forget(ctx, cluster, b.Verify.Namespace, stage, value); err != nil {
			return fmt.Errorf("stage %q: %w", stage, err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if tr := g.tracked[stage]; tr != nil {
		tr.verifyReported = false
	}
	delete(g.runs, stage)
	return nil
}

// ranIn says where a verification ran when it was not the promoter's own cluster.
func ranIn(cluster *verify.Cluster) string {
	if cluster == nil {
		return ""
	}
	return " in Argo CD cluster " + cluster.Name
}

// cluster is where a verification for dest runs: nil for the promoter's own cluster.
func (g *HealthGate) cluster(ctx context.Context, dest Destination) (*verify.Cluster, error) {
	if g.clusters != nil {
		return g.clusters.For(ctx, dest)
	}
	if dest.InCluster() {
		return nil, nil
	}
	return nil, fmt.Errorf("%w: the Application deploys to %s and this promoter reaches no cluster but its own", ErrClusterUnusable, dest)
}

// approvedSince reports whether value was approved in stage after t.
func (g *HealthGate) approvedSince(ctx context.Context, stage, value string, t time.Time) bool {
	if g.store == nil {
		return false
	}
	st, err := g.store.Load(ctx)
	if err != nil {
		g.log.Warn("reading approvals for an inconclusive verification", "stage", stage, "error", err.Error())
		return false
	}
	for _, a := range st.Approvals[stage] {
		if a.Value == value && !a.ApprovedAt.Before(t) {
			return true
		}
	}
	return false
}

func (g *HealthGate) record(stage string, run stage.VerificationRun) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.runs[stage] = run
}

// unhealthy starts or checks the timeout of a bad state; past it the promotion fails.
func (g *HealthGate) unhealthy(spec stage.Spec, b Binding, value, commit, app, bad, why string, a appState) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	tr := g.tracked[spec.Name]
	if tr == nil {
		tr = &tracking{commit: commit, since: g.clock.Now()}
		g.tracked[spec.Name] = tr
	}
	now := g.clock.Now()
	if tr.badSince.IsZero() {
		tr.badSince = now
	}
	if left := tr.badSince.Add(g.timeout).Sub(now); left > 0 {
		return pending("waiting: %s is %s at %s (%s); failing in %s unless it recovers", app, bad, short(a.revision), orUnknown(why, "no message"), left.Round(time.Second))
	}
	err := fmt.Errorf("%w: %s is %s at %s for %s: %s", ErrUnhealthy, app, bad, short(orUnknown(a.revision, commit)), g.timeout, orUnknown(why, "Argo CD gave no message"))
	if !tr.reported {
		tr.reported = true
		g.failures = append(g.failures, Failure{Stage: spec.Name, App: b.App, Value: value, Commit: commit, AutoRollback: b.AutoRollback, Err: err})
	}
	return err
}

func (g *HealthGate) healthyAgain(stage string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if tr := g.tracked[stage]; tr != nil {
		tr.badSince, tr.reported = time.Time{}, false
	}
}

// track returns the commit the stage's freight was first seen at: its promotion
// commit, while the engine later passes the branch head it read. A commit other than the
// tracked one that is the stage's newest promotion (syncIf) is the same freight promoted
// again (a rollback, then a promotion, between two passes): a new deployment, tracked from
// that commit so the earlier commit's verdict does not judge it.
func (g *HealthGate) track(ctx context.Context, spec stage.Spec, freightID, commit string) string {
	g.mu.Lock()
	tr := g.tracked[spec.Name]
	same := tr != nil && tr.freightID == freightID
	moved := same && tr.commit != commit
	g.mu.Unlock()
	// syncIf reads Git: asked outside the lock, and only when the commit moved.
	if moved && g.syncIf != nil && g.syncIf(ctx, spec, commit) {
		same = false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if tr = g.tracked[spec.Name]; !same || tr == nil || tr.freightID != freightID {
		tr = &tracking{freightID: freightID, commit: commit, since: g.clock.Now()}
		g.tracked[spec.Name] = tr
	}
	return tr.commit
}

func (g *HealthGate) forget(stage string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.tracked, stage)
}

func (g *HealthGate) atAny(ctx context.Context, spec stage.Spec, revision string, targets []string) bool {
	if revision == "" {
		return false
	}
	for _, t := range targets {
		if t == revision || g.contains(ctx, spec, t, revision) {
			return true
		}
	}
	return false
}

// appState is what the gate reads from an Application's status.
type appState struct {
	revision      string // status.sync.revision(s[i])
	syncStatus    string
	health        string
	healthMessage string
	phase         string // status.operationState.phase
	message       string
	opRevision    string // revision of the requested or last operation
	running       bool
	reconciledAt  time.Time
	finishedAt    time.Time
}

func readApp(u *unstructured.Unstructured, index int) appState {
	o := u.Object
	a := appState{
		syncStatus:    str(o, "status", "sync", "status"),
		health:        str(o, "status", "health", "status"),
		healthMessage: str(o, "status", "health", "message"),
		phase:         str(o, "status", "operationState", "phase"),
		message:       str(o, "status", "operationState", "message"),
	}
	a.running, _ = operationRunning(o)
	a.revision = revisionAt(o, index, "status", "sync")
	for _, p := range [][]string{{"operation", "sync"}, {"status", "operationState", "operation", "sync"}, {"status", "operationState", "syncResult"}} {
		if r := revisionAt(o, index, p...); r != "" {
			a.opRevision = r
			break
		}
	}
	a.reconciledAt, _ = time.Parse(time.RFC3339, str(o, "status", "reconciledAt"))
	a.finishedAt, _ = time.Parse(time.RFC3339, str(o, "status", "operationState", "finishedAt"))
	return a
}

// revisionAt reads <path>.revision, or <path>.revisions[index] for a
// multi-source Application.
func revisionAt(o map[string]any, index int, path ...string) string {
	if index < 0 {
		return str(o, append(path, "revision")...)
	}
	revs, _, _ := unstructured.NestedStringSlice(o, append(path, "revisions")...)
	if index < len(revs) {
		return revs[index]
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func orUnknown(s, alt string) string {
	if strings.TrimSpace(s) == "" {
		return alt
	}
	return s
}

// SyncStatusOf is what an Application says about its source at index (-1: the
// single source): the stage's "last sync and health" in the API.
func SyncStatusOf(u *unstructured.Unstructured, index int) *stage.SyncStatus {
	a := readApp(u, index)
	s := &stage.SyncStatus{
		Application:   refOf(u).String(),
		Revision:      a.revision,
		Status:        a.syncStatus,
		Health:        a.health,
		HealthMessage: a.healthMessage,
		Operation:     a.phase,
		Message:       a.message,
		InitiatedBy:   str(u.Object, "status", "operationState", "operation", "initiatedBy", "username"),
		FinishedAt:    a.finishedAt,
		ReconciledAt:  a.reconciledAt,
		Hydration:     HydrationOf(u),
	}
	s.StartedAt, _ = time.Parse(time.RFC3339, str(u.Object, "status", "operationState", "startedAt"))
	if _, ok := u.Object["operation"]; ok {
		// Requested, not yet picked up by the application controller.
		s.Operation = "Requested"
		s.InitiatedBy = str(u.Object, "operation", "initiatedBy", "username")
		s.Message, s.StartedAt, s.FinishedAt = "", time.Time{}, time.Time{}
	}
	if auto, _, _ := unstructured.NestedBool(u.Object, "status", "operationState", "operation", "initiatedBy", "automated"); auto && s.InitiatedBy == "" {
		s.InitiatedBy = "automated"
	}
	return s
}
