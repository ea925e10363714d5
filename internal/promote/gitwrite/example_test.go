package gitwrite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

// A promotion, then a rollback found from history, against a throwaway server: the
// shape the stage engine and `promoter demo` use.
func ExampleRepo_Apply() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(tmp)

	seed := filepath.Join(tmp, "seed")
	_ = os.MkdirAll(filepath.Join(seed, "develop/frontend"), 0o755)
	_ = os.WriteFile(filepath.Join(seed, "develop/frontend/instance.yaml"),
		[]byte("spec:\n  values:\n    deployment:\n      # bumped by the promoter\n      tag: \"1.2.1\"\n"), 0o644)
	srv, _ := gitserver.Start(ctx, filepath.Join(tmp, "srv"))
	defer srv.Close()
	_, _ = srv.NewBareRepo(ctx, "gitops.git", seed)

	repo, err := gitwrite.Open(ctx, filepath.Join(tmp, "data"), srv.URL("gitops.git"),
		gitwrite.WithAuthor("kropipe", "kropipe@example.com"))
	if err != nil {
		fmt.Println(err)
		return
	}
	change := gitwrite.Change{
		Stage: "develop-frontend", File: "develop/frontend/instance.yaml", Key: "spec.values.deployment.tag",
		Image: "registry.example.com/team/frontend", Tag: "1.2.2", FreightID: "f1",
	}
	res, _ := repo.Apply(ctx, "main", change)
	fmt.Println(res[0].Old, "->", res[0].New)

	// Rollback: the previous value comes from the trailers, not from local state.
	history, _ := repo.History(ctx, "main", "develop-frontend")
	prev, _ := gitwrite.PreviousPromotion(history, "1.2.2")
	rollback := change
	rollback.Kind, rollback.Tag = gitwrite.Rollback, prev
	_, _ = repo.Apply(ctx, "main", rollback)
	rejected, _ := repo.Rejected(ctx, "main", "develop-frontend")
	value, _, _ := repo.Read(ctx, "main", change.File, change.Key)
	fmt.Println(value, rejected)
	// Output:
	// 1.2.1 -> 1.2.2
	// 1.2.1 map[1.2.2:true]
}
