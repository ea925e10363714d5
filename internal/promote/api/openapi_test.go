package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// validate checks one answer of route against doc: the route must be in it, and the
// status, content type and body must be what it says.
func validate(t *testing.T, doc *openapi3.T, route string, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	item := doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		t.Fatalf("route %s is served but missing from %s: describe it in operations()", route, OpenAPIPath)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: map[string]string{"name": req.PathValue("name")},
			Route:      &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: item.GetOperation(method)},
			Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: rec.Code,
		Header: rec.Header(),
		Body:   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
	}
	in.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s answered %d, not as %s says: %v\n%s", route, rec.Code, OpenAPIPath, err, rec.Body)
	}
}

// servedDoc is the document as GET /api/v1/openapi.json serves it, loaded and validated.
func servedDoc(t *testing.T, s http.Handler) *openapi3.T {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, fixtureRequest("GET "+OpenAPIPath))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", OpenAPIPath, rec.Code, rec.Body)
	}
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("the served document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served document is not valid OpenAPI 3: %v", err)
	}
	return doc
}

func TestOpenAPI_EveryRouteIsDocumentedAndAnswersAsDocumented(t *testing.T) {
	s := New(fixture{}, WithLogger(quiet()))
	doc := servedDoc(t, s)
	seen := map[string]bool{}
	for _, route := range s.Routes() {
		seen[route] = true
		t.Run(route, func(t *testing.T) {
			req := fixtureRequest(route)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			req.SetPathValue("name", "develop-frontend")
			validate(t, doc, route, req, rec)
			// The unknown stage's error is documented too.
			if strings.Contains(route, "{name}") {
				req := fixtureRequest(strings.ReplaceAll(route, "{name}", "nope"))
				req.SetPathValue("name", "nope")
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				validate(t, doc, route, req, rec)
			}
		})
	}
	// And nothing is documented that is not served.
	for _, op := range operations() {
		if !seen[op.pattern] {
			t.Errorf("%s documents %s, which the server does not register", OpenAPIPath, op.pattern)
		}
	}
}

func TestOpenAPI_AGoSpelledKeyFailsValidation(t *testing.T) {
	s := New(fixture{}, WithLogger(quiet()))
	doc := servedDoc(t, s)
	var st map[string]any
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, fixtureRequest("GET /api/v1/stages/{name}"))
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	st["candidate"].(map[string]any)["Tag"] = "1.2.2"
	b, _ := json.Marshal(st)
	bad := httptest.NewRecorder()
	bad.Header().Set("Content-Type", "application/json")
	bad.WriteHeader(http.StatusOK)
	bad.Body.Write(b)
	req := fixtureRequest("GET /api/v1/stages/{name}")
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: &routers.Route{Spec: doc, Path: "/api/v1/stages/{name}", PathItem: doc.Paths.Value("/api/v1/stages/{name}"), Method: "GET", Operation: doc.Paths.Value("/api/v1/stages/{name}").Get}},
		Status:                 http.StatusOK, Header: bad.Header(),
	}
	in.SetBodyBytes(b)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err == nil {
		t.Fatal("a stage answering candidate.Tag validates: the schema is not closed")
	}
}

// A route a command adds under /api/ is undocumented until it describes it, and then its
// answers are checked like New's.
func TestOpenAPI_AddedRoutesMustBeDescribed(t *testing.T) {
	s := New(fixture{}, WithLogger(quiet()))
	if missing, err := s.Undocumented(); err != nil || len(missing) != 0 {
		t.Fatalf("New's own routes undocumented: %v, %v", missing, err)
	}
	s.Handle("GET /api/v1/extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Paused{Stage: "x", Paused: true})
	}))
	s.Handle("GET /metrics", http.NotFoundHandler()) // not the API: not in the document
	if missing, _ := s.Undocumented(); len(missing) != 1 || missing[0] != "GET /api/v1/extra" {
		t.Fatalf("undocumented %v, want GET /api/v1/extra", missing)
	}
	described := New(fixture{}, WithLogger(quiet()))
	described.Handle("GET /api/v1/extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Paused{Stage: "x", Paused: true})
	}))
	described.Describe("GET /api/v1/extra", "an extra route", http.StatusOK, Paused{})
	if missing, err := described.Undocumented(); err != nil || len(missing) != 0 {
		t.Fatalf("undocumented after Describe: %v, %v", missing, err)
	}
	doc := servedDoc(t, described)
	req := fixtureRequest("GET /api/v1/extra")
	rec := httptest.NewRecorder()
	described.ServeHTTP(rec, req)
	validate(t, doc, "GET /api/v1/extra", req, rec)
}
