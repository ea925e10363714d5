package page_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/freight"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// fleet is a pipeline of many stages as a pass leaves them, without Git or a registry: the
// benchmarks' and the 1,000-stage browser test's fixture. Services run develop → staging →
// prod → prod-eu; every tenth service's develop has failed, every eighth staging waits for
// approval, every seventh prod's analysis was inconclusive, every eleventh prod-eu is
// paused and every thirteenth is held. Services 0 and 1 move together in release groups
// develop/shop and staging/shop. ApplicationSets are per service, projects per team of
// eight services, namespaces per stage.
type fleet struct {
	sts    []stage.Status
	specs  []stage.Spec
	byName map[string]stage.Status
}

var errFleet = errors.New("the fleet fixture does not act")

// attention is how many of a fleet's cards need a human (what its header counts).
func (f *fleet) attention() int {
	n := 0
	for _, st := range f.sts {
		if st.Group != "" {
			continue // inside its group's card
		}
		if stagefilter.NeedsAttention(stagefilter.StatesOf(st)) {
			n++
		}
	}
	return n
}

func newFleet(stages int) *fleet {
	f := &fleet{byName: map[string]stage.Status{}}
	envs := []string{"develop", "staging", "prod", "prod-eu"}
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	commit := func(i int) string { return fmt.Sprintf("%040x", 0xc0ffee+i) }
	for i := range stages / len(envs) {
		svc := fmt.Sprintf("svc%03d", i)
		image := "registry.example.com/team/" + svc
		for j, env := range envs {
			name := env + "-" + svc
			spec := stage.Spec{Name: name, Image: image, RepoURL: "https://github.com/acme/gitops.git", File: env + "/" + svc + "/instance.yaml",
				Origin: stage.Origin{ApplicationSet: "argocd/" + svc, Project: fmt.Sprintf("team-%02d", i/8), Namespace: name}}
			cand := freight.Freight{Image: image, Tag: "1.3.0", Digest: fmt.Sprintf("sha256:%064x", i)}
			st := stage.Status{Name: name, Image: image, File: spec.File, Key: stage.DefaultKey, CurrentTag: "1.3.0", Candidate: &cand,
				Decision: stage.DecisionUpToDate, Reason: "runs its candidate 1.3.0", LastCommit: commit(i*4 + j), LastPromotion: at,
				VerifiedFreight: &stage.Verification{Freight: cand, FreightID: cand.ID(), Value: "1.3.0", VerifiedAt: at},
				Verification:    &stage.VerificationRun{Value: "1.3.0", Freight: cand.ID(), Phase: "Passed", Message: "job " + name + "-smoke passed"},
				Sync:            &stage.SyncStatus{Application: "argocd/" + name, Revision: commit(i*4 + j), Status: "Synced", Health: "Healthy"}}
			if j > 0 {
				spec.Upstream = envs[j-1] + "-" + svc
				st.Upstream = spec.Upstream
			}
			switch {
			case j == 0 && i%10 == 3:
				st.Decision, st.Error, st.Reason = stage.DecisionFailed, "stage \""+name+"\": pushing to https://github.com/acme/gitops.git: pre-receive hook declined", "the Git write failed"
			case j == 1 && i%8 == 5:
				st.CurrentTag, st.Decision, st.Reason = "1.2.9", stage.DecisionWait, "waiting for approval of 1.3.0"
			case j == 2 && i%7 == 4:
				st.Verification.Phase, st.Verification.Message = "Inconclusive", "analysis error-rate: inconclusive"
				st.Decision, st.Reason = stage.DecisionWait, "verification of 1.3.0 is inconclusive: approve or roll back"
			case j == 3 && i%11 == 6:
				st.Paused, st.Decision, st.Reason = true, stage.DecisionHold, "paused"
			case j == 3 && i%13 == 9:
				st.Decision, st.Reason = stage.DecisionHold, "1.2.9 would go backwards from 1.3.0"
			}
			f.specs = append(f.specs, spec)
			f.sts = append(f.sts, st)
		}
	}
	// develop/shop and staging/shop: services 0 and 1, one card each.
	for j, env := range envs[:2] {
		g := stage.Status{Name: env + "/shop", Decision: stage.DecisionUpToDate, Reason: "runs its candidate set", LastCommit: commit(9000 + j), LastPromotion: at}
		if j == 1 {
			g.Upstream = "develop/shop"
		}
		for k := range f.sts {
			st := &f.sts[k]
			if st.Name == env+"-svc000" || st.Name == env+"-svc001" {
				st.Group = g.Name
				g.Members = append(g.Members, stage.MemberStatus{Stage: st.Name, Current: st.CurrentTag})
			}
		}
		g.CurrentTag = fmt.Sprintf("%s=1.3.0, %s=1.3.0", g.Members[0].Stage, g.Members[1].Stage)
		f.sts = append(f.sts, g)
	}
	for _, st := range f.sts {
		f.byName[st.Name] = st
	}
	return f
}

func (f *fleet) Status() []stage.Status { return f.sts }
func (f *fleet) StatusOf(name string) (stage.Status, bool) {
	st, ok := f.byName[name]
	return st, ok
}
func (f *fleet) Specs() []stage.Spec { return f.specs }
func (f *fleet) History(_ context.Context, name string) ([]gitwrite.Record, error) {
	st, ok := f.byName[name]
	if !ok {
		return nil, errFleet
	}
	return []gitwrite.Record{{Commit: st.LastCommit, Time: st.LastPromotion, Subject: "Promote image from 1.2.9 to 1.3.0", Kind: gitwrite.Promote,
		Stage: name, Image: st.Image + ":1.3.0", Value: st.CurrentTag, Previous: "1.2.9"}}, nil
}
func (f *fleet) Promote(context.Context, string, string, ...stage.ActionOption) (stage.Outcome, error) {
	return stage.Outcome{}, errFleet
}
func (f *fleet) Rollback(context.Context, string, string, ...stage.ActionOption) (stage.Outcome, error) {
	return stage.Outcome{}, errFleet
}
func (f *fleet) Approve(context.Context, string, string, ...stage.ActionOption) (string, error) {
	return "", errFleet
}
func (f *fleet) Pause(context.Context, string, ...stage.ActionOption) error  { return errFleet }
func (f *fleet) Resume(context.Context, string, ...stage.ActionOption) error { return errFleet }
func (f *fleet) Passes() int                                                 { return 1 }

// serveFleet serves the page for a fleet of n stages on a test server.
func serveFleet(t testing.TB, n int) (*fleet, *httptest.Server) {
	f := newFleet(n)
	h := api.New(f, api.WithLogger(quiet()))
	page.Mount(h, f, page.WithLogger(quiet()))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return f, srv
}

// get is GET path on h as a browser asks for it (gzip accepted).
func getGzip(t testing.TB, h http.Handler, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
	}
	return w
}
