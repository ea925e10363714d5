package stage

import (
	"context"
	"maps"
	"strings"
	"testing"

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
