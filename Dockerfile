# syntax=docker/dockerfile:1
# kropipe cmp-sidecar image: the `kropipe-cmp` sidecar of argocd-repo-server.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ghcr.io/kropipe/cmp-sidecar:dev .
#
# Base image choice: Argo CD's sidecar-plugin docs (v2.14, "Register the plugin sidecar") run the
# sidecar with command /var/run/argocd/argocd-cmp-server, a binary that the repo-server's copyutil
# init container copies into the shared var-files volume; the plugin image only has to supply the
# tool that `generate` runs, and "can be off-the-shelf or custom-built". Argo CD builds that binary
# with CGO_ENABLED=0, and cmp-sidecar is static too, so a distroless static base suffices: no shell,
# no package manager, ~2 MB instead of the ~400 MB quay.io/argoproj/argocd image, and nothing for
# an instance file to exploit. The sidecar runs as user 999, as Argo CD requires.

FROM golang:1.27.3 AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/kropipe/kropipe/internal/version.Version=${VERSION}" \
      -o /out/ ./cmd/cmp-sidecar ./cmd/cmp-sidecar-renderer

FROM gcr.io/distroless/static-debian12:nonroot
# argocd-cmp-server finds `cmp-sidecar` (plugin.yaml's generate command) through PATH. It is a
# small front that asks the warm render server (`cmp-sidecar-renderer serve`, which the first
# generate starts, on a socket in a private folder of the sidecar's own /tmp) and otherwise runs
# cmp-sidecar-renderer in its place; the two must sit side by side.
COPY --from=build /out/cmp-sidecar /out/cmp-sidecar-renderer /usr/local/bin/
# A baked-in plugin.yaml makes the image usable without the ConfigMap; the kustomize component
# mounts the ConfigMap over it with subPath, so the ConfigMap wins when both exist.
COPY plugin.yaml /home/argocd/cmp-server/config/plugin.yaml
USER 999:999
WORKDIR /home/argocd
# No ENTRYPOINT: the Pod's command is /var/run/argocd/argocd-cmp-server from the shared volume.
# `docker run IMAGE version` still works for a quick check.
CMD ["/usr/local/bin/cmp-sidecar", "version"]
