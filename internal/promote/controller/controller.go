// Package controller is the promoter in the cluster: stages from Argo CD annotations, one leader
// promoting under a Lease (or replicas sharing shards), state in ConfigMaps by stage, the API, probes, metrics and notifications.
package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/forge"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/leader"
	"github.com/kropipe/kropipe/internal/promote/metrics"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/pass"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/signing"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
	"github.com/kropipe/kropipe/internal/promote/webhook"
	"github.com/kropipe/kropipe/internal/version"
)

// Config is one replica's settings; cmd/promoter fills it from `promoter controller`'s flags
// (named in brackets) and checks them first, so its errors can name the flags.
type Config struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Leases, when set, is the client for the Leases (a rate limit of its own); default Kube.
	Leases kubernetes.Interface
	Logger *slog.Logger

	Namespace          string        // the Lease, the state ConfigMap and pull secrets live here (--namespace)
	ArgoCDNamespace    string        // Argo CD's repository Secrets (--argocd-namespace)
	WatchNamespaces    []string      // where Applications and ApplicationSets are read (--watch-namespaces)
	PullSecrets        []string      // dockerconfigjson Secrets in Namespace (--pull-secrets)
	InsecureRegistries []string      // hosts reached over plain HTTP (--insecure-registry)
	Interval           time.Duration // longest time between passes (--interval)
	HealthTimeout      time.Duration // how long a promoted Application may stay Degraded (--health-timeout)
	LeaderElect        bool          // campaign for the Lease; false is safe only with one replica (--leader-elect)
	StateConfigMap     string        // the name of the ConfigMaps in Namespace keeping the stages' state (--state-configmap; kubestate.Stages)
	DataDir            string        // persistent clones live under DataDir/git (--data-dir)

	// Signer signs every commit the promoter makes; nil leaves them unsigned
	// (--signing-key-file, loaded at start so a bad key fails it).
	Signer signing.Signer
	// GitAuthorName and GitAuthorEmail are the author and committer of those commits; ""
	// keeps gitwrite's kropipe <kropipe@localhost>. Forges show a signed commit Verified
	// only when the email belongs to the key's owner (--git-author-name, --git-author-email).
	GitAuthorName, GitAuthorEmail string

	// Shards spreads the stages over the replicas (--shards): 1 is one Lease and one leader
	// doing all the work; more are that many shard Leases, each fencing the replica that runs
	// its stages; the state stays where it is, by stage name.
	Shards int
	// LeaseName is the Lease (or with shards, the Leases' prefix) (--lease-name).
	LeaseName string
	// Lease timing (--lease-duration, --renew-deadline, --retry-period); zero is leader's default.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// PeerAddr serves the API to the other replicas, which pass on requests for the stages this
	// one runs; "" advertises Addr instead (--peer-addr).
	PeerAddr string
	// PeerSecret names the Secret in Namespace whose "token" the replicas send each other over
	// PeerAddr; the promoter fills it with a random one when it is empty. "" authenticates the
	// replicas with Token instead (--peer-secret).
	PeerSecret string

	Addr         string // the API listener (--addr)
	Token        string // the API's token file content (api.ParseTokens); "" for none (--token-file)
	RequireToken bool   // refuse API calls without Token: Addr is reachable from other pods
	HealthAddr   string // probes and metrics only; "" for none (--health-addr)

	WebhookAddr   string // registry notifications; "" for none (--webhook-addr)
	WebhookSecret string // the secret every notification carries (--webhook-secret-file)
	PodIP         string // advertised to standbys when WebhookAddr has no host ($POD_IP)

	ShutdownGrace   time.Duration // after ctx ends, how long the running pass may finish; 0 cancels it at once (--shutdown-grace)
	PassTimeout     time.Duration // limit of one pass; 0 for pass.DefaultTimeout (--pass-timeout)
	RegistryTimeout time.Duration // limit of each registry request; 0 for warehouse.DefaultRequestTimeout (--registry-timeout)
	// SigstoreTUF is the TUF repository of the public-good Sigstore trusted root, for keyless
	// policies without a trustedRoot (cached under DataDir/sigstore-tuf); "" for the root
	// embedded in the binary (--sigstore-tuf-url).
	SigstoreTUF string

	// SignaturePolicies are the policies kropipe.io/verify-signature may name, as
	// config.ParseSignaturePolicies read them from SignaturePolicyFile (--signature-policies):
	// their key material is named (secret:<name>/<key> in Namespace, or a file) and read by the
	// leader, again every minute.
	SignaturePolicies   map[string]signature.Policy
	SignaturePolicyFile string

	// OwedBackoff is the wait after an owed automatic rollback's first failed attempt, doubling
	// up to 5 minutes (or itself, if longer); 0 for OwedBackoff's 10 s (--owed-backoff).
	OwedBackoff time.Duration
}

func (cfg *Config) leases() kubernetes.Interface {
	if cfg.Leases != nil {
		return cfg.Leases
	}
	return cfg.Kube
}

// Validate checks the configuration and fills in defaults. Its errors name the
// `promoter controller` flag to change, since that is where a Config comes from.
func (cfg *Config) Validate() error {
	switch {
	case cfg.Kube == nil:
		return errors.New("controller: no Kubernetes client")
	case cfg.Namespace == "":
		return errors.New("no namespace for the Lease and the state ConfigMap: pass --namespace (in a pod, set POD_NAMESPACE from the downward API)")
	case cfg.Interval < 0 || cfg.Interval == 0 && cfg.WebhookAddr == "":
		return errors.New("--interval must be positive, e.g. 5m (0, passes on registry notifications, Application changes and actions only, needs --webhook-addr)")
	case cfg.HealthTimeout <= 0:
		return errors.New("--health-timeout must be positive, e.g. 5m")
	case len(cfg.WatchNamespaces) == 0:
		return errors.New("--watch-namespaces is empty: name the namespaces of the Argo CD Applications, e.g. argocd")
	case cfg.WebhookAddr != "" && strings.TrimSpace(cfg.WebhookSecret) == "":
		return errors.New("registry notifications need a secret: pass --webhook-secret-file")
	case cfg.ShutdownGrace < 0 || cfg.PassTimeout < 0 || cfg.RegistryTimeout < 0:
		return errors.New("--shutdown-grace, --pass-timeout and --registry-timeout must not be negative")
	case cfg.OwedBackoff < 0:
		return errors.New("--owed-backoff must not be negative, e.g. 10s (0 is the default 10s)")
	}
	if cfg.PassTimeout == 0 {
		cfg.PassTimeout = pass.DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateConfigMap == "" {
		cfg.StateConfigMap = kubestate.DefaultName
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = leader.DefaultName
	}
	switch {
	case cfg.Shards == 0:
		cfg.Shards = 1
	case cfg.Shards < 0:
		return errors.New("--shards must be at least 1")
	case cfg.Shards > 1 && !cfg.LeaderElect:
		return errors.New("--shards above 1 spreads stages over replicas by Leases: it needs --leader-elect")
	case cfg.PeerSecret != "" && cfg.PeerAddr == "":
		return errors.New("--peer-secret is the credential of --peer-addr: give --peer-addr too (without it the replicas reach each other on --addr, with --token-file)")
	case cfg.Shards > 1 && cfg.PeerAddr != "" && cfg.PeerSecret == "" && cfg.Token == "":
		return errors.New("--peer-addr is reachable from other pods and needs a credential the replicas share: pass --peer-secret=<Secret in --namespace> (the promoter fills it; manifests/promoter ships kropipe-promoter-peer) or --token-file")
	}
	return nil
}

// controller is one replica: it always serves the API and health endpoints, and runs the
// promotion loop while it leads.
type controller struct {
	f       *Config
	log     *slog.Logger
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	metrics *metrics.Metrics
	// store keeps the stages' state by stage name (kubestate.Stages): this replica reads and
	// writes the stages it runs, whichever shard they are on.
	store *kubestate.Stages
	// shards is this replica's part of the shards; nil with one shard (one leader).
	shards *sharding
	// peerToken is the credential the replicas send each other (peer.go); with shards only.
	peerToken string
	events    *argocd.Recorder

	engine  atomic.Pointer[stage.Engine]      // the leader's engine; nil while standing by
	watcher atomic.Pointer[argocd.Watcher]    // the leader's watcher; nil while standing by
	health  atomic.Pointer[argocd.HealthGate] // the leader's verifier; nil while standing by
	leader  atomic.Value                      // string: the identity of the replica that leads
	// progress is when the leader last finished a pass (or started leading), in Unix nanoseconds.
	progress atomic.Int64
	// stopping ends with the stop signal: no pass starts after it (shutdown.go).
	stopping context.Context
	leading  atomic.Bool
	// rollbacks are the automatic rollbacks owed; owed what the last pass left owed, by stage,
	// for the stages' status.
	rollbacks *rollbacks
	owed      atomic.Pointer[map[string][]stage.OwedAction]
}

// Run runs one replica until ctx ends: the listeners at once, the promotion loop while it leads.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	f, log := &cfg, cfg.Logger
	c := &controller{
		f: f, log: log, kube: cfg.Kube, dyn: cfg.Dynamic,
		metrics: metrics.New(),
		events:  argocd.NewRecorder(cfg.Kube),
	}
	c.leader.Store("")
	// One leader runs every stage.
	owns := func(string) bool { return true }
	backoff := OwedBackoff
	if f.OwedBackoff > 0 {
		backoff.Duration, backoff.Cap = f.OwedBackoff, max(backoff.Cap, f.OwedBackoff)
	}
	c.rollbacks = &rollbacks{clock: clock.RealClock{}, backoff: backoff, log: log,
		done: func(ctx context.Context, out stage.Outcome, err error, took time.Duration) {
			c.metrics.Outcome(out, err, took)
			c.outcomeEvent(ctx, c.watcher.Load(), out)
		}}
	if f.Shards > 1 {
		tok, err := c.peerCredential(ctx)
		if err != nil {
			return err
		}
		c.peerToken = tok
		s, err := newSharding(c)
		if err != nil {
			return err
		}
		c.shards = s
		owns = s.owns
	}
	c.store = kubestate.NewStages(cfg.Kube, f.Namespace, f.StateConfigMap, owns, []kubestate.Option{kubestate.WithLogger(log)})
	if c.shards != nil {
		// A shard gained or lost changes the stages this replica runs: read theirs afresh.
		c.shards.fence.OnChange(c.store.Forget)
		c.shards.moved = c.store.Forget
	}

	srv := api.New(gate{c}, api.WithToken(f.Token), api.WithRequireToken(f.RequireToken), api.WithReadiness(http.HandlerFunc(c.ready)), api.WithLogger(log), api.WithForwarders(c.peerToken))
	srv.Handle("GET /metrics", c.metrics.Handler())
	srv.Handle("GET /api/v1/problems", http.HandlerFunc(c.problems))
	srv.Describe("GET /api/v1/problems", "the annotations the promoter could not use (problems block their stage, warnings do not)", http.StatusOK, problemList{})
	if c.shards != nil && f.PeerAddr == "" {
		// Without --peer-addr the other replicas ask --addr for the stages this one runs, with
		// the API token: they send it, so nobody else reads them here when there is one.
		own, ownOne := http.Handler(http.HandlerFunc(c.own)), http.Handler(http.HandlerFunc(c.ownOne))
		if srv.TokenNeeded() {
			own, ownOne = peerOnly(c.peerToken, own), peerOnly(c.peerToken, ownOne)
		}
		changes := http.Handler(http.HandlerFunc(c.changes))
		if srv.TokenNeeded() {
			changes = peerOnly(c.peerToken, changes)
		}
		srv.Handle("GET "+api.ShardPath, own)
		srv.Handle("GET "+api.ShardPath+"/{name}", ownOne)
		srv.Describe("GET "+api.ShardPath, "for the other replicas: the stages this one runs", http.StatusOK, api.StageList{})
		srv.Describe("GET "+api.ShardPath+"/{name}", "for the other replicas: a stage this one runs", http.StatusOK, stage.Status{})
		srv.Handle("GET "+peerChangesPath, changes)
		srv.DescribeStream("GET "+peerChangesPath, "for the other replicas: a \"changed\" event each time a stage this one runs changes")
	}
	pipeline := page.Mount(srv, gate{c}, page.WithLogger(log))
	var hook http.Handler
	if f.WebhookAddr != "" {
		h, err := webhook.NewHandler(f.WebhookSecret, gate{c}.notify, log, webhook.WithResults(c.metrics.Notification))
		if err != nil {
			return err
		}
		fh, err := webhook.NewForgeHandler(f.WebhookSecret, gate{c}.notifyPullRequest, log, webhook.WithResults(c.metrics.Notification))
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		h.Register(mux)
		fh.Register(mux)
		hook = mux
	}
	// The other replicas pass requests on through --peer-addr: reachable from other pods, so
	// every request there, reads too, needs the replicas' credential (peer.go); with
	// --peer-secret the API token is not it. manifests/promoter's NetworkPolicy also keeps
	// other pods from reaching the port at all.
	var peer http.Handler
	if c.shards != nil && f.PeerAddr != "" {
		ps := api.New(gate{c}, api.WithToken(c.peerToken), api.WithRequireToken(true), api.WithLogger(log), api.WithForwarders(c.peerToken))
		ps.Handle("GET "+api.ShardPath, http.HandlerFunc(c.own))
		ps.Handle("GET "+api.ShardPath+"/{name}", http.HandlerFunc(c.ownOne))
		ps.Describe("GET "+api.ShardPath, "for the other replicas: the stages this one runs", http.StatusOK, api.StageList{})
		ps.Describe("GET "+api.ShardPath+"/{name}", "for the other replicas: a stage this one runs", http.StatusOK, stage.Status{})
		ps.Handle("GET "+peerChangesPath, http.HandlerFunc(c.changes))
		ps.DescribeStream("GET "+peerChangesPath, "for the other replicas: a \"changed\" event each time a stage this one runs changes")
		peer = peerOnly(c.peerToken, markForwarded(ps))
	}
	servers, err := c.listen(ctx, markForwarded(srv), peer, hook)
	if err != nil {
		return err
	}
	log.Info("promoter controller starting", "version", version.Version, "addr", f.Addr, "healthAddr", f.HealthAddr,
		"namespace", f.Namespace, "watchNamespaces", f.WatchNamespaces, "leaderElect", f.LeaderElect, "stateConfigMap", f.Namespace+"/"+f.StateConfigMap, "shards", f.Shards)

	// The work outlives ctx by the shutdown grace (shutdown.go).
	work, stopWork := c.outliving(ctx)
	defer stopWork()
	switch {
	case c.shards != nil:
		// Every replica runs the loop; the engine runs the stages of the shards it holds.
		managed := make(chan error, 1)
		go func() { managed <- c.shards.mgr.Run(work) }()
		c.leadUntilStopped(stopWork)(work)
		stopWork()
		err = <-managed
	case f.LeaderElect:
		err = leader.Run(work, leader.Config{
			Client: f.leases(), Namespace: f.Namespace, Name: f.LeaseName, Logger: log,
			LeaseDuration: f.LeaseDuration, RenewDeadline: f.RenewDeadline, RetryPeriod: f.RetryPeriod,
			OnNewLeader: func(id string) { c.leader.Store(id) },
		}, func(ctx context.Context) {
			// Replicas of a --shards above 1 (a rolling update to one leader) may still act on
			// the stages: this leader starts once none is alive. It stays ready meanwhile.
			retry := cmp.Or(f.RetryPeriod, leader.DefaultRetryPeriod)
			if shard.NewOthers(f.leases(), f.Namespace, f.LeaseName, nil).Await(ctx, retry, log) != nil {
				return
			}
			c.leadUntilStopped(stopWork)(ctx)
		}, nil)
	default:
		c.leadUntilStopped(stopWork)(work)
	}
	log.Info("shutting down")
	// The pipeline page's event streams never go idle: end them, or shutdown waits for them.
	pipeline.Close()
	if serr := servers.shutdown(); err == nil {
		err = serr
	}
	return err
}

// servers are the HTTP listeners of one replica.
type servers struct{ list []*http.Server }

func (c *controller) listen(ctx context.Context, apiHandler, peerHandler, hook http.Handler) (*servers, error) {
	s := &servers{}
	start := func(addr string, h http.Handler, what string) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s for the %s: %w (another promoter running? pick another port)", addr, what, err)
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
		s.list = append(s.list, hs)
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("HTTP server stopped", "addr", addr, "error", err.Error())
			}
		}()
		return nil
	}
	if err := start(c.f.Addr, apiHandler, "API (--addr)"); err != nil {
		return nil, err
	}
	if c.f.HealthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", c.healthy)
		mux.HandleFunc("GET /readyz", c.ready)
		mux.Handle("GET /metrics", c.metrics.Handler())
		if err := start(c.f.HealthAddr, mux, "probes (--health-addr)"); err != nil {
			_ = s.shutdown()
			return nil, err
		}
	}
	if peerHandler != nil {
		if err := start(c.f.PeerAddr, peerHandler, "other replicas (--peer-addr)"); err != nil {
			_ = s.shutdown()
			return nil, err
		}
	}
	if hook != nil {
		if err := start(c.f.WebhookAddr, hook, "registry notifications (--webhook-addr)"); err != nil {
			_ = s.shutdown()
			return nil, err
		}
	}
	return s, nil
}

func (s *servers) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	for _, hs := range s.list {
		errs = append(errs, hs.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// healthy answers the kubelet's liveness probe. A leader whose passes stopped finishing (a Git
// or registry request hanging) fails it, so the kubelet restarts the pod and the standby takes
// over: a wedged leader would otherwise hold the Lease with nobody promoting.
func (c *controller) healthy(w http.ResponseWriter, r *http.Request) {
	if c.engine.Load() != nil {
		last := time.Unix(0, c.progress.Load())
		if after, stuck := c.stuckAfter(), time.Since(last); after > 0 && stuck > after {
			http.Error(w, fmt.Sprintf("no pass has finished for %s", stuck.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// stuckAfter is how long a leader may go without finishing a pass: three intervals, and never
// less than 15 minutes, since one slow pass (a rate-limited registry, a large fetch) is normal.
func (c *controller) stuckAfter() time.Duration {
	if c.f.Interval == 0 {
		return 0 // no scheduled passes: a quiet registry is not a stuck leader
	}
	return max(3*c.f.Interval, 15*time.Minute)
}

// ready answers the kubelet's readiness probe. A standby is ready: it serves the API and would
// take over at once; were it not, a rolling update of two replicas would wait forever for the
// new standby. A leader is ready after its first pass.
func (c *controller) ready(w http.ResponseWriter, r *http.Request) {
	e := c.engine.Load()
	switch {
	case e != nil && e.Passes() > 0:
		fmt.Fprintln(w, "ready: leading")
	case e != nil:
		http.Error(w, "leading, first pass not finished", http.StatusServiceUnavailable)
	case c.f.LeaderElect:
		fmt.Fprintf(w, "ready: standing by (leader %s)\n", c.leaderName())
	default:
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}
}

func (c *controller) leaderName() string {
	id, _ := c.leader.Load().(string)
	if id == "" {
		return "unknown yet"
	}
	return id
}

// lead runs the promotion loop for as long as ctx lasts (leadership, or the process without
// leader election). A failing term (say the Application CRD is missing) is retried: returning
// would keep the Lease with nobody promoting.
func (c *controller) lead(ctx context.Context) {
	wait := 5 * time.Second
	for ctx.Err() == nil && c.stopping.Err() == nil {
		err := c.term(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		c.log.Error("promotion loop failed; starting it again", "error", err.Error(), "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-c.stopping.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Minute)
	}
}

// term is one leadership term: a fresh warehouse, engine and watcher, and passes until ctx
// ends. Before each pass the pull secrets are brought up to date (rotations need no restart).
func (c *controller) term(ctx context.Context) error {
	// Another replica may have led (and written) since this one last read the state.
	c.store.Forget()
	w := argocd.NewWatcher(c.dyn, c.f.WatchNamespaces, argocd.WithWatcherLogger(c.log))
	e, hg, pulls, repos, err := c.newEngine(ctx, w)
	if err != nil {
		return err
	}
	// Read before the stages are first derived, so that none waits a minute for its policy.
	sigs := newSignaturePolicies(c.kube, c.f.Namespace, c.f.SignaturePolicyFile, c.f.SignaturePolicies, c.log)
	sigs.update(ctx, w)
	wctx, stopWatcher := context.WithCancel(ctx)
	var (
		watchErr error
		watching = make(chan struct{})
	)
	go func() {
		defer close(watching)
		watchErr = w.Run(wctx)
	}()
	defer func() {
		stopWatcher()
		<-watching
	}()

	// The first change comes once the informers have synced: no pass runs on a partial set.
	select {
	case <-ctx.Done():
		return nil
	case <-c.stopping.Done():
		return nil
	case <-watching:
		return fmt.Errorf("watching Argo CD Applications in %v: %w", c.f.WatchNamespaces, watchErr)
	case <-w.Changes():
	}
	c.progress.Store(time.Now().UnixNano())
	c.watcher.Store(w)
	c.health.Store(hg)
	c.engine.Store(e)
	defer func() {
		c.engine.Store(nil)
		c.health.Store(nil)
		c.watcher.Store(nil)
	}()
	reported := map[argocd.Problem]bool{}
	interval := c.applySpecs(ctx, e, w, repos, reported)

	timer := time.NewTimer(interval)
	if interval == 0 { // --interval 0: notifications only
		timer.Stop()
	}
	defer timer.Stop()
	// kicked: the pass was asked for through Kicks (see stage.Engine.ReconcileKicked).
	kicked := false
	// fenced receives when a shard was gained or lost (nil without shards).
	var fenced <-chan struct{}
	if c.shards != nil {
		fenced = c.shards.fence.Changed()
	}
	for {
		// The pass runs inside the fence of the shards its stages belong to: it is cancelled
		// when one is lost, and the shard's Lease is let go only after it returned.
		passCtx, leave := ctx, func() {}
		if s := c.shards; s != nil {
			if !slices.Equal(s.fence.Held(), s.applied) {
				interval = c.applySpecs(ctx, e, w, repos, reported)
			}
			held, fctx, l := s.fence.Enter(ctx, s.applied)
			if len(held) != len(s.applied) {
				l() // lost one meanwhile: cut the stages again
				continue
			}
			passCtx, leave = fctx, l
		}
		pulls.update(ctx, annotatedPullSecrets(w.Config()))
		sigs.update(ctx, w)
		c.advertiseWebhook(ctx)
		before := e.Status()
		start := time.Now()
		run := e.Reconcile
		if kicked {
			run = e.ReconcileKicked // a notification runs only its stages
		}
		kicked = false
		err := pass.Run(passCtx, c.f.PassTimeout, run)
		after := e.Status()
		c.progress.Store(time.Now().UnixNano())
		c.metrics.Pass(before, after, time.Since(start))
		c.recordPass(ctx, w, before, after)
		if err != nil && passCtx.Err() == nil {
			c.log.Warn("pass finished with failures", "error", err.Error())
		}
		owedDue := c.rollBackFailures(passCtx, e, hg)
		leave()
		// An Application a stage waits for (to sync, to become healthy) changed: a pass soon
		// verifies it, instead of at the next scheduled one; the delay gathers a sync's burst
		// of status updates into one pass.
		var soon <-chan time.Time
		// Clone compaction waits for a quiet moment, out of the passes a notification asks for.
		housekeep := time.After(stage.HousekeepAfter)
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-c.stopping.Done():
				return nil
			case <-watching:
				return fmt.Errorf("watching Argo CD Applications in %v: %w", c.f.WatchNamespaces, watchErr)
			case <-timer.C:
				break wait
			case <-e.Kicks():
				kicked = true
				break wait
			case <-w.Changes():
				interval = c.applySpecs(ctx, e, w, repos, reported)
				break wait
			case <-w.Updated():
				// The pipeline page shows the Applications' sync and health: tell it.
				e.Announce()
				if soon == nil && awaited(w, hg, w.TakeUpdated()) {
					soon = time.After(verifySoon)
				}
			case <-soon:
				break wait
			case <-fenced:
				break wait
			case <-housekeep:
				housekeep = nil
				e.Housekeep(ctx) // cut short when a pass is asked for
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		// The next scheduled pass, or sooner when a soak ends first; none at all with
		// --interval 0 and no soak running (passes on notifications and changes only).
		d := e.WakeAfter(interval)
		if !owedDue.IsZero() {
			// An owed rollback's next attempt runs after the pass that comes by then.
			if due := max(time.Until(owedDue), time.Millisecond); d == 0 || due < d {
				d = due
			}
		}
		if d > 0 {
			timer.Reset(d)
		}
	}
}

// verifySoon is how long after an awaited Application changed its stage is verified.
const verifySoon = 2 * time.Second

// awaited reports whether one of the updated Applications is one a stage's verification
// waits for.
func awaited(w *argocd.Watcher, hg *argocd.HealthGate, updated []argocd.AppRef) bool {
	if len(updated) == 0 {
		return false
	}
	is := make(map[argocd.AppRef]bool, len(updated))
	for _, r := range updated {
		is[r] = true
	}
	// Few stages wait at a time; Applications update all the time.
	for _, stage := range hg.Awaiting() {
		if b, ok := w.App(stage); ok && is[b.App] {
			return true
		}
	}
	return false
}

// applySpecs hands the annotations' stages to the engine, reports the stages they cannot
// describe (log, and an Event on the Application once per problem), and returns the time until
// the next pass.
func (c *controller) applySpecs(ctx context.Context, e *stage.Engine, w *argocd.Watcher, repos *stageRepos, reported map[argocd.Problem]bool) time.Duration {
	cfg := w.Config()
	// Logged every time, recorded as an Event once per problem.
	once := func(p argocd.Problem, record func(argocd.AppRef, string) error) {
		if !reported[p] {
			reported[p] = true
			c.event(record(p.Ref(), p.Error()))
		}
	}
	for _, p := range cfg.Problems {
		c.log.Warn("stage not run: bad annotation", "stage", p.Stage, "application", p.App, "field", p.Field, "problem", p.Message)
		once(p, func(app argocd.AppRef, msg string) error { return c.events.Misconfigured(ctx, app, msg) })
	}
	for _, p := range cfg.Warnings {
		c.log.Warn("stage configuration warning", "stage", p.Stage, "application", p.App, "field", p.Field, "warning", p.Message)
		once(p, func(app argocd.AppRef, msg string) error {
			return c.events.Event(ctx, app, corev1.EventTypeWarning, "ConfigurationWarning", msg)
		})
	}
	total := len(cfg.Specs)
	var held []int
	if c.shards != nil {
		// Only the held shards' stages, cut before resolving HEADs: the rest is other replicas'.
		held = c.shards.fence.Held()
		cfg.Specs, cfg.Groups = c.shards.cut(cfg.Specs, cfg.Groups, held)
		c.shards.applied = held
	}
	cfg.Specs = repos.resolveHEAD(ctx, cfg.Specs)
	if err := e.SetSpecs(cfg.Specs, cfg.Groups...); err != nil {
		// Derive only returns sets that validate; this is a bug, so keep the old set.
		c.log.Error("stages from annotations rejected; keeping the previous set", "error", err.Error())
	}
	interval := c.f.Interval
	for _, s := range cfg.Specs {
		if s.Interval > 0 && (interval == 0 || s.Interval < interval) {
			interval = s.Interval
		}
	}
	if c.shards != nil {
		c.log.Info("stages from annotations", "stages", total, "here", len(cfg.Specs), "shards", held, "problems", len(cfg.Problems), "interval", interval.String())
		return interval
	}
	c.log.Info("stages from annotations", "stages", len(cfg.Specs), "problems", len(cfg.Problems), "interval", interval.String())
	return interval
}

// newEngine builds the leader's engine: a warehouse with request metrics (its registry
// credentials come from the pullSecrets returned), persistent clones under --data-dir whose
// push retries are counted and whose credentials come from Argo CD's repository Secrets, the
// state ConfigMap, and the health gate that syncs the promoted Application and verifies freight
// from its sync and health.
func (c *controller) newEngine(ctx context.Context, w *argocd.Watcher) (*stage.Engine, *argocd.HealthGate, *pullSecrets, *stageRepos, error) {
	whOpts := []warehouse.Option{
		warehouse.WithLogger(c.log),
		warehouse.WithMetrics(c.metrics.RegistryRequest),
		warehouse.WithInvalidTags(c.metrics.InvalidTag),
		warehouse.WithRequestTimeout(c.f.RegistryTimeout),
	}
	for _, host := range c.f.InsecureRegistries {
		whOpts = append(whOpts, warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true}))
	}
	wh, err := warehouse.New(whOpts...)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// Signatures are read through the warehouse's transport, credentials (pull secrets
	// rotated included) and insecure hosts, under the same per-registry rate limit.
	publicGood, err := signature.NewPublicGoodRoot(c.f.SigstoreTUF, filepath.Join(c.f.DataDir, "sigstore-tuf"), signature.WithTUFLogger(c.log))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sigs, err := stage.NewSignatureVerifier(wh, clock.RealClock{}, signature.WithPublicGoodRoot(publicGood))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	gitDir := filepath.Join(c.f.DataDir, "git")
	gitOpts := []gitwrite.Option{gitwrite.WithLogger(c.log), gitwrite.WithPushRetries(c.metrics.PushRetry)}
	if c.f.GitAuthorName != "" || c.f.GitAuthorEmail != "" {
		gitOpts = append(gitOpts, gitwrite.WithAuthor(cmp.Or(c.f.GitAuthorName, "kropipe"), cmp.Or(c.f.GitAuthorEmail, "kropipe@localhost")))
	}
	if c.f.Signer != nil {
		gitOpts = append(gitOpts, gitwrite.WithSigner(c.f.Signer))
		c.log.Info("signing commits", "format", c.f.Signer.Format(), "key", c.f.Signer.KeyID(), "author", cmp.Or(c.f.GitAuthorEmail, "kropipe@localhost"))
	}
	creds := argocd.NewCredentials(c.kube, c.f.ArgoCDNamespace, argocd.WithCredentialsLogger(c.log))
	repos := &stageRepos{log: c.log} // reads through the engine's clones, set below
	hg := argocd.NewHealthGate(c.dyn, w,
		argocd.WithGateLogger(c.log),
		argocd.WithTimeout(c.f.HealthTimeout),
		argocd.WithSyncIf(repos.isNewestPromotion),
		argocd.WithSubject(repos.subject),
		argocd.WithContains(repos.contains),
		argocd.WithLanded(repos.landed),
		argocd.WithVerification(repos, verify.NewJobRunner(c.kube)),
		argocd.WithAnalysis(verify.NewAnalysisRunner(c.dyn, c.kube.Discovery()), c.store),
		argocd.WithClusters(argocd.NewClusters(c.kube, c.f.ArgoCDNamespace, argocd.WithClustersLogger(c.log))),
		argocd.WithRecords(c.store),
	)
	e, err := stage.New(nil,
		stage.WithWarehouse(wh),
		stage.WithGit(gitDir, gitOpts...),
		stage.WithGitOptionsFor(creds.GitOptions),
		stage.WithForges(func(ctx context.Context, s stage.Spec) (forge.Forge, error) {
			cfg, err := creds.ForgeConfig(ctx, s.RepoURL)
			if err != nil {
				return nil, err
			}
			return stage.DefaultForge(s, cfg)
		}),
		stage.WithStore(c.store),
		stage.WithVerifier(hg),
		stage.WithSignatureVerifier(sigs),
		stage.WithSignatureChecks(c.metrics.SignatureCheck),
		stage.WithLogger(c.log),
	)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	repos.open = e.Repo
	return e, hg, newPullSecrets(c.kube, c.f.Namespace, c.f.PullSecrets, wh, c.log), repos, nil
}

// rollBackFailures handles the promotions the health gate gave up on since the last pass:
// each is logged, and with kropipe.io/auto-rollback "true" recorded as an owed rollback; then
// every owed rollback that is due is attempted (see rollbacks). It runs after the pass, never
// inside it (the engine is locked then), and returns when the next owed attempt is due.
func (c *controller) rollBackFailures(ctx context.Context, e *stage.Engine, hg *argocd.HealthGate) time.Time {
	var auto []argocd.Failure
	for _, f := range hg.TakeFailures() {
		c.log.Error("promotion failed in the cluster", "stage", f.Stage, "application", f.App.String(), "value", f.Value, "commit", f.Commit, "error", f.Err.Error())
		if f.AutoRollback {
			auto = append(auto, f)
		}
	}
	if left := c.rollbacks.owe(ctx, e, auto); len(left) > 0 {
		hg.ReturnFailures(left...)
	}
	owed, next := c.rollbacks.settle(ctx, e)
	if owed != nil {
		c.owed.Store(&owed)
	}
	return next
}

// recordPass writes an Event on the Application of every stage the pass promoted or newly
// failed; the same comparison as the metrics, so each is reported once.
func (c *controller) recordPass(ctx context.Context, w *argocd.Watcher, before, after []stage.Status) {
	prev := make(map[string]stage.Status, len(before))
	for _, s := range before {
		prev[s.Name] = s
	}
	for _, s := range after {
		c.recordPullRequest(ctx, w, s, prev[s.Name])
		b, ok := w.App(s.Name)
		if !ok {
			continue
		}
		p := prev[s.Name]
		if s.LastCommit != "" && s.LastCommit != p.LastCommit && s.Decision == stage.DecisionPromote {
			c.event(c.events.Promoted(ctx, b.App, "stage "+s.Name+": "+s.Reason))
		}
		if s.Failed() && (!p.Failed() || p.Error != s.Error) {
			c.event(c.events.Failed(ctx, b.App, s.Error))
		}
	}
}

// recordPullRequest writes the Events of a stage's pull request changing between two passes
// (opened, updated, merged, closed, withdrawn) on its Application or, for a release group, on
// every member's. How a request ended is read from the State only when one did.
func (c *controller) recordPullRequest(ctx context.Context, w *argocd.Watcher, s, p stage.Status) {
	if s.PullRequest == nil && p.PullRequest == nil {
		return
	}
	t := argocd.PullRequestTransition{Stage: s.Name, Before: p.PullRequest, After: s.PullRequest}
	if e := c.engine.Load(); e != nil && p.PullRequest != nil && (s.PullRequest == nil || s.PullRequest.Number != p.PullRequest.Number) {
		var err error
		if t.Log, err = e.PullRequestLog(ctx, s.Name); err == nil {
			t.Refused, err = e.Refusals(ctx, s.Name)
		}
		if err != nil {
			c.log.Warn("reading how a pull request ended, for its Event", "stage", s.Name, "error", err.Error())
		}
	}
	if len(t.Events()) == 0 {
		return
	}
	apps := []string{s.Name}
	if len(s.Members) > 0 {
		apps = apps[:0]
		for _, m := range s.Members {
			apps = append(apps, m.Stage)
		}
	}
	for _, name := range apps {
		if b, ok := w.App(name); ok {
			c.event(c.events.PullRequest(ctx, b.App, t))
		}
	}
}

// outcomeEvent records a promotion or rollback made through the API or by auto-rollback, on
// the stage's Application or, for a release group, on every member's.
func (c *controller) outcomeEvent(ctx context.Context, w *argocd.Watcher, o stage.Outcome) {
	if w == nil || o.Commit == "" || o.Skipped {
		return
	}
	stages := []string{o.Stage}
	if e := c.engine.Load(); e != nil {
		if st, ok := e.StatusOf(o.Stage); ok && len(st.Members) > 0 {
			stages = stages[:0]
			for _, m := range st.Members {
				stages = append(stages, m.Stage)
			}
		}
	}
	for _, name := range stages {
		b, ok := w.App(name)
		if !ok {
			continue
		}
		by := ""
		if o.RequestedBy != "" {
			by = ", requested by " + o.RequestedBy
		}
		if o.Kind == gitwrite.Rollback.String() {
			c.event(c.events.RolledBack(ctx, b.App, fmt.Sprintf("Roll back image from %s to %s (stage %s, commit %.12s%s)", o.Old, o.New, o.Stage, o.Commit, by)))
			continue
		}
		c.event(c.events.Promoted(ctx, b.App, fmt.Sprintf("Promote image from %s to %s (stage %s, commit %.12s%s)", o.Old, o.New, o.Stage, o.Commit, by)))
	}
}

// event logs a failure to record an Event: Events are for humans, never a reason to stop.
func (c *controller) event(err error) {
	if err != nil {
		c.log.Warn("could not record an Event", "error", err.Error())
	}
}

// keychain reads the --pull-secrets. A missing or unreadable Secret is logged and left out:
// the stages whose registry needs it then fail with the registry's answer, the others run.
// problems serves the stages the annotations cannot describe: they are not in the engine, so
// GET /api/v1/stages does not show them.
// problemList is the body of GET /api/v1/problems.
type problemList struct {
	Problems []argocd.Problem `json:"problems"`
	Warnings []argocd.Problem `json:"warnings"`
}

func (c *controller) problems(w http.ResponseWriter, r *http.Request) {
	body := problemList{Problems: []argocd.Problem{}, Warnings: []argocd.Problem{}}
	// A standby never gets here (api.Availability answers 503 for it).
	if wt := c.watcher.Load(); wt != nil {
		cfg := wt.Config()
		body.Problems = append(body.Problems, cfg.Problems...)
		body.Warnings = append(body.Warnings, cfg.Warnings...)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// gate is what the API drives: the leader's engine, or, on a standby, an explanation of where
// the leader is. A standby must never write to Git: the leader may be writing the same stage.
type gate struct{ c *controller }

func standbyError(leaderID string) error {
	// The identity is <pod name>_<random suffix> (leader.Identity).
	pod := leaderID
	if i := strings.LastIndex(leaderID, "_"); i > 0 {
		pod = leaderID[:i]
	}
	return fmt.Errorf("%w: this replica is standing by; the leader is %s: kubectl port-forward pod/%s 8080", api.ErrUnavailable, leaderID, pod)
}

// Available implements api.Availability: a standby's API sends callers to the leader. With
// shards every replica answers for every stage, once its watcher has synced.
func (g gate) Available() error {
	_, err := g.engine()
	return err
}

func (g gate) engine() (*stage.Engine, error) {
	if e := g.c.engine.Load(); e != nil {
		return e, nil
	}
	if g.c.shards != nil {
		return nil, errNoEngine
	}
	return nil, standbyError(g.c.leaderName())
}

// Status is every stage's: this replica's own and, with shards, the other replicas'.
func (g gate) Status() []stage.Status {
	if g.c.engine.Load() == nil {
		return nil
	}
	sts := g.local()
	if s := g.c.shards; s != nil {
		sts = append(sts, g.others()...)
		s.sortByPipeline(sts)
	}
	return append(sts, g.misconfigured()...)
}

func (g gate) StatusOf(name string) (stage.Status, bool) {
	e := g.c.engine.Load()
	if e == nil {
		return stage.Status{}, false
	}
	if s := g.c.shards; s == nil || s.fence.Holds(s.of(name)) {
		if st, ok := e.StatusOf(name); ok {
			return g.explain(st), true
		}
	} else if p, err := s.peer(s.of(name)); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
		defer cancel()
		if st, err := p.OwnStage(ctx, name); err == nil {
			return st, true
		}
	}
	for _, st := range g.misconfigured() {
		if st.Name == name {
			return st, true
		}
	}
	return stage.Status{}, false
}

// explain adds the Argo CD side to a stage's status: what the health gate waits for (say
// "operation Running") to a reason that only says "verification pending", the Application's
// last sync and health, and the warnings about its annotations.
func (g gate) explain(st stage.Status) stage.Status {
	if owed := g.c.owed.Load(); owed != nil {
		st.Owed = (*owed)[st.Name]
	}
	if hg := g.c.health.Load(); hg != nil {
		if w := hg.Waiting(st.Name); w != "" && strings.HasSuffix(st.Reason, "verification pending") {
			st.Reason += ": " + w
		}
		// The gate's run is newer (a running Job's elapsed time); the engine's is the one kept
		// in the state, shown until this leader's gate has seen the stage.
		if r := hg.Verification(st.Name); r != nil {
			st.Verification = r
		}
	}
	if w := g.c.watcher.Load(); w != nil {
		if b, ok := w.App(st.Name); ok {
			st.Warnings = append(st.Warnings, b.Warnings...)
			if u, ok := w.Application(b.App); ok {
				st.Sync = argocd.SyncStatusOf(u, b.SourceIndex)
			}
		}
	}
	return st
}

// misconfigured are the stages the annotations cannot describe, failed with what is wrong: the
// engine never runs them, but a user looking for their stage must find it, and why.
func (g gate) misconfigured() []stage.Status {
	w := g.c.watcher.Load()
	if w == nil {
		return nil
	}
	var out []stage.Status
	index := map[string]int{}
	for _, p := range w.Config().Problems {
		i, ok := index[p.Stage]
		if !ok {
			i = len(out)
			index[p.Stage] = i
			st := stage.Status{Name: p.Stage, Decision: stage.DecisionFailed}
			if u, ok := w.Application(p.Ref()); ok {
				st.Sync = argocd.SyncStatusOf(u, -1)
			}
			out = append(out, st)
		}
		if out[i].Error != "" {
			out[i].Error += "; "
		}
		out[i].Error += p.Error()
		out[i].Reason = "not run, fix its annotations: " + out[i].Error
	}
	return out
}

func (g gate) Passes() int {
	if e := g.c.engine.Load(); e != nil {
		return e.Passes()
	}
	return 0
}

func (g gate) History(ctx context.Context, name string) ([]gitwrite.Record, error) {
	return read(ctx, g, name,
		func(ctx context.Context, peer *remote) ([]gitwrite.Record, error) {
			h, err := peer.History(ctx, name)
			return history(h), err
		},
		func(ctx context.Context, e *stage.Engine) ([]gitwrite.Record, error) { return e.History(ctx, name) })
}

// PullRequestLog gives the history the stage's pull requests: from this replica's State, or
// as the owner's history links them.
func (g gate) PullRequestLog(ctx context.Context, name string) ([]stage.PullRequest, error) {
	return read(ctx, g, name,
		func(ctx context.Context, peer *remote) ([]stage.PullRequest, error) {
			h, err := peer.History(ctx, name)
			return h.PullRequests(), err
		},
		func(ctx context.Context, e *stage.Engine) ([]stage.PullRequest, error) {
			return e.PullRequestLog(ctx, name)
		})
}

// Approvals gives the history the stage's approvals: from this replica's State, or as the
// owner's history lists them.
func (g gate) Approvals(ctx context.Context, name string) ([]stage.Approval, error) {
	return read(ctx, g, name,
		func(ctx context.Context, peer *remote) ([]stage.Approval, error) {
			h, err := peer.History(ctx, name)
			return h.Approvals(), err
		},
		func(ctx context.Context, e *stage.Engine) ([]stage.Approval, error) { return e.Approvals(ctx, name) })
}

// Attestations gives the freight pages the stage's verifications and approvals: from this
// replica's State, or from the owner's.
func (g gate) Attestations(ctx context.Context, name string) (stage.Attestations, error) {
	return read(ctx, g, name,
		func(ctx context.Context, peer *remote) (stage.Attestations, error) {
			return peer.Attestations(ctx, name)
		},
		func(ctx context.Context, e *stage.Engine) (stage.Attestations, error) {
			return e.Attestations(ctx, name)
		})
}

// read answers a read about stage name where its records are: the replica that owns the
// stage's shard, through its API (fromPeer), or this replica's engine (local), holding the
// shard while it reads.
func read[T any](ctx context.Context, g gate, name string, fromPeer func(context.Context, *remote) (T, error), local func(context.Context, *stage.Engine) (T, error)) (T, error) {
	var zero T
	peer, ctx, leave, err := g.route(ctx, name)
	if err != nil {
		return zero, err
	}
	if peer != nil {
		return fromPeer(ctx, peer)
	}
	defer leave()
	e, err := g.engine()
	if err != nil {
		return zero, err
	}
	return local(ctx, e)
}

// The actions pass the caller's expected value (stage.Expect) on unchanged, to this replica's
// engine or to the owner's API: the owner's Git write checks it, wherever the call came in.

func (g gate) Promote(ctx context.Context, name, tag string, opts ...stage.ActionOption) (stage.Outcome, error) {
	expect := stage.Expected(opts...)
	return g.act(ctx, name, expect, gitwrite.Promote,
		func(ctx context.Context, e *stage.Engine) (stage.Outcome, error) {
			return e.Promote(ctx, name, tag, opts...)
		},
		func(ctx context.Context, p *api.Client) (stage.Outcome, error) {
			return p.As(stage.Requester(opts...)).Promote(ctx, name, tag, expect)
		})
}

func (g gate) Rollback(ctx context.Context, name, to string, opts ...stage.ActionOption) (stage.Outcome, error) {
	expect := stage.Expected(opts...)
	return g.act(ctx, name, expect, gitwrite.Rollback,
		func(ctx context.Context, e *stage.Engine) (stage.Outcome, error) {
			return e.Rollback(ctx, name, to, opts...)
		},
		func(ctx context.Context, p *api.Client) (stage.Outcome, error) {
			return p.As(stage.Requester(opts...)).Rollback(ctx, name, to, expect)
		})
}

func (g gate) PromoteMember(ctx context.Context, name, tag string, opts ...stage.ActionOption) (stage.Outcome, error) {
	expect := stage.Expected(opts...)
	return g.act(ctx, name, expect, gitwrite.Promote,
		func(ctx context.Context, e *stage.Engine) (stage.Outcome, error) {
			return e.PromoteMember(ctx, name, tag, opts...)
		},
		func(ctx context.Context, p *api.Client) (stage.Outcome, error) {
			return p.As(stage.Requester(opts...)).PromoteMember(ctx, name, tag, expect)
		})
}

func (g gate) RollbackMember(ctx context.Context, name, to string, opts ...stage.ActionOption) (stage.Outcome, error) {
	expect := stage.Expected(opts...)
	return g.act(ctx, name, expect, gitwrite.Rollback,
		func(ctx context.Context, e *stage.Engine) (stage.Outcome, error) {
			return e.RollbackMember(ctx, name, to, opts...)
		},
		func(ctx context.Context, p *api.Client) (stage.Outcome, error) {
			return p.As(stage.Requester(opts...)).RollbackMember(ctx, name, to, expect)
		})
}

// act runs a human's promotion or rollback on the engine holding the stage (this replica's,
// inside its shard's fence, or the owner's through its API), counts it under the stage asked
// for and raises its Event.
func (g gate) act(ctx context.Context, name, expect string, kind gitwrite.Kind, do func(context.Context, *stage.Engine) (stage.Outcome, error), remote func(context.Context, *api.Client) (stage.Outcome, error)) (stage.Outcome, error) {
	peer, ctx, leave, err := g.route(ctx, name)
	if err != nil {
		return stage.Outcome{}, err
	}
	if peer != nil {
		ctx, cancel := g.c.shards.actWait(ctx)
		defer cancel()
		out, err := remote(ctx, peer.acting()) // the owner counts it and raises its Event
		return out, peer.explainAction(name, expect, err)
	}
	defer leave()
	e, err := g.engine()
	if err != nil {
		return stage.Outcome{}, err
	}
	start := time.Now()
	out, err := do(ctx, e)
	if out.Kind == "" {
		out.Kind = kind.String()
	}
	g.c.metrics.Outcome(withStage(out, name), err, time.Since(start))
	g.c.outcomeEvent(ctx, g.c.watcher.Load(), out)
	return out, err
}

func (g gate) Approve(ctx context.Context, name, tag string, opts ...stage.ActionOption) (string, error) {
	peer, ctx, leave, err := g.route(ctx, name)
	if err != nil {
		return "", err
	}
	expect := stage.Expected(opts...)
	if peer != nil {
		ctx, cancel := g.c.shards.actWait(ctx)
		defer cancel()
		v, err := peer.acting().As(stage.Requester(opts...)).Approve(ctx, name, tag, expect)
		return v, peer.explainAction(name, expect, err)
	}
	defer leave()
	e, err := g.engine()
	if err != nil {
		return "", err
	}
	return e.Approve(ctx, name, tag, opts...)
}

func (g gate) Pause(ctx context.Context, name string, opts ...stage.ActionOption) error {
	return g.pause(ctx, name, true, opts)
}

func (g gate) Resume(ctx context.Context, name string, opts ...stage.ActionOption) error {
	return g.pause(ctx, name, false, opts)
}

func (g gate) pause(ctx context.Context, name string, paused bool, opts []stage.ActionOption) error {
	peer, ctx, leave, err := g.route(ctx, name)
	if err != nil {
		return err
	}
	if peer != nil {
		return peer.explain(peer.As(stage.Requester(opts...)).Pause(ctx, name, paused))
	}
	defer leave()
	e, err := g.engine()
	if err != nil {
		return err
	}
	if paused {
		return e.Pause(ctx, name, opts...)
	}
	return e.Resume(ctx, name, opts...)
}

// withStage fills the stage of an outcome the engine returned empty (on early errors), so a
// failure is counted under the stage that was asked for.
func withStage(o stage.Outcome, name string) stage.Outcome {
	if o.Stage == "" {
		o.Stage = name
	}
	return o
}

// Subscribe lets the pipeline page wait for the leader's passes and Application updates;
// with shards, for every replica's (peerFeed). A stream opened during one term of
// leadership stays with that term's engine; the page reconnects after a new leader
// restarts it.
func (g gate) Subscribe() (<-chan struct{}, func(), error) {
	e, err := g.engine()
	if err != nil {
		return nil, nil, err
	}
	local, stopLocal, err := e.Subscribe()
	if err != nil || g.c.shards == nil || g.c.shards.feed == nil {
		return local, stopLocal, err
	}
	remote, stopRemote := g.c.shards.feed.subscribe()
	out, done := make(chan struct{}, 1), make(chan struct{})
	go func() {
		for {
			select {
			case <-local:
			case <-remote:
			case <-done:
				return
			}
			select {
			case out <- struct{}{}:
			default: // already due to wake
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			close(done)
			stopLocal()
			stopRemote()
		})
	}, nil
}

// Specs gives the pipeline page the stages' settings (soak countdowns, commit links).
func (g gate) Specs() []stage.Spec {
	if w := g.c.watcher.Load(); g.c.shards != nil && w != nil {
		return w.Config().Specs // every replica reads every stage's settings
	}
	if e := g.c.engine.Load(); e != nil {
		return e.Specs()
	}
	return nil
}

// Tags lists the tags a stage's warehouse sees, for the pipeline page.
func (g gate) Tags(ctx context.Context, name string) ([]warehouse.TagVerdict, error) {
	return read(ctx, g, name,
		func(ctx context.Context, peer *remote) ([]warehouse.TagVerdict, error) {
			t, err := peer.Tags(ctx, name)
			return t.Tags, err
		},
		func(ctx context.Context, e *stage.Engine) ([]warehouse.TagVerdict, error) { return e.Tags(ctx, name) })
}

var (
	_ api.Attester          = gate{}
	_ api.Controller        = gate{}
	_ api.MemberActor       = gate{}
	_ api.PullRequestLogger = gate{}
)
