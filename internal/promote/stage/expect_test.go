package stage

import (
	"context"
	"errors"
	"testing"
)

// A release group's actions expect its set (as its status's CurrentTag shows it): a rollback
// retried with the set it rolled back from is refused as moved, and so is an approval or a
// promotion of a set that is no longer what the group runs; Git is not touched.
func TestGroup_ActionsExpectingAnOldSetDoNothing(t *testing.T) {
	f := newGroupFixture(t)
	specs, groups := f.shop()
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "2.0.0", "2.1.0")
	f.reg.push(t, "team/cart", "0.9.0")
	e := f.engine(specs, WithGroups(groups...))
	ctx := context.Background()
	reconcile(t, e)
	seen := mustStatus(t, e, "develop/shop").CurrentTag
	if seen != "develop-frontend=1.2.2, develop-backend=2.1.0" {
		t.Fatalf("develop/shop runs %q", seen)
	}
	if _, err := e.Rollback(ctx, "develop/shop", "", Expect(seen)); err != nil {
		t.Fatal(err)
	}
	commits := len(f.subjects())
	tests := []struct {
		name string
		act  func() error
	}{
		{"rollback retried", func() error { _, err := e.Rollback(ctx, "develop/shop", "", Expect(seen)); return err }},
		{"promote", func() error {
			_, err := e.Promote(ctx, "develop/shop", "frontend=1.2.2", Expect(seen))
			return err
		}},
		{"approve", func() error { _, err := e.Approve(ctx, "develop/shop", "", Expect(seen)); return err }},
	}
	for _, tt := range tests {
		err := tt.act()
		if !errors.Is(err, ErrMoved) || err.Error() != `stage "develop/shop" now runs develop-frontend=1.2.1, develop-backend=2.0.0, you expected develop-frontend=1.2.2, develop-backend=2.1.0: the stage moved; nothing was done: look at its status and act again` {
			t.Errorf("%s: %v; want the group moved", tt.name, err)
		}
	}
	if got := f.subjects(); len(got) != commits {
		t.Errorf("commits %q; want the one rollback only", got)
	}
}
