// Package server is the render server's socket: a private directory holding a Unix socket
// that only the sidecar's own user may use, the framing of one request and its complete answer,
// and the client `cmp-sidecar generate` calls. It links no kro or Kubernetes package, so the
// client starts as fast as a small Go program can.
package server
