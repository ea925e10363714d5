package kubestate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

const ns = "argocd"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newStore(c *fake.Clientset, opts ...kubestate.Option) *kubestate.Store {
	return kubestate.New(c, ns, append([]kubestate.Option{kubestate.WithLogger(quiet), kubestate.WithBackoff(wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 10, Cap: 4 * time.Millisecond})}, opts...)...)
}

func sampleState() stage.State {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	return stage.State{
		Approvals: map[string][]stage.Approval{"prod-frontend": {{Value: "1.2.2", ApprovedAt: at}}},
		Verifications: map[string][]stage.Verification{"develop-frontend": {{
			Freight:    freight.Freight{Image: "registry.example.com/team/frontend", Tag: "1.2.2"},
			FreightID:  "f1",
			Value:      "1.2.2",
			Commit:     "abc123",
			VerifiedAt: at,
		}}},
		Paused: map[string]time.Time{"staging-backend": at},
	}
}

func configMap(t *testing.T, c *fake.Clientset, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ConfigMap %s: %v", name, err)
	}
	return cm
}

func TestLoad_MissingConfigMapIsEmptyState(t *testing.T) {
	st, err := newStore(fake.NewClientset()).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Approvals)+len(st.Verifications)+len(st.Paused) != 0 {
		t.Errorf("Load on a missing ConfigMap = %+v, want an empty state", st)
	}
}

func TestSave_CreatesThenUpdatesOneConfigMap(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	s := newStore(c, kubestate.WithName("my-state"))

	if err := s.Save(ctx, stage.State{Paused: map[string]time.Time{"a": time.Unix(1, 0).UTC()}}); err != nil {
		t.Fatalf("first Save: %v", err)
	}
	want := sampleState()
	if err := s.Save(ctx, want); err != nil {
		t.Fatalf("second Save: %v", err)
	}
	cm := configMap(t, c, "my-state")
	if cm.Labels["app.kubernetes.io/managed-by"] != "kropipe-promoter" {
		t.Errorf("labels = %v, want managed-by kropipe-promoter", cm.Labels)
	}
	if !strings.Contains(cm.Data[kubestate.DataKey], `"prod-frontend"`) {
		t.Errorf("data[%s] = %s, want the saved state as JSON", kubestate.DataKey, cm.Data[kubestate.DataKey])
	}

	// A new store (a restarted promoter) reads what the old one wrote.
	got, err := newStore(c, kubestate.WithName("my-state")).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertState(t, got, want)
}

func TestSave_KeepsKeysItDoesNotOwn(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: kubestate.DefaultName, Namespace: ns},
		Data:       map[string]string{"note": "left by an admin"},
	})
	if err := newStore(c).Save(ctx, sampleState()); err != nil {
		t.Fatal(err)
	}
	if got := configMap(t, c, kubestate.DefaultName).Data["note"]; got != "left by an admin" {
		t.Errorf("data[note] = %q after Save, want it kept", got)
	}
}

// A writer that conflicts on every save (a second promoter on the same ConfigMap) makes Save
// fail after ConflictRetry's tries, saying so, instead of spinning for ever.
func TestSave_EndlessConflictsGiveUp(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	s := newStore(c)
	if err := s.Save(ctx, stage.State{}); err != nil {
		t.Fatal(err)
	}
	var updates atomic.Int32
	c.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		updates.Add(1)
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, kubestate.DefaultName, errors.New("the object has been modified"))
	})
	err := s.Save(ctx, sampleState())
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "second promoter") {
		t.Fatalf("Save = %v, want the conflict, naming the likely cause", err)
	}
	if n, want := updates.Load(), int32(kubestate.ConflictRetry.Steps+1); n != want {
		t.Errorf("%d updates, want %d (the first and ConflictRetry.Steps retries)", n, want)
	}
}

func TestSave_ConflictRereadsAndWrites(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	s := newStore(c)
	if err := s.Save(ctx, stage.State{}); err != nil {
		t.Fatal(err)
	}
	// The fake tracker does not compare resourceVersions, so play the API server: the first
	// update loses a race to another writer.
	var updates atomic.Int32
	c.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if updates.Add(1) == 1 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, kubestate.DefaultName, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	want := sampleState()
	if err := s.Save(ctx, want); err != nil {
		t.Fatalf("Save after a conflict: %v", err)
	}
	if n := updates.Load(); n != 2 {
		t.Errorf("%d updates, want 2 (one conflict, one retry)", n)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertState(t, got, want)
}

func TestSave_RetriesWhileAPIServerIsUnavailable(t *testing.T) {
	tests := []struct {
		name string
		verb string
		err  error
	}{
		{name: "get refused", verb: "get", err: errors.New("dial tcp 10.96.0.1:443: connect: connection refused")},
		{name: "update 503", verb: "update", err: apierrors.NewServiceUnavailable("apiserver is shutting down")},
		{name: "create timeout", verb: "create", err: apierrors.NewServerTimeout(schema.GroupResource{Resource: "configmaps"}, "create", 1)},
		{name: "update 429", verb: "update", err: apierrors.NewTooManyRequests("slow down", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := fake.NewClientset()
			s := newStore(c)
			if tt.verb == "update" {
				if err := s.Save(ctx, stage.State{}); err != nil {
					t.Fatal(err)
				}
			}
			var failures atomic.Int32
			c.PrependReactor(tt.verb, "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				if failures.Add(1) <= 5 {
					return true, nil, tt.err
				}
				return false, nil, nil
			})
			want := sampleState()
			if err := s.Save(ctx, want); err != nil {
				t.Fatalf("Save through an outage of 5 failed %ss: %v", tt.verb, err)
			}
			if n := failures.Load(); n != 6 {
				t.Errorf("%s called %d times, want 6 (5 failures, then success)", tt.verb, n)
			}
			got, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			assertState(t, got, want)
		})
	}
}

func TestSave_GivesUpWhenContextEndsAndSaysWhere(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("*", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := newStore(c).Save(ctx, sampleState())
	if err == nil {
		t.Fatal("Save against a dead API server succeeded")
	}
	for _, want := range []string{"ConfigMap argocd/" + kubestate.DefaultName, "etcd leader changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStore_FailsAtOnce(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(c *fake.Clientset)
		op      func(s *kubestate.Store) error
		wantErr string
	}{
		{
			name: "forbidden says which RBAC is missing",
			setup: func(c *fake.Clientset) {
				c.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, kubestate.DefaultName, errors.New("RBAC"))
				})
			},
			op:      func(s *kubestate.Store) error { return s.Save(context.Background(), sampleState()) },
			wantErr: "give the promoter's ServiceAccount get, create and update",
		},
		{
			name: "corrupt state names the key",
			setup: func(c *fake.Clientset) {
				_ = c.Tracker().Add(&corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: kubestate.DefaultName, Namespace: ns},
					Data:       map[string]string{kubestate.DataKey: "{not json"},
				})
			},
			op: func(s *kubestate.Store) error {
				_, err := s.Load(context.Background())
				return err
			},
			wantErr: "key state.json is not the promoter's state",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			tt.setup(c)
			// No deadline: failing at once is the point; a retry would hang the test.
			err := tt.op(newStore(c))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func assertState(t *testing.T, got, want stage.State) {
	t.Helper()
	if len(got.Approvals["prod-frontend"]) != 1 || got.Approvals["prod-frontend"][0].Value != want.Approvals["prod-frontend"][0].Value {
		t.Errorf("approvals = %+v, want %+v", got.Approvals, want.Approvals)
	}
	v := got.Verifications["develop-frontend"]
	if len(v) != 1 || v[0].Commit != "abc123" || v[0].Freight.Tag != "1.2.2" || !v[0].VerifiedAt.Equal(want.Verifications["develop-frontend"][0].VerifiedAt) {
		t.Errorf("verifications = %+v, want %+v", got.Verifications, want.Verifications)
	}
	if p, ok := got.Paused["staging-backend"]; !ok || !p.Equal(want.Paused["staging-backend"]) {
		t.Errorf("paused = %v, want %v", got.Paused, want.Paused)
	}
}

// bigState is stages × perStage verifications of realistic size (about 350 bytes each).
func bigState(stages, perStage int) stage.State {
	st := stage.State{
		Verifications: map[string][]stage.Verification{},
		Approvals:     map[string][]stage.Approval{"prod-service-000": {{Value: "1.2.3", ApprovedAt: time.Unix(1, 0).UTC()}}},
		Paused:        map[string]time.Time{"staging-service-001": time.Unix(2, 0).UTC()},
	}
	for i := range stages {
		name := fmt.Sprintf("staging-service-%03d", i)
		for j := range perStage {
			f := freight.Freight{Image: fmt.Sprintf("registry.example.com/team/service-%03d", i), Tag: fmt.Sprintf("1.2.%d", j),
				Digest: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", DiscoveredAt: time.Unix(int64(j), 0).UTC()}
			st.Verifications[name] = append(st.Verifications[name], stage.Verification{
				Freight: f, FreightID: f.ID(), Value: f.Tag, Commit: "0123456789abcdef0123456789abcdef01234567", VerifiedAt: time.Unix(int64(j), 0).UTC(),
			})
		}
	}
	return st
}

func TestSave_StateBeyondAConfigMapDropsOldestVerificationsFirst(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	// 100 stages with the engine's 50 verifications each: about 1.7 MB, beyond 1 MiB.
	want := bigState(100, 50)
	if err := newStore(c).Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	if n := len(configMap(t, c, kubestate.DefaultName).Data[kubestate.DataKey]); n > kubestate.DefaultMaxBytes {
		t.Fatalf("wrote %d bytes, limit %d", n, kubestate.DefaultMaxBytes)
	}
	got, err := newStore(c).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, vs := range want.Verifications {
		g := got.Verifications[name]
		if len(g) == 0 || g[len(g)-1].Value != vs[len(vs)-1].Value {
			t.Fatalf("stage %s lost its newest verification: %d left", name, len(g))
		}
	}
	if len(got.Approvals["prod-service-000"]) != 1 || got.Paused["staging-service-001"].IsZero() {
		t.Errorf("approvals or pauses dropped: %+v %+v", got.Approvals, got.Paused)
	}
	if len(want.Verifications["staging-service-000"]) != 50 {
		t.Error("Save changed the caller's state")
	}
}

func TestSave_RefusesStateThatCannotFitEvenTrimmed(t *testing.T) {
	err := newStore(fake.NewClientset(), kubestate.WithMaxBytes(2000)).Save(context.Background(), bigState(20, 2))
	if err == nil || !strings.Contains(err.Error(), "split the stages") {
		t.Fatalf("error = %v, want advice to split the stages", err)
	}
}

func BenchmarkSave(b *testing.B) {
	for _, size := range []struct{ stages, per int }{{10, 50}, {50, 50}, {200, 50}} {
		b.Run(fmt.Sprintf("%dx%d", size.stages, size.per), func(b *testing.B) {
			ctx := context.Background()
			s := newStore(fake.NewClientset())
			st := bigState(size.stages, size.per)
			for b.Loop() {
				if err := s.Save(ctx, st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// withResourceVersions makes the fake clientset behave like the API server for ConfigMaps:
// every write gets a new resourceVersion, and an update carrying an old one is a conflict.
// (The fake's tracker does neither.)
func withResourceVersions(c *fake.Clientset) {
	var mu sync.Mutex
	rv := 100
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	c.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		cm := a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap).DeepCopy()
		rv++
		cm.ResourceVersion = strconv.Itoa(rv)
		if err := c.Tracker().Create(gvr, cm, cm.Namespace); err != nil {
			return true, nil, err
		}
		return true, cm, nil
	})
	c.PrependReactor("update", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		cm := a.(k8stesting.UpdateAction).GetObject().(*corev1.ConfigMap).DeepCopy()
		cur, err := c.Tracker().Get(gvr, cm.Namespace, cm.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*corev1.ConfigMap).ResourceVersion != cm.ResourceVersion {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, cm.Name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
		rv++
		cm.ResourceVersion = strconv.Itoa(rv)
		if err := c.Tracker().Update(gvr, cm, cm.Namespace); err != nil {
			return true, nil, err
		}
		return true, cm, nil
	})
}

// TestSave_KeepsAnotherWritersChanges is the old leader that has not noticed it lost the
// Lease: both stores read, each changes different stages, both save. Neither loses the other's
// change; a stage both changed ends as the last writer left it.
func TestSave_KeepsAnotherWritersChanges(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	withResourceVersions(c)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	seed := stage.State{Paused: map[string]time.Time{"staging-backend": at, "staging-frontend": at}}
	if err := newStore(c).Save(ctx, seed); err != nil {
		t.Fatal(err)
	}

	oldLeader, newLeader := newStore(c), newStore(c)
	a, err := oldLeader.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newLeader.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The new leader approves prod, resumes staging-backend and records a failed verification.
	b.Approvals = map[string][]stage.Approval{"prod-frontend": {{Value: "1.2.2", ApprovedAt: at}}}
	delete(b.Paused, "staging-backend")
	b.Runs = map[string][]stage.VerificationRun{"develop-backend": {{Value: "2.0.1", Freight: "g", Commit: "c1", Phase: "Failed", Message: "job smoke failed", Log: "500"}}}
	if err := newLeader.Save(ctx, b); err != nil {
		t.Fatal(err)
	}
	// The old leader, from its stale read, records a verification and resumes staging-frontend.
	a.Verifications = map[string][]stage.Verification{"develop-frontend": {{Value: "1.2.2", FreightID: "f", VerifiedAt: at}}}
	delete(a.Paused, "staging-frontend")
	if err := oldLeader.Save(ctx, a); err != nil {
		t.Fatal(err)
	}

	got, err := newStore(c).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Approvals["prod-frontend"]) != 1 {
		t.Errorf("the new leader's approval was lost: %+v", got.Approvals)
	}
	if len(got.Verifications["develop-frontend"]) != 1 {
		t.Errorf("the old leader's verification was lost: %+v", got.Verifications)
	}
	if len(got.Paused) != 0 {
		t.Errorf("paused = %v, want both resumes kept (neither pause resurrected)", got.Paused)
	}
	if r, ok := got.SettledRun("develop-backend", "g", "c1"); !ok || r.Log != "500" {
		t.Errorf("the new leader's failed verification was lost: %+v", got.Runs)
	}
}

func TestSave_RetriesARealConflict(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	withResourceVersions(c)
	s := newStore(c)
	if err := s.Save(ctx, stage.State{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// Another writer slips in between this store's get and its update, once.
	var fired atomic.Bool
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	c.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fired.CompareAndSwap(false, true) {
			cur, err := c.Tracker().Get(gvr, ns, kubestate.DefaultName)
			if err != nil {
				return true, nil, err
			}
			cm := cur.(*corev1.ConfigMap).DeepCopy()
			cm.Data[kubestate.DataKey] = `{"paused":{"other":"1970-01-01T00:00:05Z"}}`
			cm.ResourceVersion = "other-writer"
			if err := c.Tracker().Update(gvr, cm, ns); err != nil {
				return true, nil, err
			}
		}
		return false, nil, nil
	})
	if err := s.Save(ctx, sampleState()); err != nil {
		t.Fatal(err)
	}
	got, err := newStore(c).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertState(t, got, sampleState())
	if _, ok := got.Paused["other"]; !ok {
		t.Errorf("the other writer's pause was lost: %v", got.Paused)
	}
}
