package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// fleet is a Controller with n stages: every tenth failed, every seventh paused, each in
// namespace team-<i%3>.
type fleet struct {
	fixture
	sts []stage.Status
}

func newFleet(n int) fleet {
	f := fleet{sts: make([]stage.Status, n)}
	for i := range f.sts {
		st := stage.Status{Name: fmt.Sprintf("stage-%04d", i), Image: "registry.example.com/team/app", CurrentTag: "1.0.0", Decision: stage.DecisionUpToDate}
		if i%10 == 0 {
			st.Decision, st.Reason = stage.DecisionFailed, "push refused"
		}
		if i%7 == 0 {
			st.Paused = true
		}
		st.Origin = stage.Origin{Namespace: fmt.Sprintf("team-%d", i%3)}
		f.sts[i] = st
	}
	return f
}

func (f fleet) Status() []stage.Status { return f.sts }

func list(t *testing.T, s http.Handler, query string) (StageList, int) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/api/v1/stages?"+query, nil))
	var out StageList
	if rec.Code == http.StatusOK {
		if err := jsonDecode(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
	}
	return out, rec.Code
}

func TestAPI_StageListFiltersAndPages(t *testing.T) {
	s := New(newFleet(1000), WithLogger(quiet()))
	all, _ := list(t, s, "")
	if all.Total != 1000 || len(all.Stages) != 1000 || all.Continue != "" {
		t.Fatalf("without limit: total %d, %d stages, continue %q", all.Total, len(all.Stages), all.Continue)
	}
	if all.Attention[stagefilter.Failed] != 100 || all.Attention[stagefilter.Paused] != 143 || all.Attention[stagefilter.Inconclusive] != 0 {
		t.Fatalf("attention %v", all.Attention)
	}
	// Every page of failed stages in team-1, following continue, gives each once, in order.
	var names []string
	q := url.Values{"state": {"failed"}, "namespace": {"team-1"}, "limit": {"7"}}
	for pages := 0; ; pages++ {
		page, code := list(t, s, q.Encode())
		if code != http.StatusOK || page.Total != 33 || len(page.Stages) > 7 {
			t.Fatalf("page %d: %d, total %d, %d stages", pages, code, page.Total, len(page.Stages))
		}
		if page.Attention[stagefilter.Failed] != 100 {
			t.Fatalf("attention counts the filtered stages only: %v", page.Attention)
		}
		for _, st := range page.Stages {
			names = append(names, st.Name)
		}
		if page.Continue == "" {
			break
		}
		q.Set("continue", page.Continue)
	}
	if len(names) != 33 || names[0] != "stage-0010" || names[1] != "stage-0040" || names[32] != "stage-0970" {
		t.Fatalf("pages gave %d stages: %v", len(names), names)
	}
	if got, _ := list(t, s, "q=STAGE-09&state=paused"); got.Total != 14 {
		t.Fatalf("q and state: total %d", got.Total)
	}
}

// A list that lost the stage a page ended on resumes after it anyway.
func TestListStages_ResumesAfterTheLastStageWhereverItMoved(t *testing.T) {
	sts := newFleet(10).Status()
	first, err := ListStages(sts, stagefilter.Filter{}, 4, "")
	if err != nil || first.Continue == "" || first.Stages[3].Name != "stage-0003" {
		t.Fatalf("first page %+v, %v", first, err)
	}
	// Two stages before the cut went away: the next page still starts at stage-0004.
	next, err := ListStages(append(sts[:1:1], sts[3:]...), stagefilter.Filter{}, 4, first.Continue)
	if err != nil || next.Stages[0].Name != "stage-0004" {
		t.Fatalf("next page %+v, %v", next.Stages, err)
	}
}

func TestAPI_StageListRefusesBadParametersSayingWhatToSend(t *testing.T) {
	s := New(newFleet(3), WithLogger(quiet()))
	for _, tc := range []struct{ query, want string }{
		{"limit=0", "from 1 to 1000"},
		{"limit=many", "from 1 to 1000"},
		{"limit=1001", "from 1 to 1000"},
		{"state=broken", "waiting-approval"},
		{"continue=bm9wZQ", "start again without it"},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/api/v1/stages?"+tc.query, nil))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: %d %s", tc.query, rec.Code, rec.Body)
		}
	}
}

func TestClient_ListStagesSendsTheFilterAndFollowsPages(t *testing.T) {
	ts := httptest.NewServer(New(newFleet(50), WithLogger(quiet())))
	defer ts.Close()
	c := NewClient(strings.TrimPrefix(ts.URL, "http://"), "", nil)
	f := stagefilter.Filter{States: []stagefilter.State{stagefilter.Failed}}
	var got []string
	for token := ""; ; {
		page, err := c.ListStages(t.Context(), f, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range page.Stages {
			got = append(got, st.Name)
		}
		if token = page.Continue; token == "" {
			break
		}
	}
	if strings.Join(got, " ") != "stage-0000 stage-0010 stage-0020 stage-0030 stage-0040" {
		t.Fatalf("pages gave %v", got)
	}
}

// BenchmarkStageList_10000Stages is one filtered page of GET /api/v1/stages over 10,000
// stages, answered and encoded.
func BenchmarkStageList_10000Stages(b *testing.B) {
	s := New(newFleet(10000), WithLogger(quiet()))
	for _, query := range []string{"limit=100", "q=stage-09&state=failed,paused&namespace=team-1&limit=100", ""} {
		b.Run("?"+query, func(b *testing.B) {
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/api/v1/stages?"+query, nil))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
