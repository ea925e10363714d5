// Package stack builds and runs the real GitOps stack on one machine for end-to-end tests: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok, Argo CD, git and a registry, and a
// Gitea forge for the tests that ask for one (StartGitea).
//
// Everything listens on 127.0.0.1 ports picked at start; binaries are built from the Go module
// proxy into a cache folder reused across runs; every process is stopped by Stop, pass or fail.
package stack
