package promoter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Argo Rollouts analysis gates develop → staging (kropipe.io/verify-analysis): the stack runs
// Rollouts' own analysis controller, and develop's AnalysisTemplate is a `web` metric against an
// HTTP endpoint this test serves on 127.0.0.1, which passes every value but 1.2.3. kropipe makes
// the AnalysisRun from the template with its arguments (value, stage); 1.2.2 passes and reaches
// staging after the soak; 1.2.3 fails, is rolled back by auto-rollback and never reaches staging.
func TestController_AnalysisGatesTheStage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	checks := &smokeEndpoint{}
	srv := httptest.NewServer(checks)
	defer srv.Close()

	v := newAnalysisPipeline(t, ctx)
	seed := v.seed()
	for _, ns := range []string{analysisDevelop, analysisStaging} {
		if err := st.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	v.bindVerifyRole(analysisDevelop)
	v.applyTemplate(srv.URL)
	for _, app := range v.apps {
		v.syncByHand(app, seed)
	}
	for _, app := range v.apps {
		v.waitApp(app, "Synced and Healthy at the seed", syncedHealthyAt(seed))
	}

	p := v.startPromoter("promoter-analysis")
	v.waitLeader("promoter-analysis")
	v.waitStage(p, analysisDevelop, "verified 1.2.1 by its AnalysisRun", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.1"
	})

	pushImage(t, st.RegistryAddr, "analysis/frontend", "1.2.2")
	develop := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", seed)
	dv := v.waitStage(p, analysisDevelop, "verified 1.2.2", func(s stageStatus) bool {
		return s.VerifiedFreight != nil && s.VerifiedFreight.Value == "1.2.2"
	})
	if dv.VerifiedFreight.Commit != develop || dv.Verification == nil || !strings.Contains(dv.Verification.Message, "successful") {
		t.Errorf("develop verified %+v (verification %+v), want 1.2.2 at %s by a successful analysis", dv.VerifiedFreight, dv.Verification, develop)
	}
	run := v.analysisRun("1.2.2")
	if args := runArgs(run); args["value"] != "1.2.2" || args["stage"] != analysisDevelop {
		t.Errorf("AnalysisRun %s args %v, want value 1.2.2 and stage %s", run.GetName(), args, analysisDevelop)
	}
	if phase, _, _ := unstructured.NestedString(run.Object, "status", "phase"); phase != "Successful" {
		t.Errorf("AnalysisRun %s phase %q, want Successful (set by Argo Rollouts)", run.GetName(), phase)
	}
	if !checks.asked("1.2.2") {
		t.Errorf("the web metric never asked the endpoint about 1.2.2; it was asked %v", checks.values())
	}
	staging := v.waitCommit("staging/frontend/instance.yaml", "Promote image from 1.2.1 to 1.2.2", develop)
	if at := v.commitTime(staging); at.Before(dv.VerifiedFreight.VerifiedAt.Add(v.soak).Truncate(time.Second)) {
		t.Errorf("staging promoted at %s, before develop's verification %s + soak %s", at, dv.VerifiedFreight.VerifiedAt, v.soak)
	}

	pushImage(t, st.RegistryAddr, "analysis/frontend", "1.2.3")
	bad := v.waitCommit("develop/frontend/instance.yaml", "Promote image from 1.2.2 to 1.2.3", staging)
	rolledBack := v.waitCommit("develop/frontend/instance.yaml", "Roll back image from 1.2.3 to 1.2.2", bad)
	if rejected := strings.TrimSpace(v.git("log", "-1", "--format=%(trailers:key=Kropipe-Rejected,valueonly)", rolledBack)); rejected != "1.2.3" {
		t.Errorf("rollback commit trailer Kropipe-Rejected = %q, want 1.2.3", rejected)
	}
	if phase, _, _ := unstructured.NestedString(v.analysisRun("1.2.3").Object, "status", "phase"); phase != "Failed" {
		t.Errorf("1.2.3's AnalysisRun phase %q, want Failed", phase)
	}
	why := v.waitStage(p, analysisDevelop, "back at 1.2.2, saying why 1.2.3 was rolled back", func(s stageStatus) bool {
		return s.CurrentTag == "1.2.2" && strings.Contains(s.Reason, "1.2.3 failed verification: analysis ")
	})
	v.waitStage(p, analysisDevelop, "two more passes", func(s stageStatus) bool { return s.CheckedAt.After(why.CheckedAt.Add(2 * crashInterval)) })
	if head := v.head(); head != rolledBack {
		t.Errorf("the promoter committed after its rollback:\n%s", v.log(rolledBack))
	}
	if got := v.git("log", "--format=%s", seed+"..HEAD", "--", "staging/frontend"); strings.TrimSpace(got) != "Promote image from 1.2.1 to 1.2.2" {
		t.Errorf("staging's commits:\n%s\nwant only its promotion of 1.2.2", got)
	}
	v.wantEvent(analysisDevelop, "RolledBack", "Roll back image from 1.2.3 to 1.2.2")
}

const (
	analysisRepo    = "analysis-gitops"
	analysisDevelop = "analysis-develop"
	analysisStaging = "analysis-staging"
)

// smokeEndpoint is what the web metric asks: {"verdict":"pass"} for every value but 1.2.3.
type smokeEndpoint struct {
	mu   sync.Mutex
	seen []string
}

func (e *smokeEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	value := r.URL.Query().Get("value")
	e.mu.Lock()
	e.seen = append(e.seen, value)
	e.mu.Unlock()
	verdict := "pass"
	if value == "1.2.3" {
		verdict = "fail"
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"verdict":%q}`, verdict)
}

func (e *smokeEndpoint) values() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}

func (e *smokeEndpoint) asked(value string) bool {
	for _, v := range e.values() {
		if v == value {
			return true
		}
	}
	return false
}

type analysisPipeline struct{ *verifyPipeline }

func newAnalysisPipeline(t *testing.T, ctx context.Context) *analysisPipeline {
	p := &pipeline{t: t, ctx: ctx, srv: st.Git, soak: 5 * time.Second, apps: []string{analysisDevelop, analysisStaging}}
	p.installPromoterRBAC()
	t.Cleanup(func() { removeCrashObjects(t, p.apps) })
	return &analysisPipeline{&verifyPipeline{p}}
}

func (v *analysisPipeline) seed() string {
	seed := v.seedRepo(analysisRepo, "analysis", nil)
	v.createAppIn(analysisRepo, analysisDevelop, "develop/frontend", "analysis/frontend", map[string]string{
		"kropipe.io/verify-analysis": "smoke",
		"kropipe.io/verify-timeout":  "5m",
		"kropipe.io/auto-rollback":   "true",
	})
	v.createAppIn(analysisRepo, analysisStaging, "staging/frontend", "analysis/frontend", map[string]string{
		"kropipe.io/upstream": analysisDevelop,
		"kropipe.io/soak":     v.soak.String(),
	})
	return seed
}

// applyTemplate creates develop's AnalysisTemplate: one web measurement of the endpoint at url,
// passing when it answers "pass", with the arguments kropipe fills.
func (v *analysisPipeline) applyTemplate(url string) {
	tmpl := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "AnalysisTemplate",
		"metadata":   map[string]any{"name": "smoke", "namespace": analysisDevelop},
		"spec": map[string]any{
			"args": []any{map[string]any{"name": "value"}, map[string]any{"name": "stage"}},
			"metrics": []any{map[string]any{
				"name":             "smoke",
				"successCondition": `result == "pass"`,
				"failureLimit":     int64(0),
				"provider": map[string]any{"web": map[string]any{
					"url":      url + "/check?value={{args.value}}&stage={{args.stage}}",
					"jsonPath": "{$.verdict}",
				}},
			}},
		},
	}}
	if err := st.Apply(v.ctx, tmpl); err != nil {
		v.t.Fatal(err)
	}
}

var analysisRunGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}

// analysisRun is develop's AnalysisRun for value.
func (v *analysisPipeline) analysisRun(value string) *unstructured.Unstructured {
	var found *unstructured.Unstructured
	v.poll("the AnalysisRun of "+value, syncTimeout, func() (bool, string) {
		list, err := st.Dynamic.Resource(analysisRunGVR).Namespace(analysisDevelop).List(v.ctx, metav1.ListOptions{LabelSelector: "kropipe.io/stage=" + analysisDevelop})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for i, u := range list.Items {
			if u.GetAnnotations()["kropipe.io/value"] == value {
				found = &list.Items[i]
				return true, ""
			}
			names = append(names, u.GetName())
		}
		return false, fmt.Sprintf("runs %v", names)
	})
	return found
}

func runArgs(u *unstructured.Unstructured) map[string]string {
	args, _, _ := unstructured.NestedSlice(u.Object, "spec", "args")
	out := map[string]string{}
	for _, a := range args {
		b, _ := json.Marshal(a)
		var arg struct{ Name, Value string }
		_ = json.Unmarshal(b, &arg)
		out[arg.Name] = arg.Value
	}
	return out
}
