//go:build !nodemo

package main

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDemo_PromotesThroughStagesRendersAndRollsBack(t *testing.T) {
	var out bytes.Buffer
	examples, err := findExamples()
	if err != nil {
		t.Fatal(err)
	}
	res, err := runDemo(context.Background(), &out, examples)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	want := []string{
		"Roll back image from 1.2.2 to 1.2.1",
		"Promote image from 1.2.1 to 1.2.2", // staging
		"Promote image from 1.2.1 to 1.2.2", // develop
		"Promote image from 1.2.0 to 1.2.1", // staging
	}
	if !reflect.DeepEqual(res.Subjects, want) {
		t.Errorf("commits %q, want %q", res.Subjects, want)
	}
	if !strings.HasSuffix(res.ImageBefore, "/frontend:1.2.2") || !strings.HasSuffix(res.StagingImage, "/frontend:1.2.2") {
		t.Errorf("before the rollback develop runs %q, staging %q", res.ImageBefore, res.StagingImage)
	}
	if !strings.HasSuffix(res.ImageAfter, "/frontend:1.2.1") {
		t.Errorf("after the rollback develop runs %q", res.ImageAfter)
	}
	for _, w := range []string{"Kropipe-Stage: staging-frontend", "Kropipe-Rejected: 1.2.2", "waiting: develop-frontend soak, 10m0s left", "1.2.2 was rolled back here"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("demo output lacks %q", w)
		}
	}
	if res.Took > 15*time.Second {
		t.Errorf("demo took %s, the budget is 15s", res.Took)
	}
	t.Logf("demo took %s", res.Took)
}
