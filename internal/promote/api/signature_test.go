package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/signature"
	"github.com/kropipe/kropipe/internal/promote/signature/signaturetest"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// A tag not signed as the stage's policy requires is named, with why, in the stage's JSON
// ("skipped") and in its tag explanation.
func TestAPI_UnsignedTagsAreNamedWithWhy(t *testing.T) {
	key := signaturetest.NewKey(t, "ecdsa")
	e := newEngineWith(t, func(s *stage.Spec) {
		s.Signatures = []signature.Policy{{Name: "ci-key", Cosign: &signature.CosignPolicy{PublicKey: key.PEM, KeyRef: "cosign.pub"}}}
	})
	ts := httptest.NewServer(New(e, WithLogger(quiet())))
	defer ts.Close()
	if err := e.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ts.URL + "/api/v1/stages/develop-frontend")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var skipped []string
	if err := json.Unmarshal(raw["skipped"], &skipped); err != nil || len(skipped) == 0 || !strings.HasPrefix(skipped[0], "1.2.2: no signature by key SHA256:") {
		t.Fatalf("skipped %q (%v) in %s", skipped, err, body)
	}
	var tags Tags
	if code := get(t, ts.URL+"/api/v1/stages/develop-frontend/tags", &tags); code != http.StatusOK {
		t.Fatalf("tags: %d", code)
	}
	if v := tags.Tags[0]; v.Tag != "1.2.2" || v.Candidate || !strings.HasPrefix(v.Reason, "not signed as required: no signature by key SHA256:") {
		t.Fatalf("tag %+v, want 1.2.2 shown as not signed", v)
	}
}
