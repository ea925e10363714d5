package forge_test

import (
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// exchangeServer replays recorded forge answers (testdata/<forge>/, origins in
// testdata/README.md) on 127.0.0.1 and keeps what the client sent, so a test reads as
// the exchange a forge would have with kropipe.
type exchangeServer struct {
	t   *testing.T
	URL string

	mu      sync.Mutex
	answers map[string][]exchangeAnswer // "METHOD /escaped/path": answered in turn, the last one again
	sent    []sentRequest
}

type exchangeAnswer struct {
	status int
	header map[string]string
	body   []byte
}

type sentRequest struct {
	Method string
	Path   string // escaped, as on the wire
	Query  url.Values
	Header http.Header
	Body   map[string]any
}

func newExchangeServer(t *testing.T) *exchangeServer {
	t.Helper()
	s := &exchangeServer{t: t, answers: map[string][]exchangeAnswer{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// on adds the answer to the next request for method and path (escaped as sent).
func (s *exchangeServer) on(method, path string, status int, body []byte, header ...string) *exchangeServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := exchangeAnswer{status: status, body: body, header: map[string]string{}}
	for i := 0; i+1 < len(header); i += 2 {
		a.header[header[i]] = header[i+1]
	}
	k := method + " " + path
	s.answers[k] = append(s.answers[k], a)
	return s
}

func (s *exchangeServer) serve(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	sr := sentRequest{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: r.Header.Clone()}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &sr.Body); err != nil {
			s.t.Errorf("%s %s: body is not JSON: %s", r.Method, sr.Path, data)
		}
	}
	s.mu.Lock()
	s.sent = append(s.sent, sr)
	k := r.Method + " " + sr.Path
	as := s.answers[k]
	var a exchangeAnswer
	ok := len(as) > 0
	if ok {
		a = as[0]
		if len(as) > 1 {
			s.answers[k] = as[1:]
		}
	}
	s.mu.Unlock()
	if !ok {
		s.t.Errorf("unexpected request %s", k)
		http.Error(w, "no recorded exchange", http.StatusNotImplemented)
		return
	}
	for h, v := range a.header {
		w.Header().Set(h, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// requests returns what was sent, in order, as "METHOD path".
func (s *exchangeServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.sent {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

// last returns the last request sent with method and path.
func (s *exchangeServer) last(method, path string) sentRequest {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.sent) - 1; i >= 0; i-- {
		if s.sent[i].Method == method && s.sent[i].Path == path {
			return s.sent[i]
		}
	}
	s.t.Fatalf("no %s %s was sent; sent: %v", method, path, s.sent)
	return sentRequest{}
}

// recorded reads a recorded answer from testdata.
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
	for k, v := range set {
		setJSONPath(obj, strings.Split(k, "."), v)
	}
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return data
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

// recordedWithElement is element i of a recorded JSON array with fields set.
func recordedWithElement(t *testing.T, name string, i int, set map[string]any) []byte {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(recordedElement(t, name, i), &obj); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		setJSONPath(obj, strings.Split(k, "."), v)
	}
	return jsonOf(t, obj)
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

// checkPullRequest compares the fields want sets (a zero field is not compared).
func checkPullRequest(t *testing.T, got *forge.PullRequest, want forge.PullRequest) {
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
	if forge.Retryable(err) != retryable {
		t.Errorf("%v: retryable %v, want %v", err, forge.Retryable(err), retryable)
	}
	if says != "" && !strings.Contains(err.Error(), says) {
		t.Errorf("%v does not say %q", err, says)
	}
	if retryIn > 0 {
		var fe *forge.Error
		if !errors.As(err, &fe) || fe.RetryAfter != retryIn {
			t.Errorf("%v: retry after %v, want %v", err, fe, retryIn)
		}
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), s) {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}

// newHungServer answers nothing until release is closed: a forge that times out.
func newHungServer(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
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
	for k, v := range set {
		setJSONPath(arr[i], strings.Split(k, "."), v)
	}
	return jsonOf(t, arr[i])
}
