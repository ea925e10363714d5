package stage

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// An idle pass (nothing new in the registry) costs at most one request per repository,
// however many stages and selections read it: the tag list. Pings are made once per
// registry host, not per repository.
func TestReconcile_IdlePassCostsOneRequestPerRepository(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	f.reg.push(t, "team/backend", "1.2.2")
	anyRelease := f.spec("prod-frontend", "prod/frontend", "frontend")
	anyRelease.Constraint = "*"
	lexical := f.spec("staging-frontend", "staging/frontend", "frontend")
	lexical.Strategy, lexical.Constraint = "lexical", ""
	specs := []Spec{
		f.spec("develop-frontend", "develop/frontend", "frontend"),
		anyRelease, lexical,
		f.spec("develop-backend", "develop/backend", "backend"),
	}
	e := f.engine(specs)
	f.reg.requests()
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := f.reg.requests()
	if first["ping"] != 1 {
		t.Errorf("first pass: %d pings to one registry host, want 1 (requests %v)", first["ping"], first)
	}
	if got := f.subjects(); len(got) != 3 {
		t.Fatalf("commits %q, want one per stage but prod (at 2.0.0 already)", got)
	}
	for pass := 2; pass <= 3; pass++ {
		if err := e.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := f.reg.requests()
		want := map[string]int{"tags/list": 2}
		if !maps.Equal(got, want) {
			t.Errorf("idle pass %d over 4 stages of 2 repositories: requests %v, want %v", pass, got, want)
		}
	}
}

// A tag pushed again after a pass saw it (a moved tag) is written with the digest it
// points to when the commit is made, not the one an earlier pass proved.
func TestReconcile_MovedTagIsWrittenWithItsNewDigest(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.2")
	s := f.spec("develop-frontend", "develop/frontend", "frontend")
	s.AutoPromote = false
	e := f.engine([]Spec{s})
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	f.reg.push(t, "team/frontend", "1.2.2") // new content, same tag
	moved, err := remote.Head(mustTag(t, f.reg.image("team/frontend")+":1.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Approve(ctx, "develop-frontend", "1.2.2"); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	body, err := gitOutput(f, "log", "-1", "--format=%B", "main")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, moved.Digest.String()) {
		t.Fatalf("commit does not name the moved tag's digest %s:\n%s", moved.Digest, body)
	}
}

func mustTag(t *testing.T, ref string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// manyStages is a fixture with n stages develop-svcNNN, each in its own folder of one
// repository and reading its own image team/svcNNN at 1.2.2, already promoted by a first
// pass; prod-svc000 follows develop-svc000.
func manyStages(t testing.TB, n int) (*fixture, *Engine) {
	t.Helper()
	seed := t.TempDir()
	for i := 0; i < n; i++ {
		for _, env := range []string{"develop", "prod"} {
			dir := filepath.Join(seed, env, fmt.Sprintf("svc%03d", i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := "spec:\n  values:\n    deployment:\n      # bumped by the promoter\n      tag: \"1.2.1\"\n"
			if err := os.WriteFile(filepath.Join(dir, "instance.yaml"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := newFixture(t)
	if _, err := f.git.NewBareRepo(context.Background(), "many.git", seed); err != nil {
		t.Fatal(err)
	}
	f.url = f.git.URL("many.git")
	specs := make([]Spec, 0, n+1)
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("svc%03d", i)
		f.reg.push(t, "team/"+svc, "1.2.2")
		specs = append(specs, f.spec("develop-"+svc, "develop/"+svc, svc))
	}
	prod := f.spec("prod-svc000", "prod/svc000", "svc000")
	prod.Upstream = "develop-svc000"
	specs = append(specs, prod)
	e := f.engine(specs)
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f, e
}

// A registry notification runs a pass over the notified repository's stages and their
// downstream only: the other stages' repositories get no request and their status is
// not rechecked.
func TestReconcileKicked_NotificationRunsOnlyTheNotifiedRepositorysStages(t *testing.T) {
	// The notification's rechecks would add svc000 to whichever pass comes next (under -race
	// one can fire before the notified pass records its promotion): this test counts passes.
	defer func(rechecks []time.Duration) { NotifyRechecks = rechecks }(NotifyRechecks)
	NotifyRechecks = nil
	f, e := manyStages(t, 20)
	f.reg.push(t, "team/svc000", "1.2.3")
	f.reg.repositoryRequests()
	f.clock.Step(time.Minute)
	before, _ := e.StatusOf("develop-svc007")

	stages := e.Notify(f.reg.image("team/svc000"))
	if !slices.Equal(stages, []string{"develop-svc000"}) {
		t.Fatalf("Notify = %q, want [develop-svc000]", stages)
	}
	<-e.Kicks()
	if err := e.ReconcileKicked(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.reg.repositoryRequests(); len(got) != 1 || got["team/svc000"] == 0 {
		t.Errorf("requests by repository: %v, want team/svc000's only", got)
	}
	if st, _ := e.StatusOf("develop-svc000"); st.CurrentTag != "1.2.3" {
		t.Errorf("develop-svc000 at %q, want 1.2.3", st.CurrentTag)
	}
	// The downstream stage is decided in the same pass (here it takes the 1.2.2 its
	// upstream verified in the first pass).
	if st, _ := e.StatusOf("prod-svc000"); !st.CheckedAt.Equal(f.clock.Now()) {
		t.Errorf("prod-svc000: checked %s (%s), want checked by the notified pass", st.CheckedAt, st.Reason)
	}
	if after, _ := e.StatusOf("develop-svc007"); !after.CheckedAt.Equal(before.CheckedAt) {
		t.Errorf("develop-svc007 was rechecked by svc000's notification")
	}

	// The promotion asks for a pass over what it reaches downstream (decided before it
	// landed), again on svc000's repository only.
	ctx := context.Background()
	<-e.Kicks()
	if err := e.ReconcileKicked(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.reg.repositoryRequests(); len(got) != 1 || got["team/svc000"] == 0 {
		t.Errorf("the follow-up pass: requests by repository: %v, want team/svc000's only", got)
	}

	// An action (here a resume) asks for a pass over its stage and what it reaches only.
	if err := e.Pause(ctx, "develop-svc003"); err != nil {
		t.Fatal(err)
	}
	if err := e.Resume(ctx, "develop-svc003"); err != nil {
		t.Fatal(err)
	}
	<-e.Kicks()
	if err := e.ReconcileKicked(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.reg.repositoryRequests(); len(got) != 1 || got["team/svc003"] == 0 {
		t.Errorf("after a resume, requests by repository: %v, want team/svc003's only", got)
	}
}
