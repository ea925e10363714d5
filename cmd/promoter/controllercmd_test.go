package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
)

// controllerFlagsFor are `promoter controller`'s default flags.
func controllerFlagsFor(healthAddr string) *controllerFlags {
	return &controllerFlags{
		namespace: "argocd", argocdNamespace: "argocd", watchNamespaces: []string{"argocd"},
		interval: 200 * time.Millisecond, healthTimeout: argocd.DefaultGateTimeout,
		leaderElect: true, stateConfigMap: kubestate.DefaultName, healthAddr: healthAddr,
	}
}

func TestController_RefusesUnsafeOrIncompleteSettings(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		change  func(f *controllerFlags)
		wantErr string
	}{
		{name: "no namespace", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.namespace = "" }, wantErr: "--namespace"},
		{name: "reachable API without a token", addr: "0.0.0.0:0", change: func(*controllerFlags) {}, wantErr: "--token-file"},
		{name: "zero interval", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.interval = 0 }, wantErr: "--interval"},
		{name: "zero health timeout", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.healthTimeout = 0 }, wantErr: "--health-timeout"},
		{name: "no watch namespaces", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.watchNamespaces = nil }, wantErr: "--watch-namespaces"},
		{name: "notifications without a secret", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.webhook.addr = "127.0.0.1:0" }, wantErr: "--webhook-secret-file"},
		{name: "unreadable webhook secret", addr: "127.0.0.1:0", change: func(f *controllerFlags) {
			f.webhook = webhookFlags{addr: "127.0.0.1:0", secretFile: "/nonexistent/secret"}
		}, wantErr: "--webhook-secret-file: open /nonexistent/secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := controllerFlagsFor("")
			tt.change(f)
			g := &globals{addr: tt.addr, dataDir: t.TempDir(), logLevel: "error", stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
			err := runController(context.Background(), g, f, kubefake.NewClientset(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to name %s", err, tt.wantErr)
			}
		})
	}
}

func TestController_IsARootSubcommandWithItsFlags(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCommand(&out, &out, func(string) string { return "" })
	cmd.SetArgs([]string{"controller", "--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--kubeconfig", "--namespace", "--watch-namespaces", "--data-dir", "--addr", "--pull-secrets", "--interval", "--leader-elect", "--state-configmap", "--health-addr", "--insecure-registry"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("controller --help lacks %s", flag)
		}
	}
}
