package controller

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Two replicas in this process: develop-frontend runs on the owner; the pipeline page is
// opened on the other replica, which runs no stage. A rollback on the owner updates the
// card in the other replica's live stream, without a reload: its page follows the owner's
// change stream (peerChangesPath) and reads the owner's stages again.
func TestPeerFeed_ACardOnAnotherReplicaUpdatesLive(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	env := newOwedEnv(t)

	// The owner holds the one shard and runs the stage.
	e := env.newEngine()
	ownerRouting := newRouting(1)
	held, lose := context.WithCancel(ctx)
	holding := make(chan struct{})
	go func() {
		defer close(holding)
		ownerRouting.fence.Hold(held, 0)
	}()
	defer func() { lose(); <-holding }()
	<-ownerRouting.fence.Changed()
	owner := &controller{shards: ownerRouting, log: quiet}
	owner.engine.Store(e)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.ShardPath, owner.own)
	mux.HandleFunc("GET "+peerChangesPath, owner.changes)
	ownerSrv := httptest.NewServer(mux)
	defer ownerSrv.Close()

	// The other replica holds nothing; its engine runs no stage.
	idle, err := stage.New(nil, stage.WithGit(t.TempDir()), stage.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	other := forwarder(ownerSrv.URL)
	other.c.shards.hc = &http.Client{Timeout: peerTimeout}
	other.c.shards.feed = newPeerFeed(other.c.shards.holders.Members, "", quiet)
	other.c.engine.Store(idle)
	srv := api.New(other, api.WithLogger(quiet))
	pg := page.Mount(srv, other, page.WithLogger(quiet))
	defer pg.Close()
	front := httptest.NewServer(srv)
	defer front.Close()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, front.URL+"/events?v=older", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events on the other replica: %d", resp.StatusCode)
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- data
			}
		}
		close(events)
	}()
	card := func(want string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case data, ok := <-events:
				if !ok {
					t.Fatalf("the event stream ended before develop-frontend showed %s", want)
				}
				if strings.Contains(data, `stage-develop-frontend`) && strings.Contains(data, want) {
					return
				}
			case <-timeout:
				t.Fatalf("the other replica's page never showed develop-frontend at %s", want)
			}
		}
	}
	card(`\u003e1.2.2\u003c/a\u003e`) // the owner's card, as the page opened
	if _, err := e.Rollback(ctx, "develop-frontend", ""); err != nil {
		t.Fatal(err)
	}
	card(`\u003e1.2.1\u003c/a\u003e`)
}

// The feed follows replicas while a page watches and stops when the last one leaves.
func TestPeerFeed_FollowsOnlyWhileWatched(t *testing.T) {
	opened := make(chan struct{}, 4)
	closed := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != peerChangesPath || r.Header.Get("Authorization") != "Bearer peer-t0ken" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("event: changed\ndata: {}\n\n"))
		http.NewResponseController(w).Flush()
		opened <- struct{}{}
		<-r.Context().Done()
		closed <- struct{}{}
	}))
	defer srv.Close()
	f := newPeerFeed(func() []shard.Member { return []shard.Member{{Identity: "promoter-1_abc", Address: srv.URL}} }, "peer-t0ken", slog.New(slog.DiscardHandler))
	ch, stop := f.subscribe()
	within(t, "the stream opened", opened)
	within(t, "a change", ch)
	stop()
	within(t, "the stream closed", closed)
}
