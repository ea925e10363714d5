package controller

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// peerChangesPath streams, to the other replicas, that the stages this replica runs changed
// (text/event-stream, one "changed" event per announcement of its engine), behind the peer
// credential like the rest of api.ShardPath's routes. A replica's pipeline page follows every
// other replica's stream, so a card of a stage run elsewhere updates without a reload.
const peerChangesPath = "/api/v1/shard/changes"

// peerKeepAlive is how often an idle change stream sends a comment, so proxies and
// port-forwards keep it open.
const peerKeepAlive = 30 * time.Second

// changes serves peerChangesPath: this replica's own changes only (its engine's
// announcements), never those it learnt from the others, so no change goes round in circles.
func (c *controller) changes(w http.ResponseWriter, r *http.Request) {
	e := c.engine.Load()
	if e == nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{Error: errNoEngine.Error()})
		return
	}
	changed, stop, err := e.Subscribe()
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, stage.ErrTooManySubscribers) {
			code = http.StatusTooManyRequests
		}
		writeJSON(w, code, api.Error{Error: err.Error()})
		return
	}
	defer stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	var stopping <-chan struct{}
	if c.stopping != nil {
		stopping = c.stopping.Done() // the stream never goes idle: shutdown must end it
	}
	tick := time.NewTicker(peerKeepAlive)
	defer tick.Stop()
	for {
		var line string
		select {
		case <-changed:
			line = "event: changed\ndata: {}\n\n"
		case <-tick.C:
			line = ": keep-alive\n\n"
		case <-r.Context().Done():
			return
		case <-stopping:
			return
		}
		if _, err := fmt.Fprint(w, line); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// peerFeed joins the other replicas' change streams for this replica's pipeline pages: while
// at least one page watches, it follows every live replica's peerChangesPath and wakes every
// watcher on each change. Replicas that come and go are picked up every peerRescan.
type peerFeed struct {
	members func() []shard.Member
	token   string
	client  *http.Client // no timeout: the streams stay open
	log     *slog.Logger
	retry   time.Duration // wait before following a replica again after its stream ended

	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	cancel context.CancelFunc // ends the following; nil while nobody watches
	done   chan struct{}      // closed when the following has ended
}

// peerRescan is how often the feed looks for replicas that joined or left.
const peerRescan = 5 * time.Second

func newPeerFeed(members func() []shard.Member, token string, log *slog.Logger) *peerFeed {
	return &peerFeed{members: members, token: token, client: &http.Client{}, log: log, retry: 3 * time.Second, subs: map[chan struct{}]struct{}{}}
}

// subscribe returns a channel that receives a value after another replica's stages changed,
// and the function that ends the subscription; the last one to end stops the following.
func (f *peerFeed) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	if f.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel, f.done = cancel, make(chan struct{})
		go f.follow(ctx, f.done)
	}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch)
			var done chan struct{}
			if len(f.subs) == 0 && f.cancel != nil {
				f.cancel()
				done, f.cancel = f.done, nil
			}
			f.mu.Unlock()
			if done != nil {
				<-done
			}
		})
	}
}

func (f *peerFeed) wake() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// follow keeps one stream open per live replica until ctx ends.
func (f *peerFeed) follow(ctx context.Context, done chan struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	defer wg.Wait()
	following := map[string]context.CancelFunc{} // address → its stream's cancel
	defer func() {
		for _, cancel := range following {
			cancel()
		}
	}()
	rescan := time.NewTicker(peerRescan)
	defer rescan.Stop()
	for {
		live := map[string]bool{}
		for _, m := range f.members() {
			if m.Address == "" {
				continue
			}
			live[m.Address] = true
			if _, ok := following[m.Address]; ok {
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			following[m.Address] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.stream(sctx, m)
			}()
		}
		for addr, cancel := range following {
			if !live[addr] {
				cancel() // the replica left
				delete(following, addr)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-rescan.C:
		}
	}
}

// stream reads one replica's changes until ctx ends, opening its stream again after it ends.
// A replica that answered is a change in itself: its stages may have moved meanwhile.
func (f *peerFeed) stream(ctx context.Context, m shard.Member) {
	for {
		err := f.read(ctx, m)
		if ctx.Err() != nil {
			return
		}
		f.log.Debug("another replica's change stream ended; following it again", "replica", m.Identity, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.retry):
		}
	}
}

func (f *peerFeed) read(ctx context.Context, m shard.Member) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(m.Address, "/")+peerChangesPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set(api.ForwardedHeader, "1")
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("replica %s answered %s to %s", m.Identity, resp.Status, peerChangesPath)
	}
	f.wake() // (re)connected: what changed while the stream was down shows now
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == "event: changed" {
			f.wake()
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the stream ended")
}
