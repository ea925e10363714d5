package page_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/page"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// BenchmarkPage_FirstRender100Stages renders / for a pipeline of 100 stages (25 images,
// develop → staging → prod → prod-eu each) after a real pass on a real Git server and
// registry: the server time per render, and the bytes a first visit transfers (the HTML
// plus the stylesheet and the script). Budget: ≤ 100 ms and ≤ 200 KB.
func BenchmarkPage_FirstRender100Stages(b *testing.B) {
	ctx := context.Background()
	seed := b.TempDir()
	envs := []string{"develop", "staging", "prod", "prod-eu"}
	const images = 25
	instance, err := os.ReadFile("testdata/seed/develop/frontend/instance.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for i := range images {
		for _, env := range envs {
			dir := filepath.Join(seed, env, fmt.Sprintf("service%02d", i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "instance.yaml"), instance, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	srv := gitserver.StartTB(b)
	if _, err := srv.NewBareRepo(ctx, "gitops.git", seed); err != nil {
		b.Fatal(err)
	}
	host := registrytest.Start(b)
	var specs []stage.Spec
	for i := range images {
		repo := fmt.Sprintf("team/service%02d", i)
		registrytest.Push(b, host, repo, "1.2.1", "1.2.2", "1.3.0")
		for j, env := range envs {
			s := stage.Spec{
				Name: fmt.Sprintf("%s-service%02d", env, i), Image: host + "/" + repo, Constraint: "^1.2",
				RepoURL: srv.URL("gitops.git"), File: fmt.Sprintf("%s/service%02d/instance.yaml", env, i), AutoPromote: env != "prod-eu",
			}
			if j > 0 {
				s.Upstream = fmt.Sprintf("%s-service%02d", envs[j-1], i)
			}
			specs = append(specs, s)
		}
	}
	wh, err := warehouse.New(warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true}), warehouse.WithLogger(quiet()))
	if err != nil {
		b.Fatal(err)
	}
	e, err := stage.New(specs, stage.WithWarehouse(wh), stage.WithGit(b.TempDir()), stage.WithLogger(quiet()))
	if err != nil {
		b.Fatal(err)
	}
	for range 2 { // the second pass moves staging after develop verified
		if err := e.Reconcile(ctx); err != nil {
			b.Fatal(err)
		}
	}
	h := api.New(e, api.WithLogger(quiet()))
	page.Mount(h, e, page.WithLogger(quiet()))
	get := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Host = "127.0.0.1:8080"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
		}
		return w
	}
	assets := get("/assets/page.css").Body.Len() + get("/assets/page.js").Body.Len()
	var html int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		html = get("/").Body.Len()
	}
	b.StopTimer()
	b.ReportMetric(float64(html), "html-bytes")
	b.ReportMetric(float64(html+assets), "first-visit-bytes")
	if n := len(e.Status()); n != 100 {
		b.Fatalf("%d stages", n)
	}
}

// BenchmarkPage_FirstRender1000Stages renders / for a fleet of 1,000 stages (250 services,
// develop → staging → prod → prod-eu, two release groups; fleet_test.go) as a browser asks
// for it, gzip accepted: the server time per render, and the bytes a first visit transfers
// compressed (the HTML plus the stylesheet and the script). Budget: ≤ 150 ms and ≤ 500 KB.
func BenchmarkPage_FirstRender1000Stages(b *testing.B) {
	f := newFleet(1000)
	h := api.New(f, api.WithLogger(quiet()))
	page.Mount(h, f, page.WithLogger(quiet()))
	assets := getGzip(b, h, "/assets/page.css").Body.Len() + getGzip(b, h, "/assets/page.js").Body.Len()
	var html int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := getGzip(b, h, "/")
		if w.Header().Get("Content-Encoding") != "gzip" {
			b.Fatal("the page was not compressed")
		}
		html = w.Body.Len()
	}
	b.StopTimer()
	b.ReportMetric(float64(html), "html-gzip-bytes")
	b.ReportMetric(float64(html+assets), "first-visit-gzip-bytes")
}

// BenchmarkPage_Filter renders the filtered views of the same fleet without JavaScript: a
// word typed in the filter box, the attention view, and a state grouped by Argo CD project.
func BenchmarkPage_Filter(b *testing.B) {
	f := newFleet(1000)
	h := api.New(f, api.WithLogger(quiet()))
	page.Mount(h, f, page.WithLogger(quiet()))
	for _, path := range []string{"/?q=svc04", "/?view=attention", "/?state=waiting-approval&group-by=project"} {
		b.Run(path, func(b *testing.B) {
			var html int
			b.ReportAllocs()
			for b.Loop() {
				html = getGzip(b, h, path).Body.Len()
			}
			b.ReportMetric(float64(html), "html-gzip-bytes")
		})
	}
}
