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
)

// ErrUnhealthy is wrapped when a promoted Application stayed Degraded, or its
// sync failed, beyond the gate's timeout. The stage fails; with
// kropipe.io/auto-rollback "true" the caller rolls it back (see TakeFailures).
var ErrUnhealthy = errors.New("application unhealthy after promotion")

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
	Err          error // wraps ErrUnhealthy
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
	clock    clock.PassiveClock
	log      *slog.Logger

	mu       sync.Mutex
	tracked  map[string]*tracking // by stage
	waiting  map[string]string    // by stage: the last reason to wait
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

// Waiting returns the last reason the stage's verification is pending, "" when
// it is not: the engine's status says only "verification pending".
func (g *HealthGate) Waiting(stage string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting[stage]
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
	promo := g.track(spec.Name, f.ID(), commit)
	targets := []string{promo}
	if commit != promo {
		targets = append(targets, commit)
	}
	a := readApp(u, b.SourceIndex)
	at := g.atAny(ctx, spec, a.revision, targets)
	value := f.Value(spec.Strategy)

	opForUs := a.opRevision != "" && contains(targets, a.opRevision)
	// An operation for the commit must have Succeeded; one for another revision
	// (an old failed manual sync) says nothing about this commit.
	if at && a.syncStatus == "Synced" && a.health == "Healthy" && !a.running && (!opForUs || a.phase == "Succeeded") {
		if a.phase != "" && a.reconciledAt.Before(a.finishedAt) {
			return pending("waiting: Argo CD has not compared %s since its sync finished at %s", u.GetName(), a.finishedAt.Format(time.RFC3339))
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
		if err := g.syncer.sync(ctx, u, b.SourceIndex, commit, reason); err != nil {
			if errors.Is(err, ErrAppNotFound) {
				g.forget(spec.Name)
				return fmt.Errorf("stage %q: %s was written in %s but %w", spec.Name, value, short(commit), err)
			}
			return err
		}
		g.log.Info("sync requested", "stage", spec.Name, "app", b.App.String(), "revision", commit, "reason", reason)
		return pending("waiting: asked %s to sync to %s", u.GetName(), short(commit))
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

// unhealthy starts or checks the timeout of a bad state; past it the promotion fails.
func (g *HealthGate) unhealthy(spec stage.Spec, b Binding, value, commit, app, bad, why string, a appState) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	tr := g.tracked[spec.Name]
	if tr == nil {
		tr = &tracking{commit: commit}
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
// commit, while the engine later passes the branch head it read.
func (g *HealthGate) track(stage, freightID, commit string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	tr := g.tracked[stage]
	if tr == nil || tr.freightID != freightID {
		tr = &tracking{freightID: freightID, commit: commit}
		g.tracked[stage] = tr
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
