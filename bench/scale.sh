#!/usr/bin/env bash
# The promoter at scale (issue 16): N generated stages on a real registry (the distribution
# registry from ~/.cache/kropipe-e2e, else go-containerregistry's) and a real Git server
# (git http-backend). Local mode runs `promoter run` as a child process: a pass with a new
# tag for every stage, an idle pass, then registry notifications timed to the pushed commit.
# Controller mode runs the controller's engine on stages derived from fake Applications.
# Prints wall time, peak RSS and registry requests per phase. See bench/README.md.
# Usage: bench/scale.sh [1000|10000 ...]   (default: 1000 10000); extra flags via SCALE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Go go.mod names (toolchain line), as the Makefile uses: the machine's own Go only starts it.
export GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/promoter" ./cmd/promoter
go build -o "$bin/scale" ./bench/scale
uptime
for n in "${@:-1000 10000}"; do
	for n1 in $n; do
		notes=100
		[ "$n1" -gt 1000 ] && notes=0 # the latency goal is stated with 1,000 other stages
		"$bin/scale" -stages "$n1" -promoter "$bin/promoter" -notifications "$notes" ${SCALE_FLAGS:-}
		"$bin/scale" -stages "$n1" -mode controller ${SCALE_FLAGS:-}
	done
done
uptime
