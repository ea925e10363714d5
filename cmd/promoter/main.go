// Command promoter watches registries for new image tags and promotes them through
// stages by committing the tag into each stage's instance.yaml in Git.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGINT/SIGTERM cancel the context. `run` starts no new pass, lets the running one
	// finish for up to --shutdown-grace (then cancels it), stops the API and exits;
	// one-shot commands abandon their request. A second signal ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default action is back: a second one ends the process
	// at once, without waiting for the grace.
	context.AfterFunc(ctx, stop)
	err := newRootCommand(os.Stdout, os.Stderr, os.Getenv).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "promoter: %v\n", err)
		os.Exit(1)
	}
}
