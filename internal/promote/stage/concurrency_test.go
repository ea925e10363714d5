package stage

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
)

// copyDir copies the seed so another writer can commit it plus a file of its own.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReconcile_BranchMovedBeforePushStillLandsAndKeepsTheOtherCommit(t *testing.T) {
	var (
		bare  atomic.Pointer[string]
		once  sync.Once
		other = t.TempDir()
	)
	copyDir(t, "testdata/seed", other)
	if err := os.WriteFile(filepath.Join(other, "NOTES.md"), []byte("a human was here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hook := gitserver.WithRequestHook(func(r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			return
		}
		// Someone else's commit lands just before the promoter's first push.
		once.Do(func() {
			if err := gitserver.SeedCommit(context.Background(), *bare.Load(), "main", other, "Add notes"); err != nil {
				t.Errorf("other writer: %v", err)
			}
		})
	})
	f := newFixture(t, hook)
	bare.Store(&f.bare)
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.1")
	backend := f.spec("develop-backend", "develop/backend", "backend")
	backend.Constraint = "^2"
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), backend})
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := f.subjects()
	if len(got) != 3 || got[2] != "Add notes" {
		t.Fatalf("commits %q: want both promotions on top of the other writer's commit", got)
	}
	if f.file("NOTES.md") != "a human was here\n" {
		t.Fatal("the other writer's file was lost")
	}
	if !strings.Contains(f.file("develop/backend/instance.yaml"), `tag: "2.0.1"`) {
		t.Fatal("backend promotion lost")
	}
}
