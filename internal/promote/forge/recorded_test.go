package forge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testToken is the credential the Gitea and GitHub tests hand the client: no error text
// may carry it.
const testToken = "kropipe-test-token-3f9a1c"

// exchange is one recorded request and the forge's answer to it, replayed by
// recordedAPI. The answer's body is a file under testdata/ (a payload of the forge's
// API, see testdata/README.md) or written out.
type exchange struct {
	method, path string // the path escaped, as on the wire
	status       int    // 200 unless set
	file         string // testdata/<file>
	body         []byte // when no file
	header       http.Header
	block        <-chan struct{} // answer only once closed: a forge that does not answer
}

// sentRequest is a request the client sent.
type sentRequest struct {
	method, path string // the path escaped, as on the wire
	query        url.Values
	header       http.Header
	body         []byte
}

// recordedAPI is an httptest server on 127.0.0.1 that replays exchanges in order: each
// request must be the next one expected (method and path), and the client must send
// them all. That pins what the client asks and in which order (a comment before the
// close, the merge carrying the sha, nothing sent for a refused call), so a test reads
// as the conversation a forge would have with kropipe.
type recordedAPI struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	next int
	want []exchange
	got  []sentRequest
}

func newRecordedAPI(t *testing.T, want ...exchange) *recordedAPI {
	t.Helper()
	want = slices.Clone(want) // the files read into the copy
	for i, x := range want {
		if x.file != "" {
			want[i].body = recorded(t, x.file)
		}
	}
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
	path := req.URL.EscapedPath()
	if len(body) > 0 && !json.Valid(body) {
		r.t.Errorf("%s %s: body is not JSON: %s", req.Method, path, body)
	}
	r.mu.Lock()
	r.got = append(r.got, sentRequest{method: req.Method, path: path, query: req.URL.Query(), header: req.Header.Clone(), body: body})
	if r.next >= len(r.want) {
		r.mu.Unlock()
		r.t.Errorf("unexpected request %s %s?%s (all %d recorded exchanges replayed)", req.Method, path, req.URL.RawQuery, len(r.want))
		http.Error(w, "unexpected", http.StatusTeapot)
		return
	}
	x := r.want[r.next]
	r.next++
	r.mu.Unlock()
	if x.method != req.Method || x.path != path {
		r.t.Errorf("request %s %s, recorded exchange is %s %s", req.Method, path, x.method, x.path)
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
	_, _ = w.Write(x.body)
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

// sent is the last request the client sent to method path.
func (r *recordedAPI) sent(method, path string) sentRequest {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.got) - 1; i >= 0; i-- {
		if r.got[i].method == method && r.got[i].path == path {
			return r.got[i]
		}
	}
	r.t.Fatalf("no %s %s was sent; sent: %v", method, path, r.got)
	return sentRequest{}
}

// sentJSON decodes the body of the last request to method path into v.
func (r *recordedAPI) sentJSON(method, path string, v any) {
	r.t.Helper()
	if err := json.Unmarshal(r.sent(method, path).body, v); err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// recorded reads a recorded payload from testdata.
func recorded(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// recordedWith is a recorded JSON object with fields set ("a.b": v; nil sets null), for
// the states no recording shows; each use names the fields it sets.
func recordedWith(t *testing.T, name string, set map[string]any) []byte {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(recorded(t, name), &obj); err != nil {
		t.Fatal(err)
	}
	return jsonWith(t, obj, set)
}

// recordedWithElement is element i of a recorded JSON array with fields set.
func recordedWithElement(t *testing.T, name string, i int, set map[string]any) []byte {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(recordedElement(t, name, i), &obj); err != nil {
		t.Fatal(err)
	}
	return jsonWith(t, obj, set)
}

// recordedWithElementOf is element i of the array at key in a recorded JSON object,
// with fields set.
func recordedWithElementOf(t *testing.T, name, key string, i int, set map[string]any) []byte {
	t.Helper()
	var whole map[string]json.RawMessage
	var arr []map[string]any
	if err := json.Unmarshal(recorded(t, name), &whole); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(whole[key], &arr); err != nil {
		t.Fatal(err)
	}
	return jsonWith(t, arr[i], set)
}

func jsonWith(t *testing.T, obj map[string]any, set map[string]any) []byte {
	t.Helper()
	for k, v := range set {
		setJSONPath(obj, strings.Split(k, "."), v)
	}
	return jsonOf(t, obj)
}

func setJSONPath(obj map[string]any, path []string, v any) {
	if len(path) == 1 {
		obj[path[0]] = v
		return
	}
	next, _ := obj[path[0]].(map[string]any)
	if next == nil {
		next = map[string]any{}
		obj[path[0]] = next
	}
	setJSONPath(next, path[1:], v)
}

// recordedElement is element i of a recorded JSON array.
func recordedElement(t *testing.T, name string, i int) []byte {
	t.Helper()
	var arr []json.RawMessage
	if err := json.Unmarshal(recorded(t, name), &arr); err != nil {
		t.Fatal(err)
	}
	return arr[i]
}

func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func rawJSON(b []byte) json.RawMessage { return json.RawMessage(b) }

func orNone(v any) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprint(v)
}

func ptrBool(b bool) *bool { return &b }

func fmtBool(b *bool) string {
	if b == nil {
		return "nil"
	}
	return strconv.FormatBool(*b)
}

// checkFound checks what Find returned: pull request number want, or none for 0.
func checkFound(t *testing.T, pr *PullRequest, want int) {
	t.Helper()
	switch {
	case want == 0 && pr != nil:
		t.Fatalf("found #%d, want none", pr.Number)
	case want != 0 && (pr == nil || pr.Number != want):
		t.Fatalf("found %+v, want #%d", pr, want)
	}
}

// checkGetTimesOut reads pull request number from a forge that never answers (the read
// at path): Get fails after c.Timeout with a retryable *Error without status, naming the
// forge and showing no token. c.APIURL is the API's path on the replaying server.
func checkGetTimesOut(t *testing.T, repoURL string, c Config, path string, number int) Forge {
	t.Helper()
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	api := newRecordedAPI(t, exchange{method: "GET", path: path, block: never})
	c.APIURL, c.Timeout = api.srv.URL+c.APIURL, 100*time.Millisecond
	f, err := New(repoURL, c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Get(context.Background(), number)
	var fe *Error
	if !errors.As(err, &fe) || fe.Status != 0 || !Retryable(err) || fe.Forge != f.Kind() {
		t.Fatalf("err %v, want a retryable %s error without status", err, f.Kind())
	}
	noSecret(t, err, c.Token)
	return f
}

// checkPullRequest compares the fields want sets (a zero field is not compared).
func checkPullRequest(t *testing.T, got *PullRequest, want PullRequest) {
	t.Helper()
	if got == nil {
		t.Fatalf("got no pull request, want %+v", want)
	}
	g := *got
	gv, wv := reflect.ValueOf(&g).Elem(), reflect.ValueOf(&want).Elem()
	for i := range wv.NumField() {
		if wv.Field(i).IsZero() {
			gv.Field(i).Set(reflect.Zero(gv.Field(i).Type()))
		}
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("got  %+v (mergeable %s)\nwant %+v (mergeable %s)", g, fmtBool(g.Mergeable), want, fmtBool(want.Mergeable))
	}
}

// noSecret fails when an error shows one of the secrets, in its text or in its
// formatted values.
func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), s) {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}

// checkForgeError checks a failed call: the sentinel, whether a retry can help, that
// the message says what to do, when to retry, and that no secret shows.
func checkForgeError(t *testing.T, err error, want error, retryable bool, says string, retryIn time.Duration, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if want != nil && !errors.Is(err, want) {
		t.Errorf("%v is not %v", err, want)
	}
	if Retryable(err) != retryable {
		t.Errorf("%v: retryable %v, want %v", err, Retryable(err), retryable)
	}
	if says != "" && !strings.Contains(err.Error(), says) {
		t.Errorf("%v does not say %q", err, says)
	}
	if retryIn > 0 {
		var fe *Error
		if !errors.As(err, &fe) || fe.RetryAfter != retryIn {
			t.Errorf("%v: retry after %v, want %v", err, fe, retryIn)
		}
	}
	noSecret(t, err, secrets...)
}
