package pass

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

// blockUntilDone is a pass stuck on a hung server.
func blockUntilDone(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestRun_NamesThePassTimeout(t *testing.T) {
	err := Run(context.Background(), 20*time.Millisecond, blockUntilDone)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "--pass-timeout (20ms)") {
		t.Fatalf("err = %v, want the pass timeout named", err)
	}
}

func TestRun_KeepsThePassError(t *testing.T) {
	boom := errors.New("stage failed")
	if err := Run(context.Background(), time.Hour, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestOutliving_TheWorkOutlivesTheSignalUntilStopped(t *testing.T) {
	signal, cancel := context.WithCancel(context.Background())
	work, stop := Outliving(signal, time.Hour, quiet)
	cancel()
	<-signal.Done()
	if work.Err() != nil {
		t.Fatalf("the work ended with the signal: %v", context.Cause(work))
	}
	stop()
	<-work.Done()
	if !errors.Is(context.Cause(work), context.Canceled) {
		t.Fatalf("cause %v, want context.Canceled", context.Cause(work))
	}
}

func TestOutliving_GraceOverCancelsTheRunningPass(t *testing.T) {
	signal, cancel := context.WithCancel(context.Background())
	work, stop := Outliving(signal, 20*time.Millisecond, quiet)
	defer stop()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(work, time.Hour, func(ctx context.Context) error {
			close(started)
			return blockUntilDone(ctx)
		})
	}()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, ErrGraceOver) {
		t.Fatalf("err = %v, want ErrGraceOver", err)
	}
}
