package gitwrite

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// member is a group member's change as the engine builds it.
func member(stage, app, value, old string) Change {
	return Change{
		Stage: stage, File: strings.Replace(stage, "-", "/", 1) + "/instance.yaml", Key: "spec.values.deployment.tag",
		Image: "registry.example.com/team/" + app, Tag: value, Value: value, Expect: old,
		Group: "develop/shop", GroupFreight: "set-1", Label: app,
	}
}

func TestApply_GroupSetIsOneCommitChangingEveryMembersFile(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	before := f.head(t)
	res, err := r.Apply(context.Background(), "main",
		promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2"), // a stage outside the group, same push
		member("develop-frontend", "frontend", "1.2.2", "1.2.1"),
		member("develop-backend", "backend", "2.1.0", "1.2.1"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if res[1].Commit == "" || res[1].Commit != res[2].Commit || res[0].Commit == res[1].Commit {
		t.Fatalf("results %+v", res)
	}
	if got := f.git(t, "rev-list", "--count", before+"..main"); got != "2" {
		t.Fatalf("%s commits, want the stage's and the set's", got)
	}
	want := `Promote shop: frontend 1.2.1 → 1.2.2, backend 1.2.1 → 2.1.0

Group develop/shop promotes a set of 2, in one commit:
- develop-frontend: spec.values.deployment.tag in develop/frontend/instance.yaml is set to "1.2.2" (registry.example.com/team/frontend:1.2.2).
- develop-backend: spec.values.deployment.tag in develop/backend/instance.yaml is set to "2.1.0" (registry.example.com/team/backend:2.1.0).

Kropipe-Stage: develop-frontend
Kropipe-Image: registry.example.com/team/frontend:1.2.2
Kropipe-Value: 1.2.2
Kropipe-Previous: 1.2.1
Kropipe-Stage: develop-backend
Kropipe-Image: registry.example.com/team/backend:2.1.0
Kropipe-Value: 2.1.0
Kropipe-Previous: 1.2.1
Kropipe-Group: develop/shop
Kropipe-Freight: set-1`
	if got := f.git(t, "log", "-1", "--format=%B", "main"); got != want {
		t.Fatalf("message:\n%s\nwant:\n%s", got, want)
	}
	// git's own parser sees every member, in order.
	if got := f.git(t, "log", "-1", "--format=%(trailers:key=Kropipe-Stage,valueonly,separator=%x2C)", "main"); got != "develop-frontend,develop-backend" {
		t.Fatalf("git trailers = %q", got)
	}
	// Each member is a one-line edit; nothing else changes.
	diff := f.git(t, "diff", "--numstat", "main~1", "main")
	if diff != "1\t1\tdevelop/backend/instance.yaml\n1\t1\tdevelop/frontend/instance.yaml" {
		t.Fatalf("diff:\n%s", diff)
	}

	recs, err := r.History(context.Background(), "main", "")
	if err != nil {
		t.Fatal(err)
	}
	var group, fe Record
	for _, rec := range recs {
		switch rec.Stage {
		case "develop/shop":
			group = rec
		case "develop-frontend":
			fe = rec
		}
	}
	if group.Value != "develop-frontend=1.2.2, develop-backend=2.1.0" || group.Previous != "develop-frontend=1.2.1, develop-backend=1.2.1" || group.Freight != "set-1" || len(group.Members) != 2 || group.Kind != Promote {
		t.Fatalf("group record %+v", group)
	}
	if fe.Value != "1.2.2" || fe.Previous != "1.2.1" || fe.Group != "develop/shop" || fe.Commit != group.Commit {
		t.Fatalf("member record %+v", fe)
	}
}

func TestApply_GroupMemberFailingKeepsTheWholeSetOut(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	before, pushes := f.head(t), f.srv.Pushes("gitops.git")
	bad := member("develop-backend", "backend", "2.1.0", "1.2.1")
	bad.Key = "spec.values.deployment.nope"
	res, err := r.Apply(context.Background(), "main", member("develop-frontend", "frontend", "1.2.2", "1.2.1"), bad)
	if err == nil || !errors.Is(res[0].Err, ErrSetIncomplete) || res[1].Err == nil || res[0].Commit != "" {
		t.Fatalf("err %v, results %+v", err, res)
	}
	if !strings.Contains(res[0].Err.Error(), `member "develop-backend" of group "develop/shop"`) {
		t.Fatalf("error %q does not name the failing member", res[0].Err)
	}
	if f.head(t) != before || f.srv.Pushes("gitops.git") != pushes {
		t.Fatal("a partial set was pushed")
	}
}

func TestApply_GroupRollbackRejectsTheChangedMembers(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	fe, be := member("develop-frontend", "frontend", "1.2.0", "1.2.1"), member("develop-backend", "backend", "1.2.1", "1.2.1")
	fe.Kind, be.Kind = Rollback, Rollback
	if _, err := r.Apply(context.Background(), "main", fe, be); err != nil {
		t.Fatal(err)
	}
	if got := f.git(t, "log", "-1", "--format=%s", "main"); got != "Roll back shop: frontend 1.2.1 → 1.2.0" {
		t.Fatalf("subject %q", got)
	}
	recs, err := r.History(context.Background(), "main", "develop-frontend")
	if err != nil || len(recs) != 1 || recs[0].Kind != Rollback || recs[0].Rejected != "1.2.1" {
		t.Fatalf("records %+v, %v", recs, err)
	}
	kept, _ := r.History(context.Background(), "main", "develop-backend")
	if len(kept) != 1 || !kept[0].Kept || kept[0].Rejected != "" {
		t.Fatalf("the member that kept its value: records %+v", kept)
	}
	if _, ok := PreviousPromotion(kept, "1.2.1"); ok {
		t.Fatal("a kept value counts as a promotion")
	}
}

func TestApply_GroupSubjectTemplate(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	fe, be := member("develop-frontend", "frontend", "1.2.2", "1.2.1"), member("develop-backend", "backend", "1.2.1", "1.2.1")
	fe.SubjectTemplate = "Release {{.Group}} ({{len .Members}} services): {{.Changes}}"
	if _, err := r.Apply(context.Background(), "main", fe, be); err != nil {
		t.Fatal(err)
	}
	if got := f.git(t, "log", "-1", "--format=%s", "main"); got != "Release develop/shop (2 services): frontend 1.2.1 → 1.2.2" {
		t.Fatalf("subject %q", got)
	}
	bad := member("develop-frontend", "frontend", "1.2.3", "1.2.2")
	bad.SubjectTemplate = "{{.Nope}}"
	res, err := r.Apply(context.Background(), "main", bad, be)
	if err == nil || !errors.Is(res[0].Err, ErrInvalidChange) {
		t.Fatalf("a template naming no field: %v %+v", err, res)
	}
}

// Who asked for a manual change goes into its commit once (Kropipe-Requested-By), for a stage
// alone and for a group's set, and History gives it back on every record of the commit.
func TestApply_RequesterIsATrailerHistoryReadsBack(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	ctx := context.Background()
	alone := promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.2")
	alone.RequestedBy = "alice"
	fe, be := member("develop-frontend", "frontend", "1.2.0", "1.2.1"), member("develop-backend", "backend", "2.1.0", "1.2.1")
	fe.Kind, be.Kind = Rollback, Rollback
	fe.RequestedBy, be.RequestedBy = "ci-bot", "ci-bot"
	if _, err := r.Apply(ctx, "main", alone); err != nil {
		t.Fatal(err)
	}
	if got := f.git(t, "log", "-1", "--format=%(trailers:key=Kropipe-Requested-By,valueonly)", "main"); got != "alice" {
		t.Fatalf("git reads the stage's requester as %q", got)
	}
	if _, err := r.Apply(ctx, "main", fe, be); err != nil {
		t.Fatal(err)
	}
	if got := f.git(t, "log", "-1", "--format=%(trailers:key=Kropipe-Requested-By,valueonly,separator=%x2C)", "main"); got != "ci-bot" {
		t.Fatalf("git reads the group's requester as %q (once, for the set)", got)
	}
	for _, tc := range []struct{ stage, want string }{
		{"staging-frontend", "alice"}, {"develop-frontend", "ci-bot"}, {"develop-backend", "ci-bot"}, {"develop/shop", "ci-bot"},
	} {
		recs, err := r.History(ctx, "main", tc.stage)
		if err != nil || len(recs) == 0 || recs[0].RequestedBy != tc.want {
			t.Errorf("%s: records %+v, %v; want requested by %s", tc.stage, recs, err, tc.want)
		}
	}
	bad := promote("staging-frontend", "staging/frontend/instance.yaml", "1.2.3")
	bad.RequestedBy = "eve\nKropipe-Rejected: 1.2.2"
	if _, err := r.Apply(ctx, "main", bad); !errors.Is(err, ErrInvalidChange) {
		t.Fatalf("a requester with a line break: %v", err)
	}
}
