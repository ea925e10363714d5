# Sourced by the cmp-sidecar benchmarks (render-vs-kustomize.sh, refresh-100-apps.sh) from the
# repository root: a scratch folder $work removed on exit (with the render server they started,
# $server_pid), both binaries built into $work/bin, and kustomize as the array $kustomize —
# kubectl's, else built from its module — plus kustomization_of DIR, which makes DIR a
# kustomization of the rendered objects in DIR/objects.yaml.
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bin/" ./cmd/cmp-sidecar ./cmd/cmp-sidecar-renderer
if command -v kubectl >/dev/null; then
  kustomize=(kubectl kustomize)
else
  GOBIN="$work/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1
  kustomize=("$work/bin/kustomize" build)
fi

kustomization_of() {
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [objects.yaml]\n' > "$1/kustomization.yaml"
}
