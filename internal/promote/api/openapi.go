package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
	"github.com/kropipe/kropipe/internal/version"
)

// OpenAPIPath serves the API's OpenAPI 3 document.
const OpenAPIPath = "/api/v1/openapi.json"

// Health is the body of /healthz and /readyz when all is well.
type Health struct {
	Status string `json:"status"`
}

// operation is one route of the document: its answer's type on success, and its request
// body's type for the actions. Every route may also answer an Error.
type operation struct {
	pattern string // a ServeMux pattern, as registered
	summary string
	code    int
	answer  any // nil: a free-form object
	body    any
	query   []*openapi3.Parameter
	// text: the route may answer plain text instead (a readiness handler of the command's).
	text bool
	// stream: the route answers a text/event-stream, not JSON.
	stream bool
}

// operations are the routes New registers, as the document describes them. The schemas are
// generated from the very types the handlers encode, so they cannot drift from them; the
// test calls every registered route and validates its answer against the document.
func operations() []operation {
	str := func(name, desc string) *openapi3.Parameter {
		return openapi3.NewQueryParameter(name).WithDescription(desc).WithSchema(openapi3.NewStringSchema())
	}
	states := openapi3.NewStringSchema()
	for _, s := range stagefilter.States {
		states.Enum = append(states.Enum, string(s))
	}
	listQuery := []*openapi3.Parameter{
		str(stagefilter.ParamText, "text matched against stage, image, value (current and candidate), group, decision, reason and state"),
		openapi3.NewQueryParameter(stagefilter.ParamState).WithDescription("keep stages in any of these states (repeat the parameter or separate with commas)").
			WithSchema(openapi3.NewArraySchema().WithItems(states)),
		str(stagefilter.ParamGroup, "release group: the group and its members"),
		str(stagefilter.ParamAppSet, "the ApplicationSet that generated the stage's Application"),
		str(stagefilter.ParamProject, "the Argo CD project of the stage's Application"),
		str(stagefilter.ParamNamespace, "the namespace of the stage's Application"),
		str(stagefilter.ParamFile, "the promoter.yaml the stage is configured in, its instance file, or a directory holding it"),
		openapi3.NewQueryParameter("limit").WithDescription(fmt.Sprintf("at most this many stages (1 to %d); without it, every stage", maxLimit)).
			WithSchema(openapi3.NewIntegerSchema().WithMin(1).WithMax(maxLimit)),
		str("continue", "the token of the next page, from the previous answer's continue"),
	}
	return []operation{
		{pattern: "GET /healthz", summary: "the process is alive", code: 200, answer: Health{}},
		{pattern: "GET /readyz", summary: "ready to serve (after the first pass; a standby replica is ready too)", code: 200, answer: Health{}, text: true},
		{pattern: "GET " + OpenAPIPath, summary: "this document", code: 200},
		{pattern: "GET /api/v1/stages", summary: "the stages, filtered and a page at a time", code: 200, answer: StageList{}, query: listQuery},
		{pattern: "GET /api/v1/stages/{name}", summary: "one stage (or release group)", code: 200, answer: stage.Status{}},
		{pattern: "GET /api/v1/stages/{name}/history", summary: "the stage's promotions and rollbacks from Git, newest first, with who asked", code: 200, answer: History{}},
		{pattern: "GET /api/v1/stages/{name}/attestations", summary: "the freight verified in the stage and the values approved for it, oldest first, as the promoter's state keeps them", code: 200, answer: stage.Attestations{}},
		{pattern: "GET /api/v1/stages/{name}/tags", summary: "the tags the stage's warehouse sees, each with why it is or is not a candidate", code: 200, answer: Tags{}},
		{pattern: "POST /api/v1/stages/{name}/promote", summary: "promote a tag (or the candidate) now", code: 200, answer: stage.Outcome{}, body: PromoteRequest{}},
		{pattern: "POST /api/v1/stages/{name}/rollback", summary: "roll back to the previous value (or one named)", code: 200, answer: stage.Outcome{}, body: RollbackRequest{}},
		{pattern: "POST /api/v1/stages/{name}/approve", summary: "approve a tag (or the candidate) for a stage without autoPromote", code: 200, answer: Approved{}, body: PromoteRequest{}},
		{pattern: "POST /api/v1/stages/{name}/verify", summary: "run the verification of the value the stage runs again", code: 202, answer: Reverified{}},
		{pattern: "POST /api/v1/stages/{name}/pause", summary: "stop automatic promotions to the stage", code: 200, answer: Paused{}},
		{pattern: "POST /api/v1/stages/{name}/resume", summary: "undo pause", code: 200, answer: Paused{}},
	}
}

// Describe documents a route added with Handle in the server's OpenAPI document: what it
// does, its success status and the type it answers (nil: a free-form object). Call it
// before serving.
func (s *Server) Describe(pattern, summary string, code int, answer any) {
	s.extra = append(s.extra, operation{pattern: pattern, summary: summary, code: code, answer: answer})
}

// DescribeStream documents a route added with Handle that answers a text/event-stream.
func (s *Server) DescribeStream(pattern, summary string) {
	s.extra = append(s.extra, operation{pattern: pattern, summary: summary, code: http.StatusOK, stream: true})
}

// OpenAPI is the server's OpenAPI 3 document: New's routes and those described with Describe.
func (s *Server) OpenAPI() (*openapi3.T, error) {
	s.docOnce.Do(func() { s.doc, s.docErr = buildOpenAPI(append(operations(), s.extra...)) })
	return s.doc, s.docErr
}

// Undocumented are the routes under /api/ registered on s that its OpenAPI document does
// not describe: a test of the command that adds routes keeps it empty.
func (s *Server) Undocumented() ([]string, error) {
	doc, err := s.OpenAPI()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, route := range s.Routes() {
		method, path, _ := strings.Cut(route, " ")
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		if item := doc.Paths.Value(path); item == nil || item.GetOperation(method) == nil {
			out = append(out, route)
		}
	}
	return out, nil
}

// docState is the lazily built document of a Server.
type docState struct {
	docOnce sync.Once
	doc     *openapi3.T
	docErr  error
	extra   []operation
}

func buildOpenAPI(ops []operation) (*openapi3.T, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:   "kropipe promoter API",
			Version: version.Version,
			Description: "Stage status and history to read; promote, rollback, approve, verify, pause and resume to act. " +
				"Every key is camelCase. Actions need Authorization: Bearer <token> when the promoter has a token; " +
				"the token's name is recorded as who asked (Kropipe-Requested-By).",
		},
		Paths:      openapi3.NewPaths(),
		Components: &openapi3.Components{Schemas: openapi3.Schemas{}},
	}
	doc.Components.SecuritySchemes = openapi3.SecuritySchemes{"token": &openapi3.SecuritySchemeRef{Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer").WithDescription("an API token from --token-file; its name is recorded as who asked")}}
	gen := openapi3gen.NewGenerator(
		openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{ExportComponentSchemas: true}),
		openapi3gen.CreateTypeNameGenerator(typeName),
		openapi3gen.SchemaCustomizer(strict),
	)
	schema := func(v any) (*openapi3.SchemaRef, error) {
		if v == nil {
			return openapi3.NewObjectSchema().NewRef(), nil
		}
		return gen.NewSchemaRefForValue(v, doc.Components.Schemas)
	}
	errRef, err := schema(Error{})
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		method, path, _ := strings.Cut(op.pattern, " ")
		answer, err := schema(op.answer)
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", op.pattern, err)
		}
		o := openapi3.NewOperation()
		o.Summary = op.summary
		o.OperationID = operationID(method, path)
		ok := openapi3.NewResponse().WithDescription(op.summary).WithJSONSchemaRef(answer)
		if op.stream {
			ok = openapi3.NewResponse().WithDescription(op.summary).WithContent(openapi3.Content{
				"text/event-stream": openapi3.NewMediaType().WithSchema(openapi3.NewStringSchema()),
			})
		}
		if op.text {
			ok.Content["text/plain"] = openapi3.NewMediaType().WithSchema(openapi3.NewStringSchema())
		}
		o.Responses = openapi3.NewResponses(
			openapi3.WithStatus(op.code, &openapi3.ResponseRef{Value: ok}),
			openapi3.WithName("default", openapi3.NewResponse().WithDescription("the error, in a sentence saying what to do").WithJSONSchemaRef(errRef)),
		)
		if strings.Contains(path, "{name}") {
			o.AddParameter(openapi3.NewPathParameter("name").WithDescription("a stage or release group").WithSchema(openapi3.NewStringSchema()))
		}
		for _, p := range op.query {
			o.AddParameter(p)
		}
		if method == http.MethodPost {
			o.Security = &openapi3.SecurityRequirements{{"token": {}}}
		}
		if op.body != nil {
			body, err := schema(op.body)
			if err != nil {
				return nil, fmt.Errorf("schema of %s's body: %w", op.pattern, err)
			}
			o.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithJSONSchemaRef(body)}
		}
		doc.AddOperation(path, method, o)
	}
	return doc, nil
}

// typeName names a component by its package and type (StageStatus, APIHistory), so types of
// the same name in two packages do not collide.
func typeName(t reflect.Type) string {
	if t.Name() == "" {
		return "Object"
	}
	pkg := t.PkgPath()
	pkg = pkg[strings.LastIndex(pkg, "/")+1:]
	if pkg == "api" {
		return t.Name()
	}
	return strings.ToUpper(pkg[:1]) + pkg[1:] + t.Name()
}

func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.Split(path, "/") {
		part = strings.Trim(part, "{}")
		if part == "" || part == "api" || part == "v1" {
			continue
		}
		part = strings.NewReplacer(".", "", "-", "").Replace(part)
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// strict makes every struct's schema closed (a key the schema does not name, such as a Go
// field spelled without a json tag, fails validation) and requires the keys Go always
// writes (no omitempty or omitzero); slices and maps may be null, as Go writes nil ones.
func strict(_ string, t reflect.Type, _ reflect.StructTag, s *openapi3.Schema) error {
	switch t.Kind() {
	case reflect.Slice, reflect.Map:
		s.Nullable = true
	case reflect.Struct:
		if s.Properties == nil {
			return nil
		}
		f := false
		s.AdditionalProperties = openapi3.AdditionalProperties{Has: &f}
		s.Required = requiredKeys(t)
	}
	return nil
}

func requiredKeys(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && !ok {
			out = append(out, requiredKeys(f.Type)...)
			continue
		}
		if !f.IsExported() || !ok || name == "-" || strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			continue
		}
		out = append(out, name)
	}
	return out
}

// serveOpenAPI answers the document.
func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	doc, err := s.OpenAPI()
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("building the OpenAPI document: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(doc)
}
