#!/usr/bin/env bash
# Times whole processes, side by side in one run, on the example frontend app:
#   - `cmp-sidecar generate` with a warm render server (steady state: the RGD seen before),
#   - `cmp-sidecar generate` in-process (KROPIPE_RENDER_SERVER=off: the fallback path),
#   - the first `generate` of a sidecar: no server yet, so it starts one and asks it,
#   - `kubectl kustomize` of a kustomization holding the same rendered objects,
# and prints each median as a ratio to kustomize's. Usage: bench/render-vs-kustomize.sh [RUNS]
# (default 25). kustomize comes from kubectl, else is built from its module.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Go go.mod names (toolchain line), as the Makefile uses: the machine's own Go only starts it.
export GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
runs=${1:-25}

source bench/sidecar-setup.sh

# The repository as argocd-cmp-server extracts it: under its working root, the app's folder as
# working directory, Argo CD's environment.
export ARGOCD_CMP_WORKDIR="$work/cmp"
mkdir -p "$ARGOCD_CMP_WORKDIR/repo"
cp -r examples/gitops/. "$ARGOCD_CMP_WORKDIR/repo/"
app="$ARGOCD_CMP_WORKDIR/repo/develop/frontend"
export ARGOCD_APP_NAME=develop-frontend ARGOCD_APP_NAMESPACE=develop ARGOCD_APP_SOURCE_PATH=develop/frontend
export KROPIPE_RENDER_DIR="$work/render"
generate=("$work/bin/cmp-sidecar" generate)

(cd "$app" && KROPIPE_RENDER_SERVER=off "${generate[@]}") > "$work/rendered.yaml"
mkdir -p "$work/kustomize"
cp "$work/rendered.yaml" "$work/kustomize/objects.yaml"
kustomization_of "$work/kustomize"

"$work/bin/cmp-sidecar-renderer" serve --dir "$KROPIPE_RENDER_DIR" --root "$ARGOCD_CMP_WORKDIR" &
server_pid=$!
until [ -S "$KROPIPE_RENDER_DIR/render.sock" ]; do sleep 0.05; done
(cd "$app" && "${generate[@]}") | cmp - "$work/rendered.yaml" # warms the server, checks the bytes

# time_us CMD...: wall time of one run of CMD in the app folder, in microseconds.
time_us() {
  local start end
  start=$(date +%s%N)
  (cd "$app" && "$@" >/dev/null)
  end=$(date +%s%N)
  echo $(( (end - start) / 1000 ))
}

median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR+1)/2)] / 1000 }'; }

# first_call_us: one first generate of a sidecar: no server in a fresh directory, so the call
# starts one. Only the call is timed; the started server is then stopped by removing its
# directory (it exits when its socket goes).
first=0
first_call_us() {
  first=$((first + 1))
  local dir="$work/first-$first"
  KROPIPE_RENDER_DIR="$dir" time_us "${generate[@]}"
  rm -rf "$dir"
}

# The single-binary cmp-sidecar before the render server (BASELINE, a git revision; default
# r9), for "no slower than today".
baseline_rev=${BASELINE:-r9}
baseline=()
if git rev-parse -q --verify "$baseline_rev^{commit}" >/dev/null; then
  mkdir -p "$work/baseline"
  git archive "$baseline_rev" | tar -x -C "$work/baseline"
  (cd "$work/baseline" && go build -o "$work/bin/cmp-sidecar-baseline" ./cmd/cmp-sidecar)
  baseline=("$work/bin/cmp-sidecar-baseline" generate)
fi

# The candidates run interleaved, one sample of each per round, so the load other processes put
# on the machine weighs on all of them alike.
names=(kustomize warm fallback gogc100 first)
cmds_kustomize=("${kustomize[@]}" "$work/kustomize")
cmds_warm=("${generate[@]}")
cmds_fallback=(env KROPIPE_RENDER_SERVER=off "${generate[@]}")
cmds_gogc100=(env KROPIPE_RENDER_SERVER=off GOGC=100 "${generate[@]}")
if [ ${#baseline[@]} -gt 0 ]; then names+=(today); cmds_today=("${baseline[@]}"); fi
echo "load before: $(uptime)"
for n in "${names[@]}"; do
  declare -n c="cmds_$n"
  [ "$n" = first ] || (cd "$app" && "${c[@]}" >/dev/null) # page cache
  : > "$work/samples-$n"
done
for _ in $(seq "$runs"); do
  for n in "${names[@]}"; do
    declare -n c="cmds_$n"
    if [ "$n" = first ]; then first_call_us; else time_us "${c[@]}"; fi >> "$work/samples-$n"
  done
done
for n in "${names[@]}"; do declare "ms_$n=$(median < "$work/samples-$n")"; done
echo "load after:  $(uptime)"
printf '%-52s %8s %8s\n' "whole process, median of $runs runs" "ms" "ratio"
row() { awk -v name="$1" -v ms="$2" -v k="$3" 'BEGIN { printf "%-52s %8.1f %8.2f\n", name, ms, ms / k }'; }
k=$ms_kustomize
row "kustomize build of the same objects" "$k" "$k"
row "generate, warm render server (steady state)" "$ms_warm" "$k"
row "generate, in-process (KROPIPE_RENDER_SERVER=off)" "$ms_fallback" "$k"
row "generate, in-process with GOGC=100" "$ms_gogc100" "$k"
[ -n "${ms_today:-}" ] && row "generate of $baseline_rev (single binary, today)" "$ms_today" "$k"
row "generate, first call (starts the server, asks it)" "$ms_first" "$k"
