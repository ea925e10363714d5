package argocd

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Watcher keeps the stages derived from the Applications and ApplicationSets of
// some namespaces up to date, with one informer pair per namespace.
type Watcher struct {
	client     dynamic.Interface
	namespaces []string
	debounce   time.Duration
	resync     time.Duration
	log        *slog.Logger

	changes chan struct{}
	dirty   chan struct{}
	updates chan struct{} // an Application was updated (status included); see Updated

	mu      sync.Mutex
	sigs    SignaturePolicies
	updated map[AppRef]bool
	cfg     Config
	synced  bool
	apps    []cache.GenericLister
	appsets []cache.GenericLister
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// WithDebounce sets how long the watcher waits after a change for more before it
// derives the stages again (default 2s): an ApplicationSet rollout updates many
// Applications at once, and their status changes all the time.
func WithDebounce(d time.Duration) WatcherOption { return func(w *Watcher) { w.debounce = d } }

// WithResync sets the informers' resync period (default 10m).
func WithResync(d time.Duration) WatcherOption { return func(w *Watcher) { w.resync = d } }

// WithWatcherLogger sets the logger (default slog.Default()).
func WithWatcherLogger(l *slog.Logger) WatcherOption { return func(w *Watcher) { w.log = l } }

// NewWatcher watches Applications and ApplicationSets in namespaces (none: all
// namespaces). Nothing happens before Run.
func NewWatcher(client dynamic.Interface, namespaces []string, opts ...WatcherOption) *Watcher {
	w := &Watcher{
		client: client, namespaces: namespaces,
		debounce: 2 * time.Second, resync: 10 * time.Minute, log: slog.Default(),
		changes: make(chan struct{}, 1), dirty: make(chan struct{}, 1), updates: make(chan struct{}, 1),
		updated: map[AppRef]bool{},
		cfg:     Config{Bindings: map[string]Binding{}},
	}
	if len(w.namespaces) == 0 {
		w.namespaces = []string{metav1.NamespaceAll}
	}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Changes delivers a value when the derived stages, problems or bindings changed,
// and once after the informers first synced. It is buffered by one: a reader that
// was busy sees one value for many changes and should call Current.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Updated delivers a value when Applications were updated since the last TakeUpdated,
// status changes included (which leave the stages as they are, so Changes stays quiet): a
// stage waiting for its Application to sync and become healthy can be verified at once
// instead of at the next scheduled pass. Buffered by one, like Changes.
func (w *Watcher) Updated() <-chan struct{} { return w.updates }

// TakeUpdated returns the Applications updated since the last call.
func (w *Watcher) TakeUpdated() []AppRef {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]AppRef, 0, len(w.updated))
	for r := range w.updated {
		out = append(out, r)
	}
	clear(w.updated)
	return out
}

func (w *Watcher) appUpdated(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	w.mu.Lock()
	w.updated[refOf(u)] = true
	w.mu.Unlock()
	select {
	case w.updates <- struct{}{}:
	default:
	}
}

// Current returns the runnable stages and the problems of the others.
func (w *Watcher) Current() ([]stage.Spec, []Problem) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]stage.Spec(nil), w.cfg.Specs...), append([]Problem(nil), w.cfg.Problems...)
}

// Config returns everything derived last: stages, problems, warnings, bindings.
func (w *Watcher) Config() Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.cfg
	c.Specs = append([]stage.Spec(nil), c.Specs...)
	c.Problems = append([]Problem(nil), c.Problems...)
	c.Warnings = append([]Problem(nil), c.Warnings...)
	c.Bindings = make(map[string]Binding, len(w.cfg.Bindings))
	for k, v := range w.cfg.Bindings {
		c.Bindings[k] = v
	}
	return c
}

// App returns the Application behind stage.
func (w *Watcher) App(stage string) (Binding, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, ok := w.cfg.Bindings[stage]
	return b, ok
}

// HasSynced reports whether the informers have listed everything once; before
// that Current is empty, and a readiness probe should say so.
func (w *Watcher) HasSynced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.synced
}

// Run starts the informers and derives the stages until ctx is done. It returns
// once every informer goroutine has stopped.
func (w *Watcher) Run(ctx context.Context) error {
	var factories []dynamicinformer.DynamicSharedInformerFactory
	var syncs []cache.InformerSynced
	var apps, sets []cache.GenericLister
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.markDirty() },
		UpdateFunc: func(old, cur any) { w.markDirty() },
		DeleteFunc: func(any) { w.markDirty() },
	}
	appHandler := handler
	appHandler.UpdateFunc = func(old, cur any) {
		w.markDirty()
		w.appUpdated(cur)
	}
	for _, ns := range w.namespaces {
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.client, w.resync, ns, nil)
		ai, si := f.ForResource(ApplicationGVR), f.ForResource(ApplicationSetGVR)
		if _, err := ai.Informer().AddEventHandler(appHandler); err != nil {
			return err
		}
		if _, err := si.Informer().AddEventHandler(handler); err != nil {
			return err
		}
		apps, sets = append(apps, ai.Lister()), append(sets, si.Lister())
		syncs = append(syncs, ai.Informer().HasSynced, si.Informer().HasSynced)
		factories = append(factories, f)
	}
	defer func() {
		for _, f := range factories {
			f.Shutdown() // waits for the informers' goroutines
		}
	}()
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	w.mu.Lock()
	w.apps, w.appsets = apps, sets
	w.mu.Unlock()
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return ctx.Err()
	}
	w.rederive(true)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.dirty:
			timer.Reset(w.debounce)
		case <-timer.C:
			w.rederive(false)
		}
	}
}

// SetSignaturePolicies gives the policies kropipe.io/verify-signature may name (the
// controller reads their Secrets again from time to time); the stages are derived again
// when they changed.
func (w *Watcher) SetSignaturePolicies(p SignaturePolicies) {
	w.mu.Lock()
	same := reflect.DeepEqual(w.sigs, p)
	w.sigs = p
	w.mu.Unlock()
	if !same {
		w.markDirty()
	}
}

func (w *Watcher) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// rederive lists the informers' caches, derives the stages and tells Changes
// when anything differs from last time.
func (w *Watcher) rederive(first bool) {
	w.mu.Lock()
	appL, setL := w.apps, w.appsets
	w.mu.Unlock()
	apps, sets := objects(appL), objects(setL)
	w.mu.Lock()
	sigs := w.sigs
	w.mu.Unlock()
	cfg := Derive(apps, sets, WithSignaturePolicies(sigs))
	w.mu.Lock()
	changed := first || !reflect.DeepEqual(cfg, w.cfg)
	if changed {
		w.cfg = cfg
	}
	w.synced = true
	w.mu.Unlock()
	if !changed {
		return
	}
	w.log.Info("stages derived from Argo CD annotations", "applications", len(apps), "applicationSets", len(sets), "stages", len(cfg.Specs), "problems", len(cfg.Problems))
	for _, p := range cfg.Problems {
		w.log.Warn("stage blocked by its configuration", "stage", p.Stage, "app", p.App, "annotation", p.Field, "problem", p.Message)
	}
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

// objects lists every object of the listers' caches. Listers hand out shared
// objects; Derive only reads them.
func objects(listers []cache.GenericLister) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, l := range listers {
		objs, err := l.List(labels.Everything())
		if err != nil {
			continue // a cache lister does not fail
		}
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				out = append(out, u)
			}
		}
	}
	return out
}

// Application returns the informer's copy of an Application (never modify it), or
// false when it is not known (yet).
func (w *Watcher) Application(ref AppRef) (*unstructured.Unstructured, bool) {
	w.mu.Lock()
	listers := w.apps
	w.mu.Unlock()
	for _, l := range listers {
		obj, err := l.ByNamespace(ref.Namespace).Get(ref.Name)
		if err != nil {
			continue
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			return u, true
		}
	}
	return nil, false
}
