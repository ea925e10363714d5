package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestStatus_OutputFormats(t *testing.T) {
	e := newEnv(t, devStage)
	flags := []string{"--config", e.config, "--data-dir", e.dataDir, "--log-level", "error"}
	out, err := run(t, append([]string{"status", "-o", "json"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	var sts []stage.Status
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 || sts[0].Name != "develop-frontend" || sts[0].CurrentTag != "1.2.1" {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"status", "-o", "wide"}, flags...)...); err != nil || !strings.Contains(out, "develop-frontend") {
		t.Fatalf("status -o wide: %v\n%s", err, out)
	}
	if _, err := run(t, append([]string{"status", "-o", "yaml"}, flags...)...); err == nil || !strings.Contains(err.Error(), "table, wide, json") {
		t.Fatalf("status -o yaml: %v", err)
	}
}
