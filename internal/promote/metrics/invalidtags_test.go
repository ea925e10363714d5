package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kropipe/kropipe/internal/promote/metrics"
	"github.com/kropipe/kropipe/internal/promote/registrytest"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

func TestInvalidTag_CountsEachBadTagOncePerImage(t *testing.T) {
	host := registrytest.Start(t)
	registrytest.Push(t, host, "team/app", "1.0.0")
	// A proxy that adds two tags no registry may serve to the list.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/tags/list") {
			fmt.Fprint(w, `{"name":"team/app","tags":["1.0.0","1.99.0+evil","zzz #comment"]}`)
			return
		}
		r.URL.Scheme, r.URL.Host = "http", host
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	phost := strings.TrimPrefix(proxy.URL, "http://")
	m := metrics.New()
	wh, err := warehouse.New(warehouse.WithRegistry(phost, warehouse.RegistryConfig{Insecure: true}),
		warehouse.WithInvalidTags(m.InvalidTag), warehouse.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if f, _, err := wh.Discover(context.Background(), phost+"/team/app", warehouse.Selection{}); err != nil || f.Tag != "1.0.0" {
			t.Fatalf("%+v %v", f, err)
		}
	}
	want := fmt.Sprintf(`
# HELP kropipe_registry_invalid_tags_total Listed tags skipped because they are not valid tag names, by image; each tag counts once per process.
# TYPE kropipe_registry_invalid_tags_total counter
kropipe_registry_invalid_tags_total{image=%q} 2
`, phost+"/team/app")
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "kropipe_registry_invalid_tags_total"); err != nil {
		t.Error(err)
	}
}
