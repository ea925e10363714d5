package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAPI_RefusesForgedRequests sends what a web page the operator opened while a
// port-forward runs could send: each must be refused without a commit, with and
// without a token configured, while the promoter command keeps working.
func TestAPI_RefusesForgedRequests(t *testing.T) {
	for _, token := range []string{"", "t0ken"} {
		t.Run("token="+token, func(t *testing.T) {
			e := newEngine(t)
			ts := httptest.NewServer(New(e, WithToken(token), WithLogger(quiet())))
			defer ts.Close()
			ctx := context.Background()
			if err := e.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			addr := strings.TrimPrefix(ts.URL, "http://")
			_, port, _ := strings.Cut(addr, ":")
			if _, err := NewClient(addr, token, nil).Approve(ctx, "develop-frontend", "", ""); err != nil {
				t.Fatal(err)
			}
			if err := e.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			before, _ := e.StatusOf("develop-frontend")
			forged := []struct {
				name   string
				header map[string]string
				want   string
			}{
				{"cross-site fetch", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"},
				{"foreign origin only", map[string]string{"Origin": "http://evil.example"}, "Origin: http://evil.example"},
				{"null origin", map[string]string{"Origin": "null"}, "Origin: null"},
				{"other port on localhost", map[string]string{"Origin": "http://localhost:1", "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"},
				{"origin of another port", map[string]string{"Origin": "http://127.0.0.1:1"}, "another origin"},
				{"DNS rebinding", map[string]string{"Host": "evil.example:" + port}, `as "evil.example:` + port + `"`},
				{"rebinding with matching origin", map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port, "Sec-Fetch-Site": "same-origin"}, "DNS rebinding"},
				// A browser too old to send Origin or Sec-Fetch-Site still marks a form's body.
				{"form from an old browser", map[string]string{"Content-Type": "text/plain"}, "what a web form sends"},
				{"urlencoded form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "what a web form sends"},
			}
			for _, f := range forged {
				t.Run(f.name, func(t *testing.T) {
					req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/stages/develop-frontend/rollback", strings.NewReader(`{}`))
					req.Header.Set("Content-Type", "application/json")
					if token != "" {
						// A token does not make a forged request acceptable (it may sit in a
						// browser extension's or a proxy's hands).
						req.Header.Set("Authorization", "Bearer "+token)
					}
					for k, v := range f.header {
						if k == "Host" {
							req.Host = v
							continue
						}
						req.Header.Set(k, v)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					var body Error
					_ = json.NewDecoder(resp.Body).Decode(&body)
					resp.Body.Close()
					code := http.StatusForbidden
					if strings.HasPrefix(f.header["Content-Type"], "text/") || strings.HasPrefix(f.header["Content-Type"], "application/x-www") {
						code = http.StatusUnsupportedMediaType
					}
					if resp.StatusCode != code || !strings.Contains(body.Error, f.want) {
						t.Errorf("%d %q, want %d naming %q", resp.StatusCode, body.Error, code, f.want)
					}
				})
			}
			if after, _ := e.StatusOf("develop-frontend"); after.LastCommit != before.LastCommit || after.CurrentTag != "1.2.2" {
				t.Fatalf("a forged request changed the stage: %+v", after)
			}
			// Legitimate callers: the command (no Origin), the server's own page, localhost by name.
			for _, h := range []map[string]string{
				{},
				{"Origin": ts.URL, "Sec-Fetch-Site": "same-origin"},
				{"Host": "localhost:" + port},
				{"Host": "localhost:9999"}, // kubectl port-forward 9999:8080
				{"Sec-Fetch-Site": "none"},
			} {
				req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/stages/develop-frontend/pause", nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				for k, v := range h {
					if k == "Host" {
						req.Host = v
						continue
					}
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("legitimate request %v: %d", h, resp.StatusCode)
				}
			}
			out, err := NewClient("localhost:"+port, token, nil).Rollback(ctx, "develop-frontend", "", "")
			if err != nil || out.New != "1.2.1" {
				t.Fatalf("the promoter command's rollback: %+v, %v", out, err)
			}
		})
	}
}

func TestAPI_AllowedHostsAndOwnAddress(t *testing.T) {
	s := New(nil, WithAllowedHosts("kropipe-promoter.argocd.svc"), WithLogger(quiet()))
	for host, ok := range map[string]bool{
		"kropipe-promoter.argocd.svc:8080": true, "KROPIPE-promoter.argocd.svc.:8080": true,
		"[::1]:8080": true, "127.0.0.2:8080": true, "localhost": true,
		"evil.example:8080": false, "10.0.0.9:8080": false, "": false,
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/stages/x/pause", nil)
		r.Host = host
		if err := s.sameSite(r); (err == nil) != ok {
			t.Errorf("Host %q: %v, want allowed=%v", host, err, ok)
		}
	}
}
