package gitwrite

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

const (
	signer     = "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.2.2 (issuer https://token.actions.githubusercontent.com)"
	keySigner  = "key SHA256:3q2+7w"
	provDigest = "sha256:" + "b" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"
)

var prov = Provenance{Builder: "https://github.com/actions/runner/github-hosted", Source: "https://github.com/org/repo", Digest: provDigest}

// A promotion of a signed image records who signed it (one Kropipe-Signed-By per policy) and
// the provenance checked, and History reads them back.
func TestApply_SignedPromotionRecordsSignerAndProvenance(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	c := promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")
	c.SignedBy = []string{signer, keySigner}
	c.Provenance = []Provenance{prov}
	if _, err := r.Apply(context.Background(), "main", c); err != nil {
		t.Fatal(err)
	}
	want := `Promote image from 1.2.1 to 1.2.2

Stage develop-frontend promotes registry.example.com/team/frontend:1.2.2@sha256:` + strings.Repeat("a", 64) + `: spec.values.deployment.tag in develop/frontend/instance.yaml is set to "1.2.2".

Kropipe-Stage: develop-frontend
Kropipe-Image: registry.example.com/team/frontend:1.2.2@sha256:` + strings.Repeat("a", 64) + `
Kropipe-Value: 1.2.2
Kropipe-Previous: 1.2.1
Kropipe-Signed-By: ` + signer + `
Kropipe-Signed-By: ` + keySigner + `
Kropipe-Provenance: builder=https://github.com/actions/runner/github-hosted source=https://github.com/org/repo digest=` + provDigest + `
Kropipe-Freight: f-1.2.2`
	if got := f.git(t, "log", "-1", "--format=%B", "main"); got != want {
		t.Fatalf("message:\n%s\nwant:\n%s", got, want)
	}
	// git's own parser reads both signers.
	if got := f.git(t, "log", "-1", "--format=%(trailers:key=Kropipe-Signed-By,valueonly,separator=%x7C)", "main"); got != signer+"|"+keySigner {
		t.Fatalf("git trailers = %q", got)
	}
	recs, err := open(t, f.url).History(context.Background(), "main", "develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !slices.Equal(recs[0].SignedBy, []string{signer, keySigner}) || !slices.Equal(recs[0].Provenance, []Provenance{prov}) {
		t.Fatalf("record %+v", recs)
	}
}

// A group's set commit carries each changed member's signers next to its other trailers, and
// History gives each member's record its own.
func TestApply_GroupSetRecordsEachMembersSigner(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	fe := member("develop-frontend", "frontend", "1.2.2", "1.2.1")
	fe.SignedBy, fe.Provenance = []string{signer}, []Provenance{prov}
	be := member("develop-backend", "backend", "2.1.0", "1.2.1")
	be.SignedBy = []string{keySigner}
	if _, err := r.Apply(context.Background(), "main", fe, be); err != nil {
		t.Fatal(err)
	}
	want := `Kropipe-Stage: develop-frontend
Kropipe-Image: registry.example.com/team/frontend:1.2.2
Kropipe-Value: 1.2.2
Kropipe-Previous: 1.2.1
Kropipe-Signed-By: ` + signer + `
Kropipe-Provenance: ` + prov.String() + `
Kropipe-Stage: develop-backend
Kropipe-Image: registry.example.com/team/backend:2.1.0
Kropipe-Value: 2.1.0
Kropipe-Previous: 1.2.1
Kropipe-Signed-By: ` + keySigner + `
Kropipe-Group: develop/shop
Kropipe-Freight: set-1`
	msg := f.git(t, "log", "-1", "--format=%B", "main")
	if _, trailers, _ := strings.Cut(msg, "\n\nKropipe-Stage"); "Kropipe-Stage"+trailers != want {
		t.Fatalf("message:\n%s\nwant trailers:\n%s", msg, want)
	}
	recs, err := open(t, f.url).History(context.Background(), "main", "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Record{}
	for _, rec := range recs {
		got[rec.Stage] = rec
	}
	if r := got["develop-frontend"]; !slices.Equal(r.SignedBy, []string{signer}) || !slices.Equal(r.Provenance, []Provenance{prov}) {
		t.Errorf("frontend record %+v", r)
	}
	if r := got["develop-backend"]; !slices.Equal(r.SignedBy, []string{keySigner}) || len(r.Provenance) != 0 {
		t.Errorf("backend record %+v", r)
	}
	if m := got["develop/shop"].Members; len(m) != 2 || !slices.Equal(m[1].SignedBy, []string{keySigner}) {
		t.Errorf("group members %+v", m)
	}
}

// A signer that would break the trailer block (a certificate identity with a line break) is
// refused, naming the stage, and nothing is committed.
func TestApply_SignerWithALineBreakIsRefused(t *testing.T) {
	f := newFixture(t)
	r := open(t, f.url)
	before := f.head(t)
	c := promote("develop-frontend", "develop/frontend/instance.yaml", "1.2.2")
	c.SignedBy = []string{"evil\n\nKropipe-Stage: prod"}
	res, _ := r.Apply(context.Background(), "main", c)
	if !errors.Is(res[0].Err, ErrInvalidChange) || !strings.Contains(res[0].Err.Error(), "develop-frontend") {
		t.Fatalf("err = %v", res[0].Err)
	}
	if f.head(t) != before {
		t.Fatal("a commit was made")
	}
}

func TestParseProvenance_ReadsWhatStringWrites(t *testing.T) {
	if p, ok := ParseProvenance(prov.String()); !ok || p != prov {
		t.Fatalf("ParseProvenance(%q) = %+v, %v", prov.String(), p, ok)
	}
	for _, bad := range []string{"", "builder=a source=b", "source=a builder=b digest=c", "builder=a source=b digest=c extra"} {
		if _, ok := ParseProvenance(bad); ok {
			t.Errorf("ParseProvenance(%q) accepted", bad)
		}
	}
}
