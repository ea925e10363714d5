#!/usr/bin/env bash
# The fault suite's randomized run, long: KILLS SIGKILLs of the real promoter binary over
# SERVICES × 3 chained stages while new versions arrive. Usage: bench/faults-long.sh [KILLS] [SERVICES]
set -euo pipefail
cd "$(dirname "$0")/.."
# The Go go.mod names (toolchain line), as the Makefile uses: the machine's own Go only starts it.
export GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
FAULTS_KILLS=${1:-500} FAULTS_SERVICES=${2:-20} \
	go test -count=1 -timeout 2h -v -run '^TestRandomKills_' ./internal/promote/faults 2>&1 |
	grep -E 'seed|kills|PASS|FAIL|ok'
