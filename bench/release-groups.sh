#!/usr/bin/env bash
# Release groups at scale: GROUPS groups of 5 members (default the issue's 200, i.e. 1,000
# stages), every member with a new tag at once. Prints the time until every set is pushed
# (one commit per group, one push) and the process's peak RSS during that pass.
# Usage: bench/release-groups.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The Go go.mod names (toolchain line), as the Makefile uses: the machine's own Go only starts it.
export GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
KROPIPE_BENCH_LARGE=1 go test -count=1 -run '^$' -bench 'BenchmarkReconcile_ReleaseGroups' -benchtime 1x -timeout 30m ./internal/promote/stage |
	grep -E 'Benchmark|ok|FAIL'
