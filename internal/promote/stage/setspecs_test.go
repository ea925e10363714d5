package stage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
)

func TestSetSpecs_KeepsRemainingStagesStateAndDropsRemoved(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	f.reg.push(t, "team/backend", "1.2.1")
	front := f.spec("develop-frontend", "develop/frontend", "frontend")
	back := f.spec("develop-backend", "develop/backend", "backend")
	e := f.engine([]Spec{front, back})
	ctx := context.Background()
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Pause(ctx, "develop-frontend"); err != nil {
		t.Fatal(err)
	}
	staging := f.spec("staging-frontend", "staging/frontend", "frontend")
	staging.Upstream = "develop-frontend"
	if err := e.SetSpecs([]Spec{staging, front}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range e.Status() {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "develop-frontend,staging-frontend" {
		t.Fatalf("stages %s, want develop-frontend,staging-frontend (upstream first)", got)
	}
	st := mustStatus(t, e, "develop-frontend")
	if st.CurrentTag != "1.2.2" || st.VerifiedFreight == nil || !st.Paused {
		t.Fatalf("remaining stage lost its status: %+v", st)
	}
	if st := mustStatus(t, e, "staging-frontend"); st.Reason != "not checked yet" {
		t.Fatalf("new stage status %+v", st)
	}
	if _, err := e.Approve(ctx, "develop-backend", "1.2.1"); !errors.Is(err, ErrUnknownStage) {
		t.Fatalf("removed stage still answers: %v", err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// develop-frontend's verification of 1.2.2 survived the swap, so staging takes it.
	if st := mustStatus(t, e, "staging-frontend"); st.CurrentTag != "1.2.2" {
		t.Fatalf("staging after swap %+v", st)
	}
	if st := mustStatus(t, e, "develop-frontend"); !st.Paused {
		t.Fatalf("pause lost: %+v", st)
	}
}

func TestSetSpecs_InvalidSetChangesNothing(t *testing.T) {
	f := newFixture(t)
	front := f.spec("develop-frontend", "develop/frontend", "frontend")
	e := f.engine([]Spec{front})
	bad := f.spec("staging-frontend", "staging/frontend", "frontend")
	bad.Upstream = "nowhere"
	err := e.SetSpecs([]Spec{front, bad})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Stage != "staging-frontend" || fe.Field != "upstream" {
		t.Fatalf("error %v, want upstream FieldError on staging-frontend", err)
	}
	if got := e.Specs(); len(got) != 1 || got[0].Name != "develop-frontend" {
		t.Fatalf("specs changed to %+v", got)
	}
}

func TestSetSpecs_SafeWhilePassesAndActionsRun(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	front := f.spec("develop-frontend", "develop/frontend", "frontend")
	back := f.spec("develop-backend", "develop/backend", "backend")
	e := f.engine([]Spec{front})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				switch (i + j) % 3 {
				case 0:
					// develop-backend's image is not in the registry: that stage fails, and only it.
					if err := e.Reconcile(ctx); err != nil && !onlyStageFailed(err, "develop-backend") {
						t.Errorf("pass while the stages change: %v", err)
					}
				case 1:
					_ = e.Pause(ctx, "develop-frontend")
					_ = e.Status()
				default:
					set := []Spec{front}
					if j%2 == 0 {
						set = append(set, back)
					}
					if err := e.SetSpecs(set); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if _, ok := e.StatusOf("develop-frontend"); !ok {
		t.Fatal("develop-frontend lost")
	}
}

func TestWithGitOptionsFor_ErrorFailsOnlyThatRepository(t *testing.T) {
	f := newFixture(t)
	f.reg.push(t, "team/frontend", "1.2.1", "1.2.2")
	asked := map[string]int{}
	var mu sync.Mutex
	e := f.engine([]Spec{f.spec("develop-frontend", "develop/frontend", "frontend")},
		WithGitOptionsFor(func(_ context.Context, url string) ([]gitwrite.Option, error) {
			mu.Lock()
			defer mu.Unlock()
			asked[url]++
			if asked[url] == 1 {
				return nil, errors.New("no Argo CD repository Secret matches")
			}
			return []gitwrite.Option{gitwrite.WithAuthor("argo", "argo@example.com")}, nil
		}))
	ctx := context.Background()
	err := e.Reconcile(ctx)
	if err == nil || !strings.Contains(err.Error(), "Git credentials for "+f.url+": no Argo CD repository Secret matches") {
		t.Fatalf("first pass error %v", err)
	}
	if err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := gitserverOutput(f.bare, "log", "-1", "--format=%an", "main")
	if err != nil || strings.TrimSpace(out) != "argo" {
		t.Fatalf("author %q (%v), want the per-repository option applied", out, err)
	}
}

// onlyStageFailed reports whether err, from Reconcile, is only stage name's failure.
func onlyStageFailed(err error, name string) bool {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var se *StageError
		if !errors.As(e, &se) || se.Stage != name {
			return false
		}
	}
	return true
}
