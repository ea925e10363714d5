// Package faults is the promoter's fault suite: the real promoter binary, built once,
// against a real Git server (git http-backend) and go-containerregistry's registry
// behind a fault-injecting proxy, all on 127.0.0.1. It kills the binary at every
// step of a promotion and at random moments, races it with a human pushing with git,
// and feeds it a misbehaving registry; after each, Git must hold every promotion
// exactly once and every commit ever pushed.
//
// The package holds only tests. FAULTS_KILLS and FAULTS_STAGES size the randomized run
// (bench/faults-long.sh runs a long one).
package faults
