package api

import (
	"context"
	"reflect"
	"time"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// fixtureTime is the one instant every filled time field holds.
var fixtureTime = time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)

// filled returns a T with every exported field set, recursively (one element per slice,
// one entry per map, every pointer allocated): encoded, it shows every key the API can send.
func filled[T any]() T {
	var v T
	fill(reflect.ValueOf(&v).Elem(), 0)
	return v
}

func fill(v reflect.Value, depth int) {
	if depth > 8 {
		return
	}
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(fixtureTime))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth+1)
			}
		}
	}
}

// fixture is a Controller whose every answer has every field set: the API's whole JSON
// vocabulary in one place, for the camelCase and schema tests.
type fixture struct{}

func (fixture) Status() []stage.Status { return []stage.Status{fixtureStatus()} }

func fixtureStatus() stage.Status {
	st := filled[stage.Status]()
	st.Name, st.Decision = "develop-frontend", stage.DecisionFailed
	return st
}

func (fixture) StatusOf(name string) (stage.Status, bool) {
	return fixtureStatus(), name == "develop-frontend"
}

func (fixture) History(context.Context, string) ([]gitwrite.Record, error) {
	r := filled[gitwrite.Record]()
	r.Commit = "c0ffee"
	return []gitwrite.Record{r}, nil
}

func (fixture) PullRequestLog(context.Context, string) ([]stage.PullRequest, error) {
	pr := filled[stage.PullRequest]()
	pr.Commit = "c0ffee"
	return []stage.PullRequest{pr}, nil
}

func (fixture) Promote(context.Context, string, string, ...stage.ActionOption) (stage.Outcome, error) {
	return filled[stage.Outcome](), nil
}

func (fixture) Rollback(context.Context, string, string, ...stage.ActionOption) (stage.Outcome, error) {
	return filled[stage.Outcome](), nil
}

func (fixture) PromoteMember(context.Context, string, string, ...stage.ActionOption) (stage.Outcome, error) {
	return filled[stage.Outcome](), nil
}

func (fixture) RollbackMember(context.Context, string, string, ...stage.ActionOption) (stage.Outcome, error) {
	return filled[stage.Outcome](), nil
}

func (fixture) Approve(context.Context, string, string, ...stage.ActionOption) (string, error) {
	return "1.2.2", nil
}

func (fixture) Pause(context.Context, string, ...stage.ActionOption) error  { return nil }
func (fixture) Resume(context.Context, string, ...stage.ActionOption) error { return nil }
func (fixture) Passes() int                                                 { return 1 }

func (fixture) Reverify(context.Context, string) (string, error) { return "1.2.2", nil }

func (fixture) Tags(context.Context, string) ([]warehouse.TagVerdict, error) {
	return []warehouse.TagVerdict{filled[warehouse.TagVerdict]()}, nil
}

func (fixture) Attestations(context.Context, string) (stage.Attestations, error) {
	return filled[stage.Attestations](), nil
}

func (fixture) Approvals(context.Context, string) ([]stage.Approval, error) {
	return []stage.Approval{filled[stage.Approval]()}, nil
}
