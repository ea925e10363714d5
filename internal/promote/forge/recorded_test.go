package forge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testToken is the credential every recorded-exchange test hands the client: no error
// text may carry it.
const testToken = "kropipe-test-token-3f9a1c"

// exchange is one recorded request and the forge's answer to it, replayed by
// recordedAPI. The answer's body is a file under testdata/ (a payload of the forge's
// API, see testdata/README.md) or a literal.
type exchange struct {
	method, path string
	status       int
	file         string // testdata/<file>
	body         string // when no file
	header       http.Header
	block        <-chan struct{} // answer only once closed: a forge that does not answer
}

// seen is a request the client sent.
type seen struct {
	method, path, query, body, auth string
}

// recordedAPI is an httptest server that replays exchanges in order: each request must
// be the next one expected (method and path), which pins what the client asks and in
// which order (a comment before the close, the merge carrying the sha).
type recordedAPI struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	next int
	want []exchange
	got  []seen
}

func newRecordedAPI(t *testing.T, want ...exchange) *recordedAPI {
	t.Helper()
	r := &recordedAPI{t: t, want: want}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.next < len(r.want) && !t.Failed() {
			t.Errorf("the client stopped before the recorded exchange %d: %s %s", r.next, r.want[r.next].method, r.want[r.next].path)
		}
	})
	return r
}

func (r *recordedAPI) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, seen{method: req.Method, path: req.URL.Path, query: req.URL.RawQuery, body: string(body), auth: req.Header.Get("Authorization")})
	if r.next >= len(r.want) {
		r.mu.Unlock()
		r.t.Errorf("unexpected request %s %s?%s (all %d recorded exchanges replayed)", req.Method, req.URL.Path, req.URL.RawQuery, len(r.want))
		http.Error(w, "unexpected", http.StatusTeapot)
		return
	}
	x := r.want[r.next]
	r.next++
	r.mu.Unlock()
	if x.method != req.Method || x.path != req.URL.Path {
		r.t.Errorf("request %s %s, recorded exchange is %s %s", req.Method, req.URL.Path, x.method, x.path)
		http.Error(w, "unexpected", http.StatusTeapot)
		return
	}
	if x.block != nil {
		select {
		case <-x.block:
		case <-req.Context().Done():
			return
		}
	}
	out := []byte(x.body)
	if x.file != "" {
		var err error
		if out, err = os.ReadFile(filepath.Join("testdata", x.file)); err != nil {
			r.t.Errorf("recorded exchange %s: %v", x.file, err)
		}
	}
	for k, vs := range x.header {
		w.Header()[k] = vs
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	status := x.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// requests are the requests the client sent, "METHOD path".
func (r *recordedAPI) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.got {
		out = append(out, s.method+" "+s.path)
	}
	return out
}

// sent is the body of the first request to method path.
func (r *recordedAPI) sent(method, path string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.got {
		if s.method == method && s.path == path {
			return s.body
		}
	}
	r.t.Errorf("no %s %s was sent; sent: %v", method, path, r.got)
	return ""
}

// noToken fails when an error's text carries the test credential.
func noToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("error text carries the token: %v", err)
	}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}
