package main

import (
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/kropipe/kropipe/internal/promote/pass"
)

// passFlags are the time limits of run's and controller's passes; --registry-timeout, which
// the one-shot commands need too, is the root command's.
type passFlags struct {
	grace, timeout time.Duration
}

func (p *passFlags) register(fl *pflag.FlagSet) {
	fl.DurationVar(&p.grace, "shutdown-grace", pass.DefaultShutdownGrace, "on SIGTERM or SIGINT, how long the running pass may take to finish before it is cancelled (Kubernetes waits 30s before SIGKILL)")
	fl.DurationVar(&p.timeout, "pass-timeout", pass.DefaultTimeout, "limit for one whole pass; a pass over it is cancelled and its unfinished stages fail (with --once: a non-zero exit naming this limit)")
}

func (p *passFlags) check() error {
	if p.timeout <= 0 || p.grace < 0 {
		return errors.New("--pass-timeout must be positive and --shutdown-grace not negative, e.g. --pass-timeout 10m --shutdown-grace 25s")
	}
	return nil
}
