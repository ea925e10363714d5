package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// hydrated is the engine with what the Argo CD mode adds to a stage's status (the controller's
// gate.explain): its Application's sync, of a hydrator Application.
type hydrated struct {
	*stage.Engine
	sync *stage.SyncStatus
}

func (h hydrated) Status() []stage.Status {
	sts := h.Engine.Status()
	for i := range sts {
		sts[i].Sync = h.sync
	}
	return sts
}

func (h hydrated) StatusOf(name string) (stage.Status, bool) {
	st, ok := h.Engine.StatusOf(name)
	st.Sync = h.sync
	return st, ok
}

func TestAPI_StatusShowsTheDryAndTheHydratedCommit(t *testing.T) {
	const dry, hyd = "5e6f7a8eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee2", "1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d"
	e := newEngine(t)
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	sync := &stage.SyncStatus{Application: "argocd/develop-frontend", Revision: hyd, Status: "Synced", Health: "Healthy",
		Hydration: &stage.Hydration{DryBranch: "main", SyncBranch: "environments/develop", Phase: "Hydrated", DryCommit: dry, HydratedCommit: hyd, LastDryCommit: dry, LastHydratedCommit: hyd}}
	ts := httptest.NewServer(New(hydrated{Engine: e, sync: sync}, WithLogger(quiet())))
	defer ts.Close()
	// Read as JSON a client without kropipe's types would: camelCase keys.
	var raw struct {
		Sync struct {
			Revision  string `json:"revision"`
			Hydration struct {
				DryBranch      string `json:"dryBranch"`
				SyncBranch     string `json:"syncBranch"`
				Phase          string `json:"phase"`
				DryCommit      string `json:"dryCommit"`
				HydratedCommit string `json:"hydratedCommit"`
			} `json:"hydration"`
		} `json:"sync"`
	}
	if code := get(t, ts.URL+"/api/v1/stages/develop-frontend", &raw); code != http.StatusOK {
		t.Fatalf("GET stage: %d", code)
	}
	h := raw.Sync.Hydration
	if raw.Sync.Revision != hyd || h.DryCommit != dry || h.HydratedCommit != hyd || h.Phase != "Hydrated" || h.DryBranch != "main" || h.SyncBranch != "environments/develop" {
		t.Fatalf("sync %+v", raw.Sync)
	}
}
