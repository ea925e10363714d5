package webhook

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse reads arbitrary notification bodies: Parse must not panic, and every push
// it returns must name a repository (that is all a notification can cause: an early
// poll of that repository).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"image": "127.0.0.1:5000/team/frontend:1.2.2"}`))
	f.Add([]byte(`{"events": [{"action": "push", "target": {"repository": ""}}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pushes, err := Parse(body)
		if err != nil {
			return
		}
		for _, p := range pushes {
			if p.Repository == "" {
				t.Fatalf("push without a repository from %q: %+v", body, pushes)
			}
		}
	})
}
