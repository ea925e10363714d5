package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var today = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestGate(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		exceptions []exception
		wantFailed bool
		wantOut    []string
		notOut     []string
	}{
		{
			name: "ModuleReachedFails", file: "testdata/module.json", wantFailed: true,
			wantOut: []string{"FAIL: 1 vulnerabilities reached in modules", "GO-2026-6505 go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc@v1.40.0, fixed in v1.45.0", "FAIL: 2 Go standard library"},
			// Imported but never called: not reported.
			notOut: []string{"GO-2026-0001"},
		},
		{
			name: "StandardLibraryFailsNamingTheRelease", file: "testdata/stdlib.json", wantFailed: true,
			wantOut: []string{"FAIL: 2 Go standard library vulnerabilities reached with go1.26.8; upgrade the toolchain to Go 1.26.10 or newer", "GO-2026-6809 crypto/x509.Verify (fixed in go1.26.10)", "GO-2026-6617 net/http.Close (fixed in go1.26.9)"},
			notOut:  []string{"no vulnerability reached"},
		},
		{
			name: "AnExceptionInForceAcceptsOneWithItsReason", file: "testdata/stdlib.json", wantFailed: true,
			exceptions: []exception{{ID: "GO-2026-6617", Reason: "no HTTP/2 server", Until: date{today.Add(24 * time.Hour)}}},
			wantOut:    []string{"accepted: GO-2026-6617 net/http.Close: no HTTP/2 server (accepted until 2026-12-08)", "FAIL: 1 Go standard library", "GO-2026-6809"},
		},
		{
			name: "EveryFindingAcceptedPasses", file: "testdata/stdlib.json",
			exceptions: []exception{
				{ID: "GO-2026-6617", Reason: "r1", Until: date{today.Add(24 * time.Hour)}},
				{ID: "GO-2026-6809", Reason: "r2", Until: date{today.Add(24 * time.Hour)}},
			},
			wantOut: []string{"no vulnerability reached with go1.26.8"},
		},
		{
			name: "AnExpiredExceptionFailsAgain", file: "testdata/stdlib.json", wantFailed: true,
			exceptions: []exception{{ID: "GO-2026-6617", Reason: "r", Until: date{today.Add(-time.Hour)}}},
			wantOut:    []string{"FAIL: 2 Go standard library", "the exception for GO-2026-6617 expired on 2026-12-07"},
			notOut:     []string{"accepted:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var out strings.Builder
			failed, err := gate(f, &out, tt.exceptions, today)
			if err != nil {
				t.Fatal(err)
			}
			if failed != tt.wantFailed {
				t.Errorf("failed = %v, want %v\n%s", failed, tt.wantFailed, out.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notOut {
				if strings.Contains(out.String(), w) {
					t.Errorf("report names %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestGate_RefusesAnEmptyReport(t *testing.T) {
	var out strings.Builder
	if _, err := gate(strings.NewReader(""), &out, nil, today); err == nil || !strings.Contains(err.Error(), "no govulncheck report") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadExceptions(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    []string
		wantIDs    int
	}{
		{name: "TheRepositoryFile", yaml: "", wantIDs: -1},
		{name: "Complete", yaml: "exceptions:\n- id: GO-1\n  reason: not reached from a server\n  until: 2027-01-31\n", wantIDs: 1},
		{name: "NoReasonNoDate", yaml: "exceptions:\n- id: GO-1\n", wantErr: []string{"exceptions[0] (GO-1): reason is missing", "exceptions[0] (GO-1): until is missing"}},
		{name: "NoID", yaml: "exceptions:\n- reason: r\n  until: 2027-01-31\n", wantErr: []string{"exceptions[0]: id is missing"}},
		{name: "Twice", yaml: "exceptions:\n- {id: GO-1, reason: r, until: 2027-01-31}\n- {id: GO-1, reason: r, until: 2027-01-31}\n", wantErr: []string{"GO-1 is listed twice"}},
		{name: "NotADate", yaml: "exceptions:\n- {id: GO-1, reason: r, until: soon}\n", wantErr: []string{`until "soon" is not a date`}},
		{name: "UnknownField", yaml: "exceptions:\n- {id: GO-1, reason: r, until: 2027-01-31, owner: me}\n", wantErr: []string{"owner"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "../../../vuln-exceptions.yaml"
			if tt.wantIDs != -1 {
				path = filepath.Join(t.TempDir(), "exc.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exc, err := readExceptions(path)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tt.wantIDs >= 0 && len(exc) != tt.wantIDs {
					t.Fatalf("%d exceptions, want %d", len(exc), tt.wantIDs)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}
