package kubestate_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// casClient is a fake API server whose ConfigMap updates are compare-and-swaps on the
// resourceVersion, as the real one's are.
func casClient() *fake.Clientset {
	c := fake.NewClientset()
	var mu sync.Mutex
	version := 0
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	c.PrependReactor("*", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		w, ok := a.(k8stesting.CreateAction) // creates and updates alike
		if !ok {
			return false, nil, nil
		}
		cm := w.GetObject().(*corev1.ConfigMap)
		mu.Lock()
		defer mu.Unlock()
		if a.GetVerb() == "update" {
			cur, err := c.Tracker().Get(gvr, cm.Namespace, cm.Name)
			if err != nil {
				return true, nil, err
			}
			if cur.(metav1.Object).GetResourceVersion() != cm.ResourceVersion {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), cm.Name, errors.New("the object has been modified"))
			}
		}
		version++
		cm.ResourceVersion = fmt.Sprint(version)
		return false, nil, nil
	})
	return c
}

func stagesOf(c *fake.Clientset, owns func(string) bool, sopts ...kubestate.StagesOption) *kubestate.Stages {
	return kubestate.NewStages(c, ns, "state", owns, []kubestate.Option{kubestate.WithLogger(quiet)}, sopts...)
}

func only(names ...string) func(string) bool {
	return func(s string) bool {
		for _, n := range names {
			if n == s {
				return true
			}
		}
		return false
	}
}

var at = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func TestEntries_EveryStateFieldIsKeyedByStage(t *testing.T) {
	// Stages and the merge of Save split and join state by stage through its JSON: a field
	// of stage.State that is not a map from stage name would be lost there.
	typ := reflect.TypeFor[stage.State]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() != reflect.Map || f.Type.Key().Kind() != reflect.String {
			t.Errorf("stage.State.%s is a %s, not a map keyed by stage name: kubestate's entries cannot split it by stage", f.Name, f.Type)
		}
		if tag := f.Tag.Get("json"); tag == "" || tag == "-" || strings.HasPrefix(tag, ",") {
			t.Errorf("stage.State.%s has no JSON name", f.Name)
		}
	}
}

// TestStages_ReplicasSharingABucketKeepEachOthersEntries: two replicas whose stages hash to one
// bucket write it in turns, each from a view older than the other's last write; neither undoes
// the other's entries.
func TestStages_ReplicasSharingABucketKeepEachOthersEntries(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	// Two stage names in one bucket.
	a, b := "", ""
	for i := 0; b == ""; i++ {
		n := fmt.Sprintf("stage-%d", i)
		switch {
		case a == "":
			a = n
		case kubestate.Bucket(n) == kubestate.Bucket(a):
			b = n
		}
	}
	ra, rb := stagesOf(c, only(a)), stagesOf(c, only(b))
	for _, r := range []*kubestate.Stages{ra, rb} {
		if _, err := r.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := ra.Save(ctx, stage.State{Paused: map[string]time.Time{a: at}}); err != nil {
		t.Fatal(err)
	}
	// b's replica never saw a's pause; it writes its approval, and a stage it does not own.
	if err := rb.Save(ctx, stage.State{Approvals: map[string][]stage.Approval{b: {{Value: "1.0", ApprovedAt: at}}}, Paused: map[string]time.Time{"not-mine": at}}); err != nil {
		t.Fatal(err)
	}
	// a resumes, from its own view (which lacks b's approval).
	if err := ra.Save(ctx, stage.State{}); err != nil {
		t.Fatal(err)
	}
	st, _, err := kubestate.New(c, ns, kubestate.WithName(kubestate.BucketName("state", kubestate.Bucket(a)))).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, paused := st.Paused[a]; paused || len(st.Approvals[b]) != 1 || len(st.Paused) != 0 {
		t.Errorf("bucket after a paused, b approved, a resumed: %+v; want b's approval alone", st)
	}
}

// TestStages_StateFollowsAStageToItsNewOwner: prod moves from one replica to another (a new
// first stage changed its pipeline's shard, or --shards changed): the new owner reads its
// pause and approval; the old one, no longer owning it, neither shows nor removes them.
func TestStages_StateFollowsAStageToItsNewOwner(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	var mu sync.Mutex
	owner := "old"
	owns := func(who string) func(string) bool {
		return func(s string) bool {
			mu.Lock()
			defer mu.Unlock()
			return s != "prod" || owner == who
		}
	}
	old, next := stagesOf(c, owns("old")), stagesOf(c, owns("next"))
	if _, err := next.Load(ctx); err != nil { // next's view predates the pause
		t.Fatal(err)
	}
	if err := old.Save(ctx, stage.State{
		Paused:    map[string]time.Time{"prod": at},
		Approvals: map[string][]stage.Approval{"prod": {{Value: "1.2.3", ApprovedAt: at}}},
		// An owed automatic rollback is the stage's state like its pause: the new owner retries it.
		Owed: map[string][]stage.OwedAction{"prod": {{Kind: "rollback", From: "1.2.2", Since: at, Attempts: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	owner = "next"
	mu.Unlock()
	old.Forget()
	next.Forget()

	st, err := next.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Paused["prod"].IsZero() || len(st.Approvals["prod"]) != 1 {
		t.Fatalf("prod's new owner loads %+v; want its pause and approval", st)
	}
	if a := st.Owed["prod"]; len(a) != 1 || a[0].From != "1.2.2" || a[0].Attempts != 1 {
		t.Fatalf("prod's new owner loads owed %+v; want the rollback from 1.2.2", st.Owed)
	}
	// The old owner's next pass no longer sees prod, and saving without it removes nothing.
	mine, err := old.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.Paused)+len(mine.Approvals) != 0 {
		t.Errorf("the old owner still loads prod's state: %+v", mine)
	}
	if err := old.Save(ctx, stage.State{}); err != nil {
		t.Fatal(err)
	}
	if err := next.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	again, _ := stagesOf(c, owns("next")).Load(ctx)
	if again.Paused["prod"].IsZero() || len(again.Approvals["prod"]) != 1 {
		t.Errorf("after both saved: %+v; want prod still paused and approved", again)
	}
}

// TestStages_UpgradeCarriesOlderStateOverOnce: a promoter without shards kept everything in
// <name>, one with shards in <name>-<n>; the first write of each bucket starts from them, and
// once written a bucket never reads them again (a resume is not undone).
func TestStages_UpgradeCarriesOlderStateOverOnce(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	old := func(name string, st stage.State) {
		t.Helper()
		if err := kubestate.New(c, ns, kubestate.WithName(name), kubestate.WithLogger(quiet)).Save(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	old("state", stage.State{Paused: map[string]time.Time{"prod": at, "web": at}})
	old("state-3", stage.State{Approvals: map[string][]stage.Approval{"prod": {{Value: "1.2.3", ApprovedAt: at}}}})
	old("state-11", stage.State{Verifications: map[string][]stage.Verification{"develop": {{Value: "1.2.3", VerifiedAt: at}}}})

	all := func(string) bool { return true }
	s := stagesOf(c, all)
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Paused["prod"].IsZero() || st.Paused["web"].IsZero() || len(st.Approvals["prod"]) != 1 || len(st.Verifications["develop"]) != 1 {
		t.Fatalf("after the upgrade: %+v; want prod and web paused, prod's approval, develop's verification", st)
	}
	// prod is resumed: its bucket is written, with the older state it started from.
	delete(st.Paused, "prod")
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	// Another replica (or a restart) reads: prod stays resumed, the rest is there.
	st, err = stagesOf(c, all).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, paused := st.Paused["prod"]; paused || st.Paused["web"].IsZero() || len(st.Approvals["prod"]) != 1 || len(st.Verifications["develop"]) != 1 {
		t.Errorf("after resuming prod: %+v; want prod resumed, web paused, prod's approval, develop's verification", st)
	}
}

// TestStages_SavesOnlyWhatChanged: an unchanged state writes nothing, one new pause one
// ConfigMap.
func TestStages_SavesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	s := stagesOf(c, func(string) bool { return true })
	st := stage.State{Paused: map[string]time.Time{}}
	for i := range 200 {
		st.Paused[fmt.Sprintf("stage-%d", i)] = at
	}
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	c.ClearActions()
	loaded, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, loaded); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("loading and saving an unchanged state: %d requests, want none (it was just written)", n)
	}
	loaded.Paused["stage-new"] = at
	if err := s.Save(ctx, loaded); err != nil {
		t.Fatal(err)
	}
	writes := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "update" || a.GetVerb() == "create" {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("one new pause: %d writes, want 1", writes)
	}
}

// TestStages_ReadsAgainAfterTheRefresh: another writer's change (a hand edit) is seen once the
// refresh passed, not before.
func TestStages_ReadsAgainAfterTheRefresh(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	clk := clocktesting.NewFakeClock(at)
	all := func(string) bool { return true }
	s := kubestate.NewStages(c, ns, "state", all, []kubestate.Option{kubestate.WithLogger(quiet), kubestate.WithClock(clk)}, kubestate.WithRefresh(time.Minute))
	if _, err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stagesOf(c, all).Save(ctx, stage.State{Paused: map[string]time.Time{"prod": at}}); err != nil {
		t.Fatal(err)
	}
	clk.Step(59 * time.Second)
	if st, _ := s.Load(ctx); !st.Paused["prod"].IsZero() {
		t.Error("read again before the refresh")
	}
	clk.Step(time.Second)
	if st, _ := s.Load(ctx); st.Paused["prod"].IsZero() {
		t.Error("another writer's pause not seen after the refresh")
	}
}

// TestStages_TenThousandStagesFit: 10,000 stages, each with its newest verification and a
// failed run carrying a full log tail, fit in the buckets' ConfigMaps untrimmed.
func TestStages_TenThousandStagesFit(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 stages")
	}
	ctx := context.Background()
	c := fake.NewClientset()
	s := stagesOf(c, func(string) bool { return true })
	st := stage.State{Verifications: map[string][]stage.Verification{}, Runs: map[string][]stage.VerificationRun{}, Paused: map[string]time.Time{}, Approvals: map[string][]stage.Approval{}}
	log := strings.Repeat("x", 2000)
	for i := range 10000 {
		name := fmt.Sprintf("team%03d-service%02d-env%d", i/100, i%100/4, i%4)
		st.Verifications[name] = []stage.Verification{{Value: "1.2.3", FreightID: "0123456789abcdef", Commit: strings.Repeat("c", 40), VerifiedAt: at}}
		st.Runs[name] = []stage.VerificationRun{{Value: "1.2.4", Freight: "fedcba9876543210", Commit: strings.Repeat("d", 40), Phase: "Failed", Message: "job " + name + "-smoke-1a2b failed (BackoffLimitExceeded)", Log: log, Started: at}}
		st.Approvals[name] = []stage.Approval{{Value: "1.2.4", ApprovedAt: at}}
		st.Paused[name] = at
	}
	start := time.Now()
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	saved := time.Since(start)
	largest := 0
	for b := range kubestate.Buckets {
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, kubestate.BucketName("state", b), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, len(cm.Data[kubestate.DataKey]))
	}
	t.Logf("largest of %d buckets: %d bytes (a ConfigMap holds 1 MiB; trimming starts at %d)", kubestate.Buckets, largest, kubestate.DefaultMaxBytes)
	if largest > kubestate.DefaultMaxBytes {
		t.Errorf("largest bucket %d bytes, over %d", largest, kubestate.DefaultMaxBytes)
	}
	start = time.Now()
	got, err := stagesOf(c, func(string) bool { return true }).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 stages: first save %s, a new replica's first load (every bucket read) %s", saved.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if len(got.Runs) != 10000 || len(got.Verifications) != 10000 {
		t.Errorf("read back %d stages' runs, %d verifications; want 10,000", len(got.Runs), len(got.Verifications))
	}
}

// TestStages_UpgradeStartsFromTheOlderStateAsLastWritten: a new replica read the older
// promoter's state while that one still ran (a rolling update) and resumed prod; once it owns
// the stages it starts from the state as the older one left it.
func TestStages_UpgradeStartsFromTheOlderStateAsLastWritten(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	older := kubestate.New(c, ns, kubestate.WithName("state"), kubestate.WithLogger(quiet))
	if err := older.Save(ctx, stage.State{Paused: map[string]time.Time{"prod": at}}); err != nil {
		t.Fatal(err)
	}
	s := stagesOf(c, func(string) bool { return true })
	if st, _ := s.Load(ctx); st.Paused["prod"].IsZero() {
		t.Fatal("the older state's pause not read")
	}
	if err := older.Save(ctx, stage.State{}); err != nil { // the older promoter resumes prod
		t.Fatal(err)
	}
	s.Forget() // this replica now owns the stages
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Approvals = map[string][]stage.Approval{"prod": {{Value: "1.2.3", ApprovedAt: at}}}
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, _ := stagesOf(c, func(string) bool { return true }).Load(ctx)
	if _, paused := got.Paused["prod"]; paused || len(got.Approvals["prod"]) != 1 {
		t.Errorf("after the older promoter resumed prod and this one approved: %+v; want prod resumed and approved", got)
	}
}

// TestStages_AStageGainedBetweenLoadAndSaveIsNotRemoved: prod's shard comes to this replica
// between a caller's Load (without prod) and its Save: prod's pause, written by its last owner,
// stays. Update does the same in one step, whatever other callers read meanwhile.
func TestStages_AStageGainedBetweenLoadAndSaveIsNotRemoved(t *testing.T) {
	for _, how := range []string{"Load then Save", "Update"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			c := casClient()
			if err := stagesOf(c, only("prod")).Save(ctx, stage.State{Paused: map[string]time.Time{"prod": at}}); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			gained := false
			s := stagesOf(c, func(name string) bool {
				mu.Lock()
				defer mu.Unlock()
				return name != "prod" || gained
			})
			approve := func(st *stage.State) {
				st.Approvals = map[string][]stage.Approval{"develop": {{Value: "1.2.3", ApprovedAt: at}}}
			}
			gain := func() {
				mu.Lock()
				gained = true
				mu.Unlock()
				s.Forget()
			}
			switch how {
			case "Load then Save":
				st, err := s.Load(ctx)
				if err != nil {
					t.Fatal(err)
				}
				gain()
				approve(&st)
				if err := s.Save(ctx, st); err != nil {
					t.Fatal(err)
				}
			case "Update":
				gain()
				if _, err := s.Load(ctx); err != nil { // another caller reads again
					t.Fatal(err)
				}
				if err := s.Update(ctx, func(st *stage.State) {
					if st.Paused == nil || st.Approvals == nil || st.Verifications == nil || st.Runs == nil {
						t.Errorf("Update gave a state with a nil map: %+v", st)
					}
					approve(st)
				}); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := stagesOf(c, func(string) bool { return true }).Load(ctx)
			if got.Paused["prod"].IsZero() || len(got.Approvals["develop"]) != 1 {
				t.Errorf("after %s: %+v; want prod still paused and develop approved", how, got)
			}
		})
	}
}

// TestStages_ManyReplicasWritingOneBucketAtOnceLoseNothing: eight replicas end their passes
// together, each writing its stage's verification into one shared bucket, five times: every
// save succeeds and every entry is there.
func TestStages_ManyReplicasWritingOneBucketAtOnceLoseNothing(t *testing.T) {
	ctx := context.Background()
	c := casClient()
	var names []string
	for i := 0; len(names) < 8; i++ {
		if n := fmt.Sprintf("stage-%d", i); kubestate.Bucket(n) == 0 {
			names = append(names, n)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(names)*5)
	for _, name := range names {
		s := stagesOf(c, only(name))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				errs <- s.Update(ctx, func(st *stage.State) {
					st.Verifications[name] = append(st.Verifications[name], stage.Verification{Value: fmt.Sprintf("1.0.%d", i), VerifiedAt: at})
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, _ := stagesOf(c, func(string) bool { return true }).Load(ctx)
	for _, name := range names {
		if len(got.Verifications[name]) != 5 {
			t.Errorf("%s has %d verifications, want 5", name, len(got.Verifications[name]))
		}
	}
}
