package main

import (
	"os"
	"strings"
	"testing"
)

func TestGate(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		wantFailed bool
		wantOut    []string
		notOut     []string
	}{
		{
			name: "ModuleReachedFails", file: "testdata/module.json", wantFailed: true,
			wantOut: []string{"FAIL: 1 vulnerabilities reached in modules", "GO-2026-6505 go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc@v1.40.0, fixed in v1.45.0", "WARNING: 2 Go standard library"},
			// Imported but never called: not reported.
			notOut: []string{"GO-2026-0001"},
		},
		{
			name: "StandardLibraryOnlyWarnsNamingTheRelease", file: "testdata/stdlib.json",
			wantOut: []string{"WARNING: 2 Go standard library vulnerabilities reached with go1.26.8; fixed by Go 1.26.10", "GO-2026-6809 crypto/x509.Verify (fixed in go1.26.10)", "GO-2026-6617 net/http.Close (fixed in go1.26.9)", "no module vulnerability reached"},
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
			failed, err := gate(f, &out)
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
	if _, err := gate(strings.NewReader(""), &out); err == nil || !strings.Contains(err.Error(), "no govulncheck report") {
		t.Fatalf("err = %v", err)
	}
}
