package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Argo CD's Source Hydrator (spec.sourceHydrator, Beta since v3.5) renders an Application's
// dry source once per dry commit and has argocd-commit-server push the result to the
// syncSource's branch, which the Application syncs as plain manifests. kropipe promotes such
// an Application by writing the dry source — the stage's file is under drySource.path on
// drySource.targetRevision — then waits for the hydrated commit of that dry commit and syncs
// the Application to it.

// HydrateAnnotation asks Argo CD's application controller to check the dry source for a new
// revision now, bypassing its revision cache ("normal"; "hard" hydrates even an unchanged
// revision), as `argocd app get --refresh` does. The controller removes it.
const HydrateAnnotation = "argocd.argoproj.io/hydrate"

// Argo CD's phases of status.sourceHydrator.currentOperation.
const (
	HydrationHydrating = "Hydrating"
	HydrationFailed    = "Failed"
	HydrationHydrated  = "Hydrated"
)

// Hydrator is, for an Application rendered by Argo CD's Source Hydrator, where its hydrated
// manifests go: the stage's file is in the dry source, and the gate syncs the Application to
// the hydrated commit of each promotion.
type Hydrator struct {
	// SyncRepoURL is the repository of the hydrated manifests (the dry source's when
	// syncSource.repoURL is not set).
	SyncRepoURL string `json:"syncRepoURL"`
	// SyncBranch is syncSource.targetBranch: where argocd-commit-server pushes the hydrated
	// commits and the Application syncs from.
	SyncBranch string `json:"syncBranch"`
	// SyncPath is syncSource.path, the folder of the hydrated manifest.yaml.
	SyncPath string `json:"syncPath"`
}

// Fields of spec.sourceHydrator a Problem names.
const (
	fieldSourceHydrator = "spec.sourceHydrator"
	fieldDrySource      = fieldSourceHydrator + ".drySource"
	fieldDryRepoURL     = fieldDrySource + ".repoURL"
	fieldSyncBranch     = fieldSourceHydrator + ".syncSource.targetBranch"
	fieldHydrateTo      = fieldSourceHydrator + ".hydrateTo"
)

// sourceHydrator returns the Application's spec.sourceHydrator, false when it has none.
func sourceHydrator(obj map[string]any) (map[string]any, bool) {
	h, ok, _ := unstructured.NestedMap(obj, "spec", "sourceHydrator")
	return h, ok && h != nil
}

// drySource picks the dry source of a hydrator Application as the source holding the stage's
// file. It returns the field to blame and a message when kropipe cannot promote it. An
// ApplicationSet's kropipe.io/source is for its multi-source members: a hydrator member ignores
// it, but one set on the Application itself is a mistake.
func drySource(h map[string]any, ann, own map[string]string) (src map[string]any, hyd *Hydrator, field, msg string) {
	if _, ok := own[AnnSource]; ok {
		return nil, nil, AnnSource, "names a source, but the Application renders through " + fieldSourceHydrator + ": kropipe writes its drySource; remove the annotation"
	}
	dry, _, _ := unstructured.NestedMap(h, "drySource")
	switch {
	case len(dry) == 0:
		return nil, nil, fieldDrySource, "is missing; kropipe needs the Git repository and path of the stage's instance file"
	case str(dry, "repoURL") == "":
		return nil, nil, fieldDryRepoURL, "is empty; kropipe needs the Git repository holding the stage's instance file"
	case strings.HasPrefix(str(dry, "repoURL"), "oci://"):
		return nil, nil, fieldDryRepoURL, fmt.Sprintf("is the OCI artifact %s, not a Git repository; kropipe writes to Git repositories only", str(dry, "repoURL"))
	}
	syncSrc, _, _ := unstructured.NestedMap(h, "syncSource")
	if str(syncSrc, "targetBranch") == "" {
		return nil, nil, fieldSyncBranch, "is empty; Argo CD pushes the hydrated manifests to that branch, and kropipe syncs the Application to the hydrated commit of each promotion there"
	}
	if to, ok, _ := unstructured.NestedMap(h, "hydrateTo"); ok && len(to) > 0 {
		return nil, nil, fieldHydrateTo, fmt.Sprintf("is set: Argo CD pushes the hydrated manifests to %q for another process to move to %q, so kropipe cannot tell which synced commit holds its promotion; remove hydrateTo (kropipe then syncs the hydrated commit of its own promotion), or remove kropipe.io/image and promote otherwise",
			str(to, "targetBranch"), str(syncSrc, "targetBranch"))
	}
	if _, ok := dry["plugin"]; !ok && strings.TrimSpace(ann[AnnFile]) == "" {
		return nil, nil, AnnFile, fmt.Sprintf("is missing, and %s names no plugin: kropipe assumes the kro plugin's %s only for a dry source the kro plugin renders; set %s to the file holding the image (from the repository root), or set %s.plugin.name: kro",
			fieldDrySource, path.Join(str(dry, "path"), stage.DefaultFile), AnnFile, fieldDrySource)
	}
	repo := str(syncSrc, "repoURL")
	if repo == "" {
		repo = str(dry, "repoURL")
	}
	return dry, &Hydrator{SyncRepoURL: repo, SyncBranch: str(syncSrc, "targetBranch"), SyncPath: str(syncSrc, "path")}, "", ""
}

// hydration is what an Application's status.sourceHydrator says.
type hydration struct {
	phase, message        string // currentOperation
	dry, hydrated         string // currentOperation.drySHA, hydratedSHA
	lastDry, lastHydrated string // lastSuccessfulOperation
	compared              string // lastComparedDryRevision
	started, finished     time.Time
}

func readHydration(obj map[string]any) hydration {
	cur := []string{"status", "sourceHydrator", "currentOperation"}
	last := []string{"status", "sourceHydrator", "lastSuccessfulOperation"}
	h := hydration{
		phase:        str(obj, append(cur, "phase")...),
		message:      str(obj, append(cur, "message")...),
		dry:          str(obj, append(cur, "drySHA")...),
		hydrated:     str(obj, append(cur, "hydratedSHA")...),
		lastDry:      str(obj, append(last, "drySHA")...),
		lastHydrated: str(obj, append(last, "hydratedSHA")...),
		compared:     str(obj, "status", "sourceHydrator", "lastComparedDryRevision"),
	}
	h.started, _ = time.Parse(time.RFC3339, str(obj, append(cur, "startedAt")...))
	h.finished, _ = time.Parse(time.RFC3339, str(obj, append(cur, "finishedAt")...))
	return h
}

// failedDry is the dry commit a failed hydration was of, "" when unknown. Argo CD leaves
// currentOperation.drySHA empty when rendering the first Application of the hydration failed (a
// broken instance); lastComparedDryRevision is then the revision it resolved before, when it
// resolved one for that attempt.
func (h hydration) failedDry() string {
	if h.dry != "" {
		return h.dry
	}
	return h.compared
}

// failedAfter reports whether a failed hydration was of the promotion or a dry commit after it:
// its dry commit covers the promotion, or — its dry commit unknown — Argo CD started it after
// since, when the promotion was already on the dry branch it read.
func (h hydration) failedAfter(since time.Time, covers func(dry string) bool) bool {
	if h.phase != HydrationFailed {
		return false
	}
	if h.dry == "" && !since.IsZero() && h.started.After(since) {
		return true
	}
	return covers(h.failedDry())
}

// hydratedState is the gate's reading of where the hydration of a promotion stands.
type hydratedState struct {
	// targets are the hydrated commits that hold the promotion: the Application synced to
	// one of them runs it. Empty while there is none.
	targets []string
	// syncTo is the hydrated commit the gate asks Argo CD to sync.
	syncTo string
	// dry is the dry commit syncTo was hydrated from.
	dry string
	// failed is Argo CD's message when hydrating the promotion (or a commit after it) failed.
	failed string
	// wait says what the gate waits for when there is no target and no failure.
	wait string
	// ask is true when Argo CD is not hydrating: the gate asks it to look at the dry branch.
	ask bool
}

// decideHydration reads the Application's hydration of the promotion commit promo, which the
// gate saw pushed at since: covers reports whether a dry commit is promo or a descendant of it
// (in the stage's clone).
func decideHydration(h hydration, app, promo string, since time.Time, covers func(dry string) bool) hydratedState {
	var s hydratedState
	if h.lastHydrated != "" && covers(h.lastDry) {
		s.targets = append(s.targets, h.lastHydrated)
		s.syncTo, s.dry = h.lastHydrated, h.lastDry
	}
	if h.phase == HydrationHydrated && h.hydrated != "" && covers(h.dry) {
		// The current operation is at least as new as the last successful one.
		s.syncTo, s.dry = h.hydrated, h.dry
		if !contains(s.targets, h.hydrated) {
			s.targets = append(s.targets, h.hydrated)
		}
	}
	if len(s.targets) > 0 {
		return s
	}
	switch {
	case h.failedAfter(since, covers):
		s.failed = orUnknown(h.message, "Argo CD gave no message")
		s.dry = h.failedDry()
		if h.dry == "" && !covers(s.dry) {
			s.dry = promo // Argo CD did not say; it read the branch after the promotion
		}
	case h.phase == HydrationHydrating:
		s.wait = fmt.Sprintf("waiting: Argo CD is hydrating %s (since %s) for dry commit %s", app, h.started.Format(time.RFC3339), short(promo))
	default:
		last := "it has hydrated nothing yet: is the Source Hydrator enabled (hydrator.enabled: \"true\" in argocd-cmd-params-cm) and argocd-commit-server running?"
		if h.lastDry != "" {
			last = "last hydrated dry commit " + short(h.lastDry)
		}
		if h.phase == HydrationFailed {
			last += fmt.Sprintf("; its hydration of %s failed: %s", orUnknown(short(h.failedDry()), "an earlier commit"), orUnknown(h.message, "no message"))
		}
		s.wait = fmt.Sprintf("waiting: Argo CD has not hydrated dry commit %s of %s yet (%s)", short(promo), app, last)
		s.ask = true
	}
	return s
}

// requestHydration asks Argo CD to look at the Application's dry branch now (the hydrate and
// refresh annotations, as `argocd app get --refresh` sets them) instead of at its next poll.
func (s *Syncer) requestHydration(ctx context.Context, ref AppRef) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		HydrateAnnotation: "normal", RefreshAnnotation: "normal",
	}}})
	if err != nil {
		return err
	}
	_, err = s.client.Resource(ApplicationGVR).Namespace(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: s.user})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: Application %s was deleted before its hydration; recreate it, or remove its kropipe.io annotations to drop the stage", ErrAppNotFound, ref)
	case err != nil:
		return fmt.Errorf("asking Application %s to hydrate its dry source: %w", ref, err)
	}
	return nil
}

// HydrationOf is what an Application says about its Source Hydrator, nil for an Application
// without one.
func HydrationOf(u *unstructured.Unstructured) *stage.Hydration {
	h, ok := sourceHydrator(u.Object)
	if !ok {
		return nil
	}
	st := readHydration(u.Object)
	out := &stage.Hydration{
		DryBranch:          str(h, "drySource", "targetRevision"),
		SyncBranch:         str(h, "syncSource", "targetBranch"),
		Phase:              st.phase,
		Message:            st.message,
		DryCommit:          st.dry,
		HydratedCommit:     st.hydrated,
		LastDryCommit:      st.lastDry,
		LastHydratedCommit: st.lastHydrated,
		StartedAt:          st.started,
		FinishedAt:         st.finished,
	}
	if out.Phase == HydrationFailed {
		out.DryCommit = st.failedDry()
	}
	return out
}

// hydrationOf is where the hydration of the stage's promotion commit promo stands: the
// hydrated commits holding it once Argo CD pushed one, else an error wrapping
// stage.ErrPending (Argo CD is hydrating, or has not seen the dry commit: it is asked to look,
// once per promotion) or ErrHydrationFailed.
func (g *HealthGate) hydrationOf(ctx context.Context, spec stage.Spec, b Binding, u *unstructured.Unstructured, promo string) (hydratedState, error) {
	covers := func(dry string) bool { return dry != "" && g.contains(ctx, spec, promo, dry) }
	hs := decideHydration(readHydration(u.Object), u.GetName(), promo, g.trackedSince(spec.Name), covers)
	switch {
	case hs.failed != "":
		return hs, fmt.Errorf("stage %q: %w: Argo CD could not hydrate dry commit %s of Application %s into %s, so nothing was synced: %s; fix the dry source and push: Argo CD hydrates the new commit",
			spec.Name, ErrHydrationFailed, short(hs.dry), b.App, b.Hydrator.SyncBranch, hs.failed)
	case hs.syncTo != "":
		return hs, nil
	}
	if hs.ask && g.askHydration(spec.Name) {
		if err := g.syncer.requestHydration(ctx, b.App); err != nil {
			if errors.Is(err, ErrAppNotFound) {
				g.forget(spec.Name)
				return hs, fmt.Errorf("stage %q: %w", spec.Name, err)
			}
			g.setHydrateAsked(spec.Name, false) // asked again next pass
			g.log.Warn("asking Argo CD to hydrate; it hydrates at its next poll of the dry branch", "stage", spec.Name, "app", b.App.String(), "error", err.Error())
		} else {
			g.log.Info("hydration requested", "stage", spec.Name, "app", b.App.String(), "dryCommit", promo)
		}
	}
	return hs, pending("%s", hs.wait)
}

// askHydration reports whether the stage's promotion has not asked Argo CD to hydrate yet,
// and marks it asked.
func (g *HealthGate) askHydration(stage string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	tr := g.tracked[stage]
	if tr == nil || tr.hydrateAsked {
		return false
	}
	tr.hydrateAsked = true
	return true
}

// trackedSince is when the gate first saw the stage's tracked commit, zero when it tracks none.
func (g *HealthGate) trackedSince(stage string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if tr := g.tracked[stage]; tr != nil {
		return tr.since
	}
	return time.Time{}
}

func (g *HealthGate) setHydrateAsked(stage string, asked bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if tr := g.tracked[stage]; tr != nil {
		tr.hydrateAsked = asked
	}
}
