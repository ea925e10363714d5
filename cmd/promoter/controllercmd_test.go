package main

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/controller"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/pass"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// controllerFlagsFor are `promoter controller`'s default flags.
func controllerFlagsFor(healthAddr string) *controllerFlags {
	return &controllerFlags{
		namespace: "argocd", argocdNamespace: "argocd", watchNamespaces: []string{"argocd"},
		interval: 200 * time.Millisecond, healthTimeout: argocd.DefaultGateTimeout,
		leaderElect: true, stateConfigMap: kubestate.DefaultName, healthAddr: healthAddr,
		limits:      passFlags{grace: pass.DefaultShutdownGrace, timeout: pass.DefaultTimeout},
		owedBackoff: controller.OwedBackoff.Duration,
	}
}

// The time limits run has reach the controller: one definition of the flags for both.
func TestController_TimeLimitFlagsReachTheReplica(t *testing.T) {
	fl := pflag.NewFlagSet("controller", pflag.ContinueOnError)
	g := &globals{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	f := &controllerFlags{}
	g.register(fl)
	f.register(fl)
	if err := fl.Parse([]string{"--namespace", "kropipe", "--data-dir", t.TempDir(), "--shutdown-grace", "7s", "--pass-timeout", "3m", "--registry-timeout", "9s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(g, kubefake.NewClientset(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ShutdownGrace != 7*time.Second || cfg.PassTimeout != 3*time.Minute || cfg.RegistryTimeout != 9*time.Second {
		t.Errorf("grace %s, pass timeout %s, registry timeout %s; want 7s, 3m, 9s", cfg.ShutdownGrace, cfg.PassTimeout, cfg.RegistryTimeout)
	}
	// Defaults as run's.
	f, fl = &controllerFlags{}, pflag.NewFlagSet("controller", pflag.ContinueOnError)
	g.register(fl)
	f.register(fl)
	if err := fl.Parse([]string{"--namespace", "kropipe", "--data-dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = f.config(g, kubefake.NewClientset(), nil, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if cfg.ShutdownGrace != pass.DefaultShutdownGrace || cfg.PassTimeout != pass.DefaultTimeout || cfg.RegistryTimeout != warehouse.DefaultRequestTimeout {
		t.Errorf("defaults: grace %s, pass timeout %s, registry timeout %s", cfg.ShutdownGrace, cfg.PassTimeout, cfg.RegistryTimeout)
	}
}

// --sigstore-tuf-url reaches the replica: the public-good TUF repository unless given, ""
// for the root built into the binary.
func TestController_SigstoreTUFFlagReachesTheReplica(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "default", want: "https://tuf-repo-cdn.sigstore.dev"},
		{name: "own mirror", args: []string{"--sigstore-tuf-url", "https://tuf.example.com"}, want: "https://tuf.example.com"},
		{name: "off", args: []string{"--sigstore-tuf-url", ""}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fl := pflag.NewFlagSet("controller", pflag.ContinueOnError)
			g := &globals{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
			f := &controllerFlags{}
			g.register(fl)
			f.register(fl)
			if err := fl.Parse(append([]string{"--namespace", "kropipe", "--data-dir", t.TempDir()}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.config(g, kubefake.NewClientset(), nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.SigstoreTUF != tc.want {
				t.Errorf("SigstoreTUF = %q; want %q", cfg.SigstoreTUF, tc.want)
			}
		})
	}
}

// --owed-backoff sets when an automatic rollback Git refused is tried again: 10 s unless given,
// and never zero (a refused rollback would be retried in a busy loop).
func TestController_OwedBackoffFlagReachesTheReplica(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    time.Duration
		wantErr string
	}{
		{name: "default", want: 10 * time.Second},
		{name: "given", args: []string{"--owed-backoff", "2s"}, want: 2 * time.Second},
		{name: "zero", args: []string{"--owed-backoff", "0"}, wantErr: "--owed-backoff must be positive"},
		{name: "negative", args: []string{"--owed-backoff=-1s"}, wantErr: "--owed-backoff must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl := pflag.NewFlagSet("controller", pflag.ContinueOnError)
			g := &globals{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
			f := &controllerFlags{}
			g.register(fl)
			f.register(fl)
			if err := fl.Parse(append([]string{"--namespace", "kropipe", "--data-dir", t.TempDir()}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.config(g, kubefake.NewClientset(), nil, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OwedBackoff != tt.want {
				t.Errorf("owed back-off %s, want %s", cfg.OwedBackoff, tt.want)
			}
		})
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
		{name: "zero pass timeout", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.limits.timeout = 0 }, wantErr: "--pass-timeout must be positive"},
		{name: "negative shutdown grace", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.limits.grace = -time.Second }, wantErr: "--shutdown-grace not negative"},
		{name: "peer listener without a credential", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.shards, f.peerAddr = 4, ":0" }, wantErr: "--peer-secret"},
		{name: "zero owed back-off", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.owedBackoff = 0 }, wantErr: "--owed-backoff must be positive"},
		{name: "peer Secret without a peer listener", addr: "127.0.0.1:0", change: func(f *controllerFlags) { f.shards, f.peerSecret = 4, "kropipe-promoter-peer" }, wantErr: "--peer-addr"},
		{name: "signature policy that does not parse", addr: "127.0.0.1:0", change: func(f *controllerFlags) {
			f.signaturePolicies = filepath.Join("testdata", "signature-policies-bad.yaml")
		}, wantErr: `--signature-policies: testdata/signature-policies-bad.yaml:4: signature policy "release": cosign.issuer: is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := controllerFlagsFor("")
			tt.change(f)
			g := &globals{addr: tt.addr, dataDir: t.TempDir(), logLevel: "error", stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
			_, err := f.config(g, kubefake.NewClientset(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	for _, flag := range []string{"--kubeconfig", "--namespace", "--watch-namespaces", "--data-dir", "--addr", "--pull-secrets", "--interval", "--leader-elect", "--state-configmap", "--health-addr", "--insecure-registry", "--shutdown-grace", "--pass-timeout", "--registry-timeout", "--peer-addr", "--peer-secret", "--owed-backoff", "--signature-policies"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("controller --help lacks %s", flag)
		}
	}
}
