package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/verify"
)

// spokeAPI plays the API server of a cluster Argo CD deploys to: it records what it is
// asked and with which Authorization, finds no Job, and refuses to create one.
type spokeAPI struct {
	mu       sync.Mutex
	requests []string // "METHOD path Authorization"
}

func (s *spokeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	s.mu.Unlock()
	status := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure}
	switch r.Method {
	case http.MethodGet:
		status.Code, status.Reason, status.Message = http.StatusNotFound, metav1.StatusReasonNotFound, "jobs.batch not found"
	default:
		status.Code, status.Reason, status.Message = http.StatusForbidden, metav1.StatusReasonForbidden, "jobs.batch is forbidden: the spoke cluster answered"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(status.Code))
	_ = json.NewEncoder(w).Encode(status)
}

func (s *spokeAPI) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// In a hub-and-spoke Argo CD the Application deploys to another cluster: its verification
// Job is made there, with the credentials of Argo CD's cluster Secret, and never in the
// promoter's own cluster (where it would pass or fail against the wrong environment).
func TestController_VerificationRunsInTheDestinationCluster(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/frontend", "1.2.1", "1.2.2")
	spoke := &spokeAPI{}
	srv := httptest.NewServer(spoke)
	t.Cleanup(srv.Close)
	const token = "spoke-token-never-logged"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-spoke", Namespace: "argocd", Labels: map[string]string{argocd.SecretTypeLabel: "cluster"}},
		Data: map[string][]byte{
			"name": []byte("spoke"), "server": []byte(srv.URL),
			"config": []byte(`{"bearerToken":"` + token + `","tlsClientConfig":{"insecure":false}}`),
		},
	}
	e := newClusterEnvFor(t, host, map[string]any{"kropipe.io/verify-job": "verify"}, secret)
	app := e.app(t, "develop-frontend")
	app.Object["spec"].(map[string]any)["destination"] = map[string]any{"server": srv.URL + "/", "namespace": "frontend-develop"}
	if _, err := e.dyn.Resource(argocd.ApplicationGVR).Namespace("argocd").Update(context.Background(), app, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, logs, commit := e.startPromoted(t, configFor(""))
	e.finishSync(t, "develop-frontend", commit)
	waitStage(t, c, logs, "told the spoke cluster's answer", func(st stage.Status) bool {
		return strings.Contains(st.Reason, "the spoke cluster answered")
	})
	jobs, err := e.kube.BatchV1().Jobs("frontend-develop").List(context.Background(), metav1.ListOptions{LabelSelector: verify.LabelStage})
	if err != nil || len(jobs.Items) != 0 {
		t.Fatalf("Jobs in the promoter's own cluster: %v, %v; want none", jobs, err)
	}
	var created bool
	for _, r := range spoke.seen() {
		if !strings.HasSuffix(r, " Bearer "+token) {
			t.Errorf("spoke request %q without the cluster Secret's bearer token", strings.ReplaceAll(r, token, "…"))
		}
		created = created || strings.HasPrefix(r, "POST /apis/batch/v1/namespaces/frontend-develop/jobs ")
	}
	if !created {
		t.Errorf("no Job created in the spoke cluster: %q", spoke.seen())
	}
	st, err := c.Stage(context.Background(), "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(st)
	if strings.Contains(logs.String(), token) || strings.Contains(string(body), token) {
		t.Error("the cluster Secret's token is in the logs or the stage's status")
	}
}
