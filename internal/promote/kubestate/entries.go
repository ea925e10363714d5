package kubestate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// entries is a stage.State as its JSON: field (approvals, paused, …) → stage → the stage's
// entry. Every field of stage.State is a map keyed by stage name (TestEntries_
// EveryStateFieldIsKeyedByStage checks it), so splitting, joining, comparing and merging state
// by stage works on every field, a new one included, with no code naming the fields.
type entries map[string]map[string]json.RawMessage

// entriesOf returns st's entries.
func entriesOf(st stage.State) (entries, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	e := entries{}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("state is not a set of maps by stage: %w", err)
	}
	return e, nil
}

// state turns the entries back into a stage.State, every map made (empty when it has no
// entries), as the engine expects of a loaded state.
func (e entries) state() (stage.State, error) {
	var st stage.State
	raw, err := json.Marshal(e)
	if err != nil {
		return st, fmt.Errorf("encode state: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decode state: %w", err)
	}
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Map && f.IsNil() {
			f.Set(reflect.MakeMap(f.Type()))
		}
	}
	return st, nil
}

// set puts the entry of field for stage; a nil one removes it.
func (e entries) set(field, stage string, v json.RawMessage) {
	if v == nil {
		delete(e[field], stage)
		if len(e[field]) == 0 {
			delete(e, field)
		}
		return
	}
	if e[field] == nil {
		e[field] = map[string]json.RawMessage{}
	}
	e[field][stage] = v
}

// only returns the entries of the stages keep says yes to.
func (e entries) only(keep func(stage string) bool) entries {
	out := entries{}
	for field, m := range e {
		for name, v := range m {
			if keep(name) {
				out.set(field, name, v)
			}
		}
	}
	return out
}

// change is one entry to write: v nil removes it.
type change struct {
	field, stage string
	v            json.RawMessage
}

// diff returns what makes from into to, for the stages keep says yes to.
func diff(from, to entries, keep func(stage string) bool) []change {
	var out []change
	fields := map[string]bool{}
	for f := range from {
		fields[f] = true
	}
	for f := range to {
		fields[f] = true
	}
	for f := range fields {
		for name := range from[f] {
			if _, ok := to[f][name]; !ok && keep(name) {
				out = append(out, change{f, name, nil})
			}
		}
		for name, v := range to[f] {
			if keep(name) && !bytes.Equal(from[f][name], v) {
				out = append(out, change{f, name, v})
			}
		}
	}
	return out
}

// apply makes the changes in e.
func (e entries) apply(cs []change) {
	for _, c := range cs {
		e.set(c.field, c.stage, c.v)
	}
}

// merge is a three-way merge by stage: for every entry of every field, the one ours holds if
// ours changed it from base (adding, changing or removing it), else the one theirs holds.
func merge(base, ours, theirs entries) entries {
	out := entries{}
	for field, m := range theirs {
		for name, v := range m {
			out.set(field, name, v)
		}
	}
	out.apply(diff(base, ours, func(string) bool { return true }))
	return out
}
