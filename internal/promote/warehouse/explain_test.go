package warehouse

import (
	"context"
	"testing"
	"time"
)

// TestExplain_SaysWhyEachTagIsOrIsNotACandidate is the pipeline page's tag table: every
// listed tag, best first, with the reason Discover would (not) take it.
func TestExplain_SaysWhyEachTagIsOrIsNotACandidate(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push(t, "team/svc", testImage(t, t0.Add(time.Hour)), "1.2.1", "1.2.2", "1.2.3", "1.3.0-rc.1", "2.0.0", "1.2.9-debug", "latest")
	w, _ := newTestWarehouse(t)
	got, err := w.Explain(context.Background(), reg.host+"/team/svc",
		Selection{Constraint: "^1.2", IgnoreTags: "debug"}, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	want := []TagVerdict{
		{"2.0.0", false, "outside the constraint ^1.2"},
		{"1.3.0-rc.1", false, "outside the constraint ^1.2"},
		{"1.2.9-debug", false, "matches ignoreTags debug"},
		{"1.2.3", false, "rolled back here: never taken automatically again"},
		{"1.2.2", true, "within ^1.2; the highest is taken"},
		{"1.2.1", true, "within ^1.2; the highest is taken"},
		{"latest", false, "not a version ([v]MAJOR.MINOR.PATCH)"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d verdicts %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("verdict %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// Discover agrees: the best candidate Explain lists is the one it takes.
	f, _, err := w.Discover(context.Background(), reg.host+"/team/svc", Selection{Constraint: "^1.2", IgnoreTags: "debug"}, "1.2.3")
	if err != nil || f.Tag != "1.2.2" {
		t.Fatalf("Discover took %q (%v), Explain's best candidate is 1.2.2", f.Tag, err)
	}
}
