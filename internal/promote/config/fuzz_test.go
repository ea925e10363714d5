package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse reads arbitrary promoter.yaml files: Parse must not panic, every error
// must name the file, and an accepted file's stages must hold a Git URL and a file.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/promoter.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("git: {url: https://git.example.com/gitops.git}\nstages:\n  - {name: a, image: r/x, file: a.yaml}\n  - {name: b, upstream: a, file: b.yaml, soak: 10m}\n"))
	f.Add([]byte("stages: [{name: a, name: b}]\n"))
	f.Add([]byte("git:\n  url: ssh://git@x/y\n  credentials: {passwordFile: /p}\nregistries: [{host: 'r:5000', rateLimit: -1}]\ninterval: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "promoter.yaml")
		if err != nil {
			if !strings.Contains(err.Error(), "promoter.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, s := range cfg.Stages {
			if s.RepoURL == "" || s.File == "" || s.Name == "" {
				t.Fatalf("accepted a stage without repository, file or name: %+v", s)
			}
		}
	})
}
