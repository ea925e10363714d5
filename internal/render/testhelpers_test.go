package render

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

var (
	kroDirOnce sync.Once
	kroDir     string
	kroDirErr  error
)

// kroExamples returns kro's own examples/kubernetes folder from the pinned module, downloaded
// into the module cache (never copied into this repository).
func kroExamples(t testing.TB) string {
	t.Helper()
	kroDirOnce.Do(func() {
		out, err := exec.Command("go", "mod", "download", "-json", "github.com/kubernetes-sigs/kro").Output()
		if err != nil {
			kroDirErr = err
			return
		}
		var info struct{ Dir, Version string }
		if kroDirErr = json.Unmarshal(out, &info); kroDirErr == nil {
			kroDir = filepath.Join(info.Dir, "examples", "kubernetes")
		}
	})
	if kroDirErr != nil {
		t.Fatalf("go mod download kro: %v", kroDirErr)
	}
	return kroDir
}

// compileUnlimited rebuilds def's graph keeping kro's own programs (no cost limit).
func compileUnlimited(t *testing.T, e *Engine, def *Definition) *Definition {
	t.Helper()
	srcs := e.sources[def.InstanceGVK]
	rgd, err := decodeRGD(srcs[0].doc)
	if err != nil {
		t.Fatal(err)
	}
	builderDef, err := compile(rgd, def.File, e.set, 0)
	if err != nil {
		t.Fatal(err)
	}
	return builderDef
}

func equalJSON(t *testing.T, a, b interface{}) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
