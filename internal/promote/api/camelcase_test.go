package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
)

// fixtureRequest is a request for route (a ServeMux pattern) about develop-frontend.
func fixtureRequest(route string) *http.Request {
	method, path, _ := strings.Cut(route, " ")
	path = strings.ReplaceAll(path, "{name}", "develop-frontend")
	r := httptest.NewRequest(method, "http://127.0.0.1:8080"+path, nil)
	r.Host = "127.0.0.1:8080"
	return r
}

// upperKeys lists the object keys in v that start with an upper-case letter, with their path.
func upperKeys(path string, v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if r := []rune(k); len(r) > 0 && unicode.IsUpper(r[0]) {
				out = append(out, path+"."+k)
			}
			out = append(out, upperKeys(path+"."+k, e)...)
		}
	case []any:
		for _, e := range v {
			out = append(out, upperKeys(path+"[]", e)...)
		}
	}
	return out
}

func TestAPI_EveryKeyOfEveryAnswerIsCamelCase(t *testing.T) {
	s := New(fixture{}, WithLogger(quiet()))
	routes := s.Routes()
	if len(routes) < 10 {
		t.Fatalf("the server lists %d routes: %v", len(routes), routes)
	}
	for _, route := range routes {
		if strings.HasSuffix(route, OpenAPIPath) {
			continue // the schema document, whose component names are type names
		}
		t.Run(route, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, fixtureRequest(route))
			if rec.Code/100 != 2 {
				t.Fatalf("%s: %d %s", route, rec.Code, rec.Body)
			}
			var body any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("%s answers no JSON: %v\n%s", route, err, rec.Body)
			}
			if bad := upperKeys("$", body); len(bad) > 0 {
				t.Errorf("%s answers keys in Go's spelling, not camelCase: %v", route, bad)
			}
		})
	}
}

func jsonDecode(b []byte, v any) error { return json.Unmarshal(b, v) }
