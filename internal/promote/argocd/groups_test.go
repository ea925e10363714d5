package argocd

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestDerive_ReleaseGroupsFromAnnotations(t *testing.T) {
	shop := map[string]string{AnnGroup: "develop/shop", AnnGroupRequireAll: "true"}
	with := func(m map[string]string, more map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for k, v := range more {
			out[k] = v
		}
		return out
	}
	set := appset("shop", shop)
	apps := []*unstructured.Unstructured{
		ownedBy(app("develop-frontend", "develop/frontend", map[string]string{AnnImage: img("frontend")}), "shop"),
		ownedBy(app("develop-backend", "develop/backend", map[string]string{AnnImage: img("backend")}), "shop"),
		app("develop-cart", "develop/cart", map[string]string{AnnImage: img("cart")}),
		// staging's members disagree on require-all, and one cannot run: that group is held.
		app("staging-frontend", "staging/frontend", with(map[string]string{AnnImage: img("frontend"), AnnUpstream: "develop-frontend"}, map[string]string{AnnGroup: "staging/shop"})),
		app("staging-backend", "staging/backend", with(map[string]string{AnnImage: img("backend"), AnnUpstream: "develop-backend"}, map[string]string{AnnGroup: "staging/shop", AnnGroupRequireAll: "true"})),
		app("staging-cart", "staging/cart", map[string]string{AnnImage: img("cart"), AnnGroup: "staging/shop", "kropipe.io/constrant": "^1"}),
	}
	cfg := Derive(apps, []*unstructured.Unstructured{set})
	if len(cfg.Groups) != 2 {
		t.Fatalf("groups %+v", cfg.Groups)
	}
	dev := cfg.Groups[0]
	if !reflect.DeepEqual(dev, stage.GroupSpec{Name: "develop/shop", Members: []string{"develop-backend", "develop-frontend"}, RequireAll: true}) {
		t.Fatalf("develop/shop %+v", dev)
	}
	stg := cfg.Groups[1]
	if stg.Name != "staging/shop" || !strings.Contains(stg.Problem, "members disagree on kropipe.io/group-require-all") || !strings.Contains(stg.Problem, "member staging-cart cannot run") {
		t.Fatalf("staging/shop %+v", stg)
	}
	var warned bool
	for _, w := range cfg.Warnings {
		warned = warned || (strings.HasPrefix(w.Stage, "staging-") && w.Field == AnnGroupRequireAll)
	}
	if !warned {
		t.Fatalf("no warning on the disagreeing Application: %+v", cfg.Warnings)
	}
	// develop-cart is no member, and stays a stage of its own.
	if _, ok := cfg.Bindings["develop-cart"]; !ok {
		t.Fatal("develop-cart left out")
	}
}
