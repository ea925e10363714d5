#!/usr/bin/env bash
# An ApplicationSet's refresh after a commit to rgds/: APPS applications (default 100) sharing
# one RGD are generated at once, PARALLEL at a time (default 10, a repo-server's parallelism),
# each in a fresh copy of the repository as argocd-cmp-server extracts one per call. Prints the
# total wall time of
#   - generate through a render server that has never seen the RGD (the commit changed it),
#   - the same again, now warm,
#   - generate in-process (KROPIPE_RENDER_SERVER=off),
#   - kustomize of the same objects, one kustomization per application,
# with the render server's peak RSS (VmHWM). Usage: bench/refresh-100-apps.sh [APPS] [PARALLEL]
set -euo pipefail
cd "$(dirname "$0")/.."
# The Go go.mod names (toolchain line), as the Makefile uses: the machine's own Go only starts it.
export GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
apps=${1:-100}
parallel=${2:-10}

source bench/sidecar-setup.sh

export ARGOCD_CMP_WORKDIR="$work/cmp" KROPIPE_RENDER_DIR="$work/render"
for i in $(seq "$apps"); do
  repo="$ARGOCD_CMP_WORKDIR/$i"
  mkdir -p "$repo/apps/app-$i"
  cp -r examples/gitops/rgds "$repo/"
  sed "s/name: frontend/name: app-$i/; s/1.2.1/1.2.$i/" examples/gitops/develop/frontend/instance.yaml > "$repo/apps/app-$i/instance.yaml"
done
# One call: APP=i, in its repository's app folder, Argo CD's environment.
cat > "$work/generate-one" <<ONE
#!/usr/bin/env bash
cd "$ARGOCD_CMP_WORKDIR/\$1/apps/app-\$1"
ARGOCD_APP_NAME=app-\$1 ARGOCD_APP_NAMESPACE=develop ARGOCD_APP_SOURCE_PATH=apps/app-\$1 exec "$work/bin/cmp-sidecar" generate
ONE
chmod +x "$work/generate-one"
mkdir -p "$work/kustomize"
for i in $(seq "$apps"); do
  mkdir -p "$work/kustomize/$i"
  KROPIPE_RENDER_SERVER=off "$work/generate-one" "$i" > "$work/kustomize/$i/objects.yaml"
  kustomization_of "$work/kustomize/$i"
done

# wall_ms CMD...: total wall time of running CMD for every app, PARALLEL at a time.
wall_ms() {
  local start end
  start=$(date +%s%N)
  seq "$apps" | xargs -P "$parallel" -I{} "$@" >/dev/null
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}

echo "load before: $(uptime)"
"$work/bin/cmp-sidecar-renderer" serve --dir "$KROPIPE_RENDER_DIR" --root "$ARGOCD_CMP_WORKDIR" &
server_pid=$!
until [ -S "$KROPIPE_RENDER_DIR/render.sock" ]; do sleep 0.05; done
cold=$(wall_ms "$work/generate-one" {})
warm=$(wall_ms "$work/generate-one" {})
rss=$(awk '/VmHWM/ { print $2 / 1024 }' "/proc/$server_pid/status")
kill "$server_pid"; server_pid=
inproc=$(KROPIPE_RENDER_SERVER=off wall_ms "$work/generate-one" {})
kust=$(wall_ms "${kustomize[@]}" "$work/kustomize/{}")
echo "load after:  $(uptime)"
printf '%-58s %8s %7s\n' "$apps apps, $parallel at a time, total wall time" "ms" "ratio"
row() { awk -v name="$1" -v ms="$2" -v k="$kust" 'BEGIN { printf "%-58s %8d %7.2f\n", name, ms, ms / k }'; }
row "kustomize of the same objects" "$kust"
row "generate, render server new to the RGD" "$cold"
row "generate, render server warm" "$warm"
row "generate, in-process (KROPIPE_RENDER_SERVER=off)" "$inproc"
echo "render server peak RSS (VmHWM): ${rss} MiB"
