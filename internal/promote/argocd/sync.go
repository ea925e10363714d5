package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Argo CD's annotation asking for a refresh; "hard" also drops the repo-server's
// manifest cache, so the pushed commit is rendered afresh.
const RefreshAnnotation = "argocd.argoproj.io/refresh"

// ErrAppNotFound is wrapped when the stage's Application does not exist (any more).
var ErrAppNotFound = errors.New("application not found")

// Syncer asks Argo CD to sync one Application to one commit, by setting the
// Application's operation field, as `argocd app sync` does.
type Syncer struct {
	client dynamic.Interface
	user   string
}

// NewSyncer returns a Syncer patching Applications through client.
func NewSyncer(client dynamic.Interface) *Syncer {
	return &Syncer{client: client, user: "kropipe"}
}

// Sync patches exactly one Application — app — with a hard refresh and a sync
// operation to revision: sync options copied from its sync policy, prune as its
// automated policy says, initiated by kropipe, reason in the operation's info
// (the commit subject). When an operation is already running it patches nothing
// and returns an error wrapping stage.ErrPending: the next pass tries again.
// For a multi-source Application use SyncSource.
func (s *Syncer) Sync(ctx context.Context, app AppRef, revision, reason string) error {
	return s.SyncSource(ctx, app, -1, revision, reason)
}

// SyncSource is Sync for the source at index of a multi-source Application
// (-1: the single spec.source); the other sources sync to their targetRevision.
func (s *Syncer) SyncSource(ctx context.Context, app AppRef, index int, revision, reason string) error {
	u, err := s.get(ctx, app)
	if err != nil {
		return err
	}
	return s.sync(ctx, u, index, revision, reason)
}

func (s *Syncer) get(ctx context.Context, app AppRef) (*unstructured.Unstructured, error) {
	u, err := s.client.Resource(ApplicationGVR).Namespace(app.Namespace).Get(ctx, app.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: Application %s was deleted; recreate it, or remove its kropipe.io annotations to drop the stage", ErrAppNotFound, app)
	}
	if err != nil {
		return nil, fmt.Errorf("reading Application %s: %w", app, err)
	}
	return u, nil
}

// sync patches u, which was just read: its resourceVersion goes into the patch,
// so an operation someone started since is never overwritten (the API server
// answers Conflict and the next pass looks again).
func (s *Syncer) sync(ctx context.Context, u *unstructured.Unstructured, index int, revision, reason string) error {
	ref := refOf(u)
	if running, what := operationRunning(u.Object); running {
		return pending("waiting: %s has an operation running (%s); kropipe syncs it to %s when it ends", ref.Name, what, short(revision))
	}
	syncOp := map[string]any{}
	if opts, ok, _ := unstructured.NestedStringSlice(u.Object, "spec", "syncPolicy", "syncOptions"); ok && len(opts) > 0 {
		syncOp["syncOptions"] = opts
	}
	if prune, ok, _ := unstructured.NestedBool(u.Object, "spec", "syncPolicy", "automated", "prune"); ok {
		syncOp["prune"] = prune
	}
	if index < 0 {
		syncOp["revision"] = revision
	} else {
		sources, _, _ := unstructured.NestedSlice(u.Object, "spec", "sources")
		if index >= len(sources) {
			return fmt.Errorf("Application %s has %d sources, not the source %d its stage writes to", ref, len(sources), index)
		}
		revs := make([]any, len(sources))
		for i, raw := range sources {
			src, _ := raw.(map[string]any)
			revs[i] = str(src, "targetRevision")
			if i == index {
				revs[i] = revision
			}
		}
		syncOp["revisions"] = revs
	}
	if reason == "" {
		reason = "kropipe promotion " + short(revision)
	}
	patch := map[string]any{
		"metadata": map[string]any{
			"resourceVersion": u.GetResourceVersion(),
			"annotations":     map[string]any{RefreshAnnotation: "hard"},
		},
		"operation": map[string]any{
			"sync":        syncOp,
			"initiatedBy": map[string]any{"username": s.user},
			"info":        []any{map[string]any{"name": "Reason", "value": reason}},
		},
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.DuringSync)
	_, err = s.client.Resource(ApplicationGVR).Namespace(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, data, metav1.PatchOptions{FieldManager: s.user})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: Application %s was deleted before its sync to %s; recreate it, or remove its kropipe.io annotations to drop the stage", ErrAppNotFound, ref, short(revision))
	case apierrors.IsConflict(err):
		return pending("waiting: %s changed while kropipe asked it to sync to %s; trying again next pass", ref.Name, short(revision))
	case err != nil:
		return fmt.Errorf("asking Application %s to sync to %s: %w", ref, short(revision), err)
	}
	return nil
}

// operationRunning reports whether Argo CD is working on an operation of the
// Application: one requested (operation set) or one in progress.
func operationRunning(obj map[string]any) (bool, string) {
	if op, ok, _ := unstructured.NestedMap(obj, "operation"); ok && op != nil {
		who := str(op, "initiatedBy", "username")
		if who == "" {
			who = "someone"
		}
		return true, "requested by " + who
	}
	switch phase := str(obj, "status", "operationState", "phase"); phase {
	case "Running", "Terminating":
		return true, phase
	}
	return false, ""
}

// pendingError is a waiting reason that errors.Is stage.ErrPending.
type pendingError struct{ msg string }

func (e *pendingError) Error() string        { return e.msg }
func (e *pendingError) Is(target error) bool { return target == stage.ErrPending }

func pending(format string, args ...any) error {
	return &pendingError{msg: fmt.Sprintf(format, args...)}
}
