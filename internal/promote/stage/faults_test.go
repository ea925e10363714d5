package stage

import (
	"context"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

func TestReconcile_GitAuthFailureFailsTheStageWithoutTheSecret(t *testing.T) {
	f := newFixture(t, gitserver.WithBasicAuth("kropipe", "s3cret"))
	f.reg.push(t, "team/frontend", "1.2.2")
	s := f.spec("develop-frontend", "develop/frontend", "frontend")
	s.RepoURL = strings.Replace(f.url, "http://", "http://kropipe:wr0ng@", 1)
	e := f.engine([]Spec{s})
	if err := e.Reconcile(context.Background()); err == nil {
		t.Fatal("Reconcile succeeded with a wrong password")
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.Decision != DecisionFailed || !strings.Contains(st.Error, `stage "develop-frontend"`) || strings.Contains(st.Error, "wr0ng") {
		t.Fatalf("status %+v", st)
	}

	// The right credentials, given as options rather than in the URL, work.
	s.RepoURL = f.url
	f.dataDir = t.TempDir()
	e = f.engine([]Spec{s}, WithGit(f.dataDir, gitwrite.WithCredentials(gitwrite.Credentials{Username: "kropipe", Password: "s3cret"})))
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.subjects(); len(got) != 1 {
		t.Fatalf("commits %q", got)
	}
}

func TestReconcile_PushRejectedByHookFailsTheStagesAndWritesNothing(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	if err := f.git.InstallHook("gitops.git", "pre-receive", "#!/bin/sh\necho 'branch main is frozen for the release'\nexit 1\n"); err != nil {
		t.Fatal(err)
	}
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend"), f.spec("prod-frontend", "prod/frontend", "frontend")})
	if err := e.Reconcile(context.Background()); err == nil {
		t.Fatal("Reconcile succeeded against a refusing hook")
	}
	for _, name := range []string{"develop-frontend", "prod-frontend"} {
		st := mustStatus(t, e, name)
		if st.Decision != DecisionFailed || !strings.Contains(st.Error, "frozen for the release") {
			t.Errorf("%s: %+v", name, st)
		}
	}
	if got := f.subjects(); len(got) != 0 {
		t.Fatalf("commits %q", got)
	}
	// Once the hook is gone the next pass lands both, once each.
	if err := f.git.RemoveHook("gitops.git", "pre-receive"); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.subjects(); len(got) != 2 {
		t.Fatalf("commits %q", got)
	}
}
