package controller

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/shard"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// ownerAt is a holders that puts every shard on the replica at addr.
type ownerAt string

func (o ownerAt) Holder(int) (shard.Member, bool) {
	return shard.Member{Identity: "promoter-1_abc", Address: string(o)}, true
}
func (ownerAt) Identity() string { return "promoter-0_xyz" }
func (o ownerAt) Members() []shard.Member {
	return []shard.Member{{Identity: "promoter-1_abc", Address: string(o)}}
}

// forwarder is a replica holding no shard, passing actions on to the owner at addr. Its reads
// time out at once: an action passed on must not be bounded by a read's timeout (it was, 5 s,
// while the owner's pass held the engine for minutes).
func forwarder(addr string) gate {
	s := &sharding{n: 2, fence: shard.NewFence(), holders: ownerAt(addr),
		hc: &http.Client{Timeout: time.Nanosecond}, act: &http.Client{}, passTimeout: time.Minute}
	keys := map[string]string{}
	s.keys.Store(&keys)
	return gate{c: &controller{shards: s, log: slog.New(slog.DiscardHandler)}}
}

// within waits for ch, failing the test (instead of hanging it) after 30 s.
func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("waited 30s for %s", what)
		panic("unreachable")
	}
}

// A rollback passed on to the stage's owner returns the owner's own result, carries the
// caller's expected value (a retry is refused with the owner's 409, nothing done), and an
// owner that gives no answer is reported as such with how to act again safely.
func TestForward_ActionReturnsTheOwnersResult(t *testing.T) {
	ctx := context.Background()
	env := newOwedEnv(t)
	owner := httptest.NewServer(api.New(env.newEngine(), api.WithLogger(slog.New(slog.DiscardHandler))))
	defer owner.Close()
	g := forwarder(owner.URL)

	out, err := g.Rollback(ctx, "develop-frontend", "", stage.Expect("1.2.2"))
	if err != nil || out.Old != "1.2.2" || out.New != "1.2.1" || out.Commit == "" {
		t.Fatalf("forwarded rollback: %+v, %v; want the owner's commit", out, err)
	}
	_, err = g.Rollback(ctx, "develop-frontend", "", stage.Expect("1.2.2"))
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Msg, "now runs 1.2.1, you expected 1.2.2") {
		t.Fatalf("forwarded retry: %v; want the owner's 409", err)
	}
	if got := env.rollbackCommits(t); len(got) != 1 {
		t.Fatalf("rollback commits %q; want one", got)
	}

	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close() // the owner dies mid-action
		}
	}))
	defer gone.Close()
	_, err = forwarder(gone.URL).Rollback(ctx, "develop-frontend", "", stage.Expect("1.2.1"))
	if !errors.As(err, &se) || se.Code != http.StatusGatewayTimeout || !strings.Contains(se.Msg, "gave no answer") ||
		!strings.Contains(se.Msg, "acting again with the same expected value (1.2.1) is safe") {
		t.Fatalf("owner without an answer: %v; want 504 saying so and how to retry", err)
	}
}

// An action passed on while the owner's pass holds its engine waits for that pass (no read
// timeout cuts it); when its caller gives up first, the owner does not start it afterwards:
// nothing is written.
func TestForward_ActionWaitsForTheOwnersPassOrIsNotDone(t *testing.T) {
	ctx := context.Background()
	var (
		block   atomic.Bool
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	env := newOwedEnv(t, gitserver.WithRequestHook(func(r *http.Request) {
		if block.Load() && strings.Contains(r.URL.Path+"?"+r.URL.RawQuery, "upload-pack") {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
	}))
	e := env.newEngine()
	arrived, finished := make(chan struct{}, 4), make(chan int, 4)
	ownerAPI := api.New(e, api.WithLogger(slog.New(slog.DiscardHandler)))
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		rec := httptest.NewRecorder()
		ownerAPI.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		finished <- rec.Code
	}))
	defer owner.Close()
	g := forwarder(owner.URL)

	// A pass holds the owner's engine, stuck in a fetch.
	block.Store(true)
	var pass sync.WaitGroup
	pass.Add(1)
	go func() {
		defer pass.Done()
		_ = e.Reconcile(ctx)
	}()
	within(t, "the pass to hold the engine", entered)

	// The caller gives up while the action waits for the pass: not done.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := g.Rollback(cctx, "develop-frontend", "", stage.Expect("1.2.2"))
		errc <- err
	}()
	within(t, "the action to reach the owner", arrived)
	cancel()
	if err := within(t, "the caller", errc); err == nil {
		t.Fatal("the caller gave up, yet the forwarded rollback reported success")
	}
	block.Store(false)
	close(release)
	pass.Wait()
	if code := within(t, "the owner's answer", finished); code != http.StatusServiceUnavailable {
		t.Errorf("the owner answered %d to the abandoned action; want 503 not done", code)
	}
	if got := env.rollbackCommits(t); len(got) != 0 {
		t.Fatalf("an abandoned action was done: %q", got)
	}

	// Waiting for the pass: the owner's result comes back, however long the pass took.
	release = make(chan struct{}) // before block: the hook reads it only while blocking
	block.Store(true)
	pass.Add(1)
	go func() {
		defer pass.Done()
		_ = e.Reconcile(ctx)
	}()
	within(t, "the pass to hold the engine", entered)
	go func() {
		_, err := g.Rollback(ctx, "develop-frontend", "", stage.Expect("1.2.2"))
		errc <- err
	}()
	within(t, "the action to reach the owner", arrived)
	block.Store(false)
	close(release)
	pass.Wait()
	if err := within(t, "the forwarded rollback", errc); err != nil {
		t.Fatalf("forwarded rollback after the pass: %v", err)
	}
	within(t, "the owner's answer", finished)
	if got := env.rollbackCommits(t); len(got) != 1 {
		t.Fatalf("rollback commits %q; want one", got)
	}
}

// attesting is an owner replica's controller that remembers a stage's attestations.
type attesting struct {
	api.Controller // nil: only what the reads below call is answered
	a              stage.Attestations
}

func (attesting) StatusOf(name string) (stage.Status, bool) {
	return stage.Status{Name: name}, name == "develop-frontend"
}

func (o attesting) Attestations(context.Context, string) (stage.Attestations, error) { return o.a, nil }

// A freight page shows where a version was verified and approved, and when: a replica that
// does not run the stage asks its owner, whose State keeps them (it had only the newest
// verification of the stage's status, and no approvals).
func TestAttestations_ComeFromTheStagesOwner(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	want := stage.Attestations{
		Verifications: []stage.Verification{{Value: "1.2.1", FreightID: "a1", VerifiedAt: at}, {Value: "1.2.2", FreightID: "b2", VerifiedAt: at.Add(time.Hour)}},
		Approvals:     []stage.Approval{{Value: "1.2.2", ApprovedAt: at.Add(2 * time.Hour), RequestedBy: "alice"}},
	}
	owner := httptest.NewServer(api.New(attesting{a: want}, api.WithLogger(slog.New(slog.DiscardHandler))))
	t.Cleanup(owner.Close)
	g := forwarder(strings.TrimPrefix(owner.URL, "http://"))
	g.c.shards.hc = &http.Client{Timeout: 10 * time.Second}
	got, err := g.Attestations(context.Background(), "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Verifications) != 2 || got.Verifications[1].Value != "1.2.2" || !got.Verifications[1].VerifiedAt.Equal(want.Verifications[1].VerifiedAt) ||
		len(got.Approvals) != 1 || got.Approvals[0].RequestedBy != "alice" {
		t.Fatalf("attestations through the owner: %+v, want %+v", got, want)
	}
}
