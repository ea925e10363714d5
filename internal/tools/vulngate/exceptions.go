package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// exception accepts one reached vulnerability for a while, for a reason someone wrote down:
// the gate is the place a known risk is argued, not silenced.
type exception struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
	Until  date   `json:"until"`
}

// date is a YAML date (2027-01-31): an exception ends at the start of that day, UTC.
type date struct{ time.Time }

func (d *date) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return fmt.Errorf("until %q is not a date like 2027-01-31", s)
	}
	d.Time = t
	return nil
}

// readExceptions reads the exceptions file; every entry needs an id, a reason and a date.
func readExceptions(path string) ([]exception, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Exceptions []exception `json:"exceptions"`
	}
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	seen := map[string]bool{}
	for i, e := range f.Exceptions {
		switch {
		case e.ID == "":
			errs = append(errs, fmt.Errorf("%s: exceptions[%d]: id is missing (the OSV id, e.g. GO-2026-6599)", path, i))
		case seen[e.ID]:
			errs = append(errs, fmt.Errorf("%s: exceptions[%d]: %s is listed twice", path, i, e.ID))
		}
		seen[e.ID] = true
		if strings.TrimSpace(e.Reason) == "" {
			errs = append(errs, fmt.Errorf("%s: exceptions[%d] (%s): reason is missing: say why it is not exploitable here", path, i, e.ID))
		}
		if e.Until.IsZero() {
			errs = append(errs, fmt.Errorf("%s: exceptions[%d] (%s): until is missing: give the date to look at it again", path, i, e.ID))
		}
	}
	return f.Exceptions, errors.Join(errs...)
}

func findException(exc []exception, id string) (exception, bool) {
	for _, e := range exc {
		if e.ID == id {
			return e, true
		}
	}
	return exception{}, false
}
