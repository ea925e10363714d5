package freight

import (
	"testing"
	"time"
)

func TestID_DependsOnContentNotTime(t *testing.T) {
	a := Freight{Image: "127.0.0.1:5000/team/frontend", Tag: "1.2.2", Digest: "sha256:aa", DiscoveredAt: time.Unix(1, 0)}
	b := a
	b.DiscoveredAt = time.Unix(2, 0)
	if a.ID() != b.ID() {
		t.Errorf("ID changed with DiscoveredAt: %s != %s", a.ID(), b.ID())
	}
	if len(a.ID()) != 12 {
		t.Errorf("ID %q: want 12 hex digits", a.ID())
	}
	for _, other := range []Freight{
		{Image: a.Image, Tag: "1.2.3", Digest: a.Digest},
		{Image: a.Image, Tag: a.Tag, Digest: "sha256:bb"},
		{Image: "127.0.0.1:5000/team/backend", Tag: a.Tag, Digest: a.Digest},
		// Moving characters between fields must change the id.
		{Image: a.Image + ":1", Tag: ".2.2", Digest: a.Digest},
	} {
		if other.ID() == a.ID() {
			t.Errorf("%v and %v share id %s", a, other, a.ID())
		}
	}
}

func TestRefAndValue(t *testing.T) {
	tests := []struct {
		name     string
		f        Freight
		strategy string
		ref      string
		value    string
	}{
		{"tag and digest", Freight{Image: "r/x", Tag: "1.0.0", Digest: "sha256:aa"}, "semver", "r/x:1.0.0@sha256:aa", "1.0.0"},
		{"digest strategy writes digest", Freight{Image: "r/x", Tag: "latest", Digest: "sha256:aa"}, StrategyDigest, "r/x:latest@sha256:aa", "sha256:aa"},
		{"no digest", Freight{Image: "r/x", Tag: "1.0.0"}, "lexical", "r/x:1.0.0", "1.0.0"},
		{"no tag", Freight{Image: "r/x", Digest: "sha256:aa"}, "newest", "r/x@sha256:aa", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Ref(); got != tt.ref {
				t.Errorf("Ref() = %q, want %q", got, tt.ref)
			}
			if got := tt.f.Value(tt.strategy); got != tt.value {
				t.Errorf("Value(%q) = %q, want %q", tt.strategy, got, tt.value)
			}
		})
	}
	if !(Freight{}).IsZero() || (Freight{Tag: "x"}).IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestSetID_CoversEveryMembersStageImageAndValue(t *testing.T) {
	fe := Member{Stage: "develop-frontend", Freight: Freight{Image: "r/frontend", Tag: "1.2.2", Digest: "sha256:aa"}, Value: "1.2.2"}
	be := Member{Stage: "develop-backend", Freight: Freight{Image: "r/backend", Tag: "2.1.0"}, Value: "2.1.0"}
	a := Set{fe, be}
	again := Set{fe, be}
	again[0].Freight.DiscoveredAt = time.Unix(5, 0)
	if a.ID() != again.ID() {
		t.Error("the same set has two ids")
	}
	newer := Set{fe, be}
	newer[0].Value = "1.2.3"
	for _, other := range []Set{newer, {be, fe}, {fe}} {
		if other.ID() == a.ID() {
			t.Errorf("%s and %s share id %s", other.Value(), a.Value(), a.ID())
		}
	}
	if got := a.Value(); got != "develop-frontend=1.2.2, develop-backend=2.1.0" {
		t.Errorf("Value() = %q", got)
	}
}
