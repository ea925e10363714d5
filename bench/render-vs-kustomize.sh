#!/usr/bin/env bash
# Times the whole `cmp-sidecar render` process on the example frontend app against
# `kubectl kustomize` on a kustomization holding the same rendered objects: what a plugin app
# costs the repo-server next to a plain kustomize app. Usage: bench/render-vs-kustomize.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
command -v kubectl >/dev/null || { echo "kubectl is needed for the comparison" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/cmp-sidecar" ./cmd/cmp-sidecar
render=("$work/cmp-sidecar" render --root examples/gitops -n develop examples/gitops/develop/frontend)
"${render[@]}" > "$work/rendered.yaml"
mkdir -p "$work/kustomize"
cp "$work/rendered.yaml" "$work/kustomize/objects.yaml"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [objects.yaml]\n' > "$work/kustomize/kustomization.yaml"

# time_runs NAME CMD...: prints the median and mean wall time of RUNS runs, in milliseconds.
time_runs() {
  local name=$1; shift
  local samples=()
  "$@" >/dev/null # warm the page cache
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null
    end=$(date +%s%N)
    samples+=($(( (end - start) / 1000 )))
  done
  printf '%s\n' "${samples[@]}" | sort -n | awk -v name="$name" -v n="$runs" '
    { v[NR] = $1; sum += $1 }
    END { printf "%-28s median %7.1f ms   mean %7.1f ms   (%d runs)\n", name, v[int((n+1)/2)] / 1000, sum / n / 1000, n }'
}

time_runs "cmp-sidecar render" "${render[@]}"
time_runs "kubectl kustomize" kubectl kustomize "$work/kustomize"
