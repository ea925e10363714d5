package argocd

import (
	"context"
	"io"
	"log/slog"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeDynamic returns a fake dynamic client holding objs and a channel that
// receives one value per watch the informers open, so a test changes objects
// only once the watches would see it.
func fakeDynamic(objs ...runtime.Object) (*dynamicfake.FakeDynamicClient, chan string) {
	c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), ListKinds, objs...)
	watches := make(chan string, 16)
	c.PrependWatchReactor("*", func(a clienttesting.Action) (bool, watch.Interface, error) {
		watches <- a.GetResource().Resource + "/" + a.GetNamespace()
		return false, nil, nil
	})
	return c, watches
}

// within fails the test when nothing arrives on ch for a long while; it guards
// against hangs, it does not time anything.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

func TestWatcher_FollowsAnnotationChangesAndStopsWithContext(t *testing.T) {
	set := appset("services", map[string]string{"kropipe.io/constraint": "^1.2"})
	fe := ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "services")
	client, watches := fakeDynamic(set, fe)
	w := NewWatcher(client, []string{"argocd"}, WithDebounce(10*time.Millisecond), WithWatcherLogger(quiet()))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = w.Run(ctx)
	}()
	within(t, w.Changes(), "change after the initial sync")
	within(t, watches, "watch")
	within(t, watches, "watch")
	if !w.HasSynced() {
		t.Fatal("not synced after the first change")
	}
	specs, problems := w.Current()
	if len(specs) != 1 || specs[0].Constraint != "^1.2" || len(problems) != 0 {
		t.Fatalf("specs %+v problems %v", specs, problems)
	}
	if b, ok := w.App("develop-frontend"); !ok || b.App.String() != "argocd/develop-frontend" {
		t.Fatalf("binding %+v %v", b, ok)
	}

	// A typo on a second Application: a problem, develop-frontend unaffected.
	be := app("develop-backend", "develop/backend", map[string]string{AnnImage: img("backend"), "kropipe.io/sok": "10m"})
	if _, err := client.Resource(ApplicationGVR).Namespace("argocd").Create(ctx, be, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, w.Changes(), "change after a new Application")
	specs, problems = w.Current()
	if len(specs) != 1 || len(problems) != 1 || problems[0].Field != "kropipe.io/sok" {
		t.Fatalf("specs %+v problems %v", specs, problems)
	}

	// The ApplicationSet's annotation changes every Application it owns.
	set.SetAnnotations(map[string]string{"kropipe.io/constraint": "^1.3"})
	if _, err := client.Resource(ApplicationSetGVR).Namespace("argocd").Update(ctx, set, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, w.Changes(), "change after the ApplicationSet's annotation changed")
	if specs, _ := w.Current(); len(specs) != 1 || specs[0].Constraint != "^1.3" {
		t.Fatalf("specs %+v", specs)
	}

	// A status-only update derives the same stages: no change is announced, but the
	// Application is reported updated (a stage waiting for it can be verified at once).
	w.TakeUpdated()
	_ = setStatus(fe, map[string]any{"health": map[string]any{"status": "Healthy"}})
	if _, err := client.Resource(ApplicationGVR).Namespace("argocd").Update(ctx, fe, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, w.Updated(), "update after a status change")
	if got := w.TakeUpdated(); len(got) != 1 || got[0].String() != "argocd/develop-frontend" {
		t.Fatalf("updated %v, want argocd/develop-frontend", got)
	}
	if err := client.Resource(ApplicationGVR).Namespace("argocd").Delete(ctx, "develop-backend", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, w.Changes(), "change after the deletion")
	if _, problems := w.Current(); len(problems) != 0 {
		t.Fatalf("problem of a deleted Application kept: %v", problems)
	}
	select {
	case <-w.Changes():
		t.Fatal("a status-only update announced a change")
	default:
	}

	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("Run: %v", runErr)
	}
}

func TestWatcher_RunReturnsWhenStoppedBeforeSync(t *testing.T) {
	client, _ := fakeDynamic()
	client.PrependReactor("list", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, context.DeadlineExceeded // the API server is away
	})
	w := NewWatcher(client, []string{"argocd", "team-a"}, WithWatcherLogger(quiet()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	cancel()
	if err := within(t, done, "return from Run"); err == nil {
		t.Fatal("Run stopped before its caches synced must say so")
	}
	if w.HasSynced() {
		t.Fatal("synced without listing")
	}
}

// setStatus replaces the Application's status.
func setStatus(u interface{ UnstructuredContent() map[string]any }, status map[string]any) error {
	u.UnstructuredContent()["status"] = status
	return nil
}

func TestWatcher_LeavesNoGoroutinesBehind(t *testing.T) {
	client, watches := fakeDynamic(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}))
	before := goruntime.NumGoroutine()
	w := NewWatcher(client, []string{"argocd", "team-a"}, WithDebounce(time.Millisecond), WithWatcherLogger(quiet()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	within(t, w.Changes(), "initial change")
	for range 4 {
		within(t, watches, "watch")
	}
	cancel()
	if err := within(t, done, "return from Run"); err != nil {
		t.Fatal(err)
	}
	// Run returned after the factories' Shutdown; what is left are goroutines
	// on their way out, which the deadline below only waits for.
	deadline := time.Now().Add(10 * time.Second)
	for goruntime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := goruntime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Run returned, %d before", n, before)
	}
}
