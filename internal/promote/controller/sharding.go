package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/leader"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// sharding is this replica's part in spreading the stages over the replicas (--shards > 1):
// the Manager holds shard Leases, the Fence says which are held now, and keys map each stage
// to its pipeline (a pipeline lives on one shard, see shard.Keys).
type sharding struct {
	n   int
	mgr *shard.Manager
	// holders says who holds a shard (mgr, from the Leases): where actions are passed on to.
	holders interface {
		Holder(n int) (shard.Member, bool)
		Identity() string
		Members() []shard.Member // the other live replicas
	}
	fence *shard.Fence
	keys  atomic.Pointer[map[string]string]
	// applied are the held shards the engine's stages were last cut for.
	applied []int
	// moved is told when the keys changed: stages may have changed shard (the state store's
	// Forget).
	moved func()
	hc    *http.Client
	// act passes actions on: no timeout of its own, the action's context bounds it (actWait).
	act   *http.Client
	token string // the replicas' credential (peer.go), sent to the others as a bearer token
	// passTimeout is --pass-timeout: how long the owner's running pass may hold its engine.
	passTimeout time.Duration
	// feed brings the other replicas' changes to this replica's pipeline pages.
	feed *peerFeed
}

// peerTimeout bounds a read from another replica (a status, a list): a dead one must not hang
// the API. An action passed on waits longer (actWait): the owner runs it only after its
// running pass.
const peerTimeout = 5 * time.Second

func newSharding(c *controller) (*sharding, error) {
	f := c.f
	s := &sharding{n: f.Shards, fence: shard.NewFence(), hc: &http.Client{Timeout: peerTimeout}, act: &http.Client{}, token: c.peerToken, passTimeout: f.PassTimeout}
	keys := map[string]string{}
	s.keys.Store(&keys)
	id := leader.Identity()
	member := id
	if i := lastUnderscore(id); i > 0 {
		member = id[:i]
	}
	mgr, err := shard.New(shard.Config{
		Client: f.leases(), Namespace: f.Namespace, Prefix: f.LeaseName, Shards: f.Shards,
		Identity: id, Member: member, Address: f.advertised(), Webhook: f.webhookURL(),
		LeaseDuration: f.LeaseDuration, RenewDeadline: f.RenewDeadline, RetryPeriod: f.RetryPeriod,
		Logger: c.log, Work: s.fence.Hold,
	})
	if err != nil {
		return nil, err
	}
	s.mgr, s.holders = mgr, mgr
	s.feed = newPeerFeed(mgr.Members, s.token, c.log)
	return s, nil
}

// owns says whether this replica runs a stage or release group now: it holds its shard. The
// state store reads and writes only these.
func (s *sharding) owns(name string) bool { return s.fence.Holds(s.of(name)) }

func lastUnderscore(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '_' {
			return i
		}
	}
	return -1
}

// advertised is the URL the other replicas reach this one's API at: --peer-addr's, else
// --addr's, with $POD_IP for an unspecified host.
func (cfg *Config) advertised() string {
	if cfg.PeerAddr != "" {
		return cfg.reachableURL(cfg.PeerAddr)
	}
	return cfg.reachableURL(cfg.Addr)
}

// reachableURL is "http://host:port" for a listen address as another pod reaches it: an
// unspecified or empty host is $POD_IP. "" when addr is not host:port or no host is known.
func (cfg *Config) reachableURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = cfg.PodIP
	}
	if host == "" {
		return ""
	}
	return "http://" + net.JoinHostPort(host, port)
}

// of is the shard of a stage or release group.
func (s *sharding) of(name string) int {
	key := name
	if k, ok := (*s.keys.Load())[name]; ok {
		key = k
	}
	return shard.Of(key, s.n)
}

// cut keeps the stages and release groups of the held shards, after learning every stage's
// pipeline from the whole set.
func (s *sharding) cut(specs []stage.Spec, groups []stage.GroupSpec, held []int) ([]stage.Spec, []stage.GroupSpec) {
	memberOf := map[string]string{}
	for _, g := range groups {
		for _, m := range g.Members {
			memberOf[m] = g.Name
		}
	}
	in := make([]shard.Spec, 0, len(specs)+len(groups))
	for _, sp := range specs {
		in = append(in, shard.Spec{Name: sp.Name, Upstream: sp.Upstream, Group: memberOf[sp.Name]})
	}
	for _, g := range groups {
		in = append(in, shard.Spec{Name: "group:" + g.Name, Group: g.Name})
	}
	keys := shard.Keys(in)
	if old := s.keys.Swap(&keys); !maps.Equal(*old, keys) && s.moved != nil {
		// A pipeline's key changed (a stage added, removed or renamed upstream): its stages
		// may now be on a shard held here, their state written by their last owner.
		s.moved()
	}
	var outSpecs []stage.Spec
	for _, sp := range specs {
		if slices.Contains(held, s.of(sp.Name)) {
			outSpecs = append(outSpecs, sp)
		}
	}
	var outGroups []stage.GroupSpec
	for _, g := range groups {
		if slices.Contains(held, s.of(g.Name)) {
			outGroups = append(outGroups, g)
		}
	}
	return outSpecs, outGroups
}

// forwardedKey marks a request another replica passed on (api.ForwardedHeader).
type forwardedKey struct{}

// markForwarded notes api.ForwardedHeader in the request's context: such a request is
// answered here, never passed on again (two replicas with different views of who owns a
// shard must not bounce it between them).
func markForwarded(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(api.ForwardedHeader) != "" {
			r = r.WithContext(context.WithValue(r.Context(), forwardedKey{}, true))
		}
		h.ServeHTTP(w, r)
	})
}

// route says where a request about a stage runs: here (peer nil) inside the fence of the
// stage's shard, with ctx ending when the shard is lost and leave to call when done; or on
// the replica holding the shard (peer set).
func (g gate) route(ctx context.Context, name string) (peer *remote, fctx context.Context, leave func(), err error) {
	s := g.c.shards
	if s == nil {
		return nil, ctx, func() {}, nil
	}
	n := s.of(name)
	held, fctx, leave := s.fence.Enter(ctx, []int{n})
	if len(held) == 1 {
		return nil, fctx, leave, nil
	}
	leave()
	if fwd, _ := ctx.Value(forwardedKey{}).(bool); fwd {
		return nil, nil, nil, fmt.Errorf("%w: stage %q is on shard %d, which this replica does not hold (its owner is changing); try again in a few seconds", api.ErrUnavailable, name, n)
	}
	c, err := s.peer(n)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, ctx, func() {}, nil
}

// remote is the replica holding a shard, through its API.
type remote struct {
	*api.Client
	actions *api.Client // Client without the read timeout, for actions
	member  shard.Member
}

// actWait bounds an action passed on to the stage's owner by the longest it can take there:
// the owner's running pass (up to --pass-timeout) and then the action itself (a fetch and a
// push, bounded the same way), never the 5 s of a read. The caller's own deadline, when
// shorter, still holds: the owner then refuses to start it (nothing is done), or, already
// writing, finishes, and a retry with the same expected value is refused as moved.
func (s *sharding) actWait(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*s.passTimeout+peerTimeout)
}

// acting is the client for an action on the owner: without the read timeout.
func (r *remote) acting() *api.Client { return r.actions }

// explainAction is explain for an action passed on: when the owner gave no answer, the caller
// learns exactly that, and how to find out and retry safely.
func (r *remote) explainAction(stage, expect string, err error) error {
	var se *api.StatusError
	if err == nil || errors.As(err, &se) {
		return r.explain(err) // the owner's own answer: its result, 409 moved, or "not done"
	}
	retry := "the action carried no expected value, so look at the stage before acting again"
	if expect != "" {
		retry = fmt.Sprintf("acting again with the same expected value (%s) is safe: it is refused if the stage moved", expect)
	}
	return &api.StatusError{Code: http.StatusGatewayTimeout, Msg: fmt.Sprintf("stage %q runs on replica %s, which gave no answer (%v): if it wrote, its status shows the new value within a pass; %s", stage, r.member.Identity, err, retry)}
}

// explain adds what to do to a refusal of a passed-on request: the replicas share no credential.
func (r *remote) explain(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden) {
		pod := r.member.Identity
		if i := lastUnderscore(pod); i > 0 {
			pod = pod[:i]
		}
		return &api.StatusError{Code: se.Code, Msg: fmt.Sprintf("the stage runs on replica %s, which refused the request passed on to it (%s): give every replica the same --peer-secret (else --token-file), or act there: kubectl port-forward pod/%s 8080", r.member.Identity, se.Msg, pod)}
	}
	return err
}

// peer is a client for the replica holding shard n.
func (s *sharding) peer(n int) (*remote, error) {
	m, ok := s.holders.Holder(n)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: shard %d has no live owner right now (a replica stopped; another takes its shards over within the lease duration); try again in a few seconds", api.ErrUnavailable, n)
	case m.Identity == s.holders.Identity():
		return nil, fmt.Errorf("%w: shard %d is being taken over by this replica; try again in a few seconds", api.ErrUnavailable, n)
	case m.Address == "":
		return nil, fmt.Errorf("%w: shard %d is held by %s, which advertises no address: give every replica --peer-addr (or a non-loopback --addr)", api.ErrUnavailable, n, m.Identity)
	}
	return &remote{Client: api.NewClient(m.Address, s.token, s.hc).Forwarding(), actions: api.NewClient(m.Address, s.token, s.act).Forwarding(), member: m}, nil
}

// others returns every stage the other live replicas run, asked concurrently; a replica that
// does not answer is logged and left out.
func (g gate) others() []stage.Status {
	s := g.c.shards
	members := s.holders.Members()
	parts := make([][]stage.Status, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.Address == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			defer cancel()
			sts, err := api.NewClient(m.Address, s.token, s.hc).Forwarding().OwnStages(ctx)
			if err != nil {
				g.c.log.Warn("another replica's stages are left out: it did not answer", "replica", m.Identity, "error", err.Error())
				return
			}
			parts[i] = sts
		}()
	}
	wg.Wait()
	var out []stage.Status
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// own serves api.ShardPath: the stages this replica runs, for the other replicas' lists.
func (c *controller) own(w http.ResponseWriter, r *http.Request) {
	g := gate{c}
	sts := g.local()
	if sts == nil {
		sts = []stage.Status{}
	}
	writeJSON(w, http.StatusOK, api.StageList{Stages: sts})
}

func (c *controller) ownOne(w http.ResponseWriter, r *http.Request) {
	g := gate{c}
	name := r.PathValue("name")
	if e := c.engine.Load(); e != nil && c.shards.fence.Holds(c.shards.of(name)) {
		if st, ok := e.StatusOf(name); ok {
			writeJSON(w, http.StatusOK, g.explain(st))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, api.Error{Error: fmt.Sprintf("stage %q does not run on this replica", name)})
}

// local is the statuses of the stages this replica's engine runs.
func (g gate) local() []stage.Status {
	e := g.c.engine.Load()
	if e == nil {
		return nil
	}
	all := e.Status()
	sts := make([]stage.Status, 0, len(all))
	for _, st := range all {
		// A shard just lost stays in the engine until the loop cuts the stages again; its
		// new owner lists it.
		if s := g.c.shards; s != nil && !s.fence.Holds(s.of(st.Name)) {
			continue
		}
		sts = append(sts, g.explain(st))
	}
	return sts
}

// sortByPipeline orders statuses from several replicas by pipeline, keeping each pipeline's
// own order (upstreams first).
func (s *sharding) sortByPipeline(sts []stage.Status) {
	keys := *s.keys.Load()
	key := func(name string) string {
		if k, ok := keys[name]; ok {
			return k
		}
		return name
	}
	sort.SliceStable(sts, func(i, j int) bool { return key(sts[i].Name) < key(sts[j].Name) })
}

// history converts the API's history back into records.
func history(h api.History) []gitwrite.Record {
	out := make([]gitwrite.Record, 0, len(h.Entries))
	for _, e := range h.Entries {
		if e.Kind == api.KindApprove {
			continue // no commit: Approvals passes these on
		}
		kind := gitwrite.Promote
		if e.Kind == gitwrite.Rollback.String() {
			kind = gitwrite.Rollback
		}
		out = append(out, gitwrite.Record{Commit: e.Commit, Time: e.Time, Subject: e.Subject, Kind: kind,
			Image: e.Image, Value: e.Value, Previous: e.Previous, Freight: e.Freight, Rejected: e.Rejected, RequestedBy: e.RequestedBy})
	}
	return out
}

// errNoEngine is the answer before this replica's watcher has synced.
var errNoEngine = fmt.Errorf("%w: this replica is starting (reading the Applications)", api.ErrUnavailable)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
