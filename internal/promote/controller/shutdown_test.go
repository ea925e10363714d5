package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/leader"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// heldRegistry is a registry holding team/frontend 1.2.1 and 1.2.2 behind a proxy that holds
// every tag list of team/frontend until release is called (or the request ends); held gets a
// value for each request held.
type heldRegistry struct {
	host    string
	held    chan struct{}
	release func()
}

func newHeldRegistry(t *testing.T) heldRegistry {
	t.Helper()
	upstream := registrytest.Start(t)
	registrytest.Push(t, upstream, "team/frontend", "1.2.1", "1.2.2")
	target, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	gate := make(chan struct{})
	var once sync.Once
	r := heldRegistry{held: make(chan struct{}, 16), release: func() { once.Do(func() { close(gate) }) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/team/frontend/tags/list") {
			select {
			case r.held <- struct{}{}:
			default:
			}
			select {
			case <-gate:
			case <-req.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	// Runs before srv.Close: a held request must not keep Close waiting.
	t.Cleanup(r.release)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// waitHeld waits until the pass is inside a held registry request.
func (r heldRegistry) waitHeld(t *testing.T, logs *syncBuffer) {
	t.Helper()
	select {
	case <-r.held:
	case <-time.After(30 * time.Second):
		t.Fatalf("no pass asked the registry for tags within 30s\n%s", logs.String())
	}
}

func waitLog(t *testing.T, logs *syncBuffer, msg string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), msg); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs never said %q:\n%s", msg, logs.String())
		}
	}
}

func leaseHolder(t *testing.T, e clusterEnv) string {
	t.Helper()
	l, err := e.kube.CoordinationV1().Leases("argocd").Get(context.Background(), leader.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// A pass running when the stop signal comes finishes (its promotion is pushed) within
// --shutdown-grace; the Lease is released after it.
func TestController_StopSignalLetsTheRunningPassFinish(t *testing.T) {
	reg := newHeldRegistry(t)
	e := newClusterEnvFor(t, reg.host, nil)
	f := configFor("")
	f.ShutdownGrace = time.Minute
	_, logs, stop := e.start(t, f)
	reg.waitHeld(t, logs)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	waitLog(t, logs, "stop signal received; letting the running pass finish")
	reg.release()
	if err := <-stopped; err != nil {
		t.Fatalf("controller returned %v\n%s", err, logs.String())
	}
	subject := gitLog(t, e.bare)
	if !strings.HasPrefix(subject, "Promote image from 1.2.1 to 1.2.2\n") {
		t.Errorf("the pass under way at the stop signal did not push its promotion; git log:\n%s\n%s", subject, logs.String())
	}
	if h := leaseHolder(t, e); h != "" {
		t.Errorf("Lease still held by %s after a clean shutdown", h)
	}
}

// A pass still running when --shutdown-grace is over is cancelled: nothing is pushed, the
// controller stops, and the Lease is released once the pass has returned.
func TestController_ShutdownGraceOverCancelsThePass(t *testing.T) {
	reg := newHeldRegistry(t)
	e := newClusterEnvFor(t, reg.host, nil)
	f := configFor("")
	f.ShutdownGrace = 200 * time.Millisecond
	_, logs, stop := e.start(t, f)
	reg.waitHeld(t, logs)
	if err := stop(); err != nil {
		t.Fatalf("controller returned %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "shutdown grace over; cancelling the running pass") {
		t.Errorf("logs do not say the grace ran out:\n%s", logs.String())
	}
	if subject := gitLog(t, e.bare); subject != "Seed repository\n" {
		t.Errorf("a cancelled pass pushed; git log:\n%s", subject)
	}
	if h := leaseHolder(t, e); h != "" {
		t.Errorf("Lease still held by %s after shutdown", h)
	}
}

// --pass-timeout and --registry-timeout bound a pass against a registry that never answers:
// the stage fails naming the limit, and later passes still run.
func TestController_TimeLimitsBoundAHungRegistry(t *testing.T) {
	tests := []struct {
		name             string
		pass, registry   time.Duration
		wantLog, wantErr string
	}{
		{name: "registry timeout", pass: time.Hour, registry: 300 * time.Millisecond, wantErr: "did not answer within 300ms (request timeout)"},
		{name: "pass timeout", pass: 500 * time.Millisecond, registry: time.Hour, wantLog: "the pass did not finish within --pass-timeout (500ms)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newHeldRegistry(t)
			e := newClusterEnvFor(t, reg.host, nil)
			f := configFor("")
			f.PassTimeout, f.RegistryTimeout = tt.pass, tt.registry
			addr, logs, _ := e.start(t, f)
			c := api.NewClient(addr, "", nil)
			if tt.wantErr != "" {
				waitStage(t, c, logs, "failed naming the registry timeout", func(st stage.Status) bool {
					return st.Failed() && strings.Contains(st.Error, tt.wantErr)
				})
			}
			if tt.wantLog != "" {
				waitLog(t, logs, tt.wantLog)
			}
			// A later pass asks again: the loop is not stuck behind the hung request.
			for len(reg.held) > 0 {
				<-reg.held
			}
			reg.waitHeld(t, logs)
		})
	}
}

func gitLog(t *testing.T, bare string) string {
	t.Helper()
	out, err := gitserver.GitOutput(context.Background(), bare, "log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	return out
}
