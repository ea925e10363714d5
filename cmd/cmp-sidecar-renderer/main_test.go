package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets tests run the real binary: re-executed with CMP_SIDECAR_RUN_MAIN=1 the test
// binary behaves exactly as cmp-sidecar, exit code and streams included.
func TestMain(m *testing.M) {
	if os.Getenv("CMP_SIDECAR_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	code           int
}

// run executes cmp-sidecar in dir with args and extra environment.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CMP_SIDECAR_RUN_MAIN=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// writeRepo lays files (path → content) out in a fresh folder; "@webapp" stands for the
// WebApp RGD fixture.
func writeRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	webapp, err := os.ReadFile("testdata/webapp-rgd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		if content == "@webapp" {
			content = string(webapp)
		}
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func wantAll(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%q\ndoes not mention %q", text, w)
		}
	}
}
