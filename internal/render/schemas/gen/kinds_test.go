package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/kropipe/kropipe/internal/render/schemas/packed"
)

// TestKinds_AreTheComponentsResolved proves that the packed schemas a render reads are exactly
// what resolving the stored components gives, for every kind of every embedded release: the
// archive is in step with the components files, and packing lost nothing.
func TestKinds_AreTheComponentsResolved(t *testing.T) {
	versions, err := os.ReadDir("../data")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		dir := filepath.Join("../data", v.Name())
		t.Run(v.Name(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			var idx index
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatal(err)
			}
			archiveBytes, err := os.ReadFile(filepath.Join(dir, packed.KindsFile))
			if err != nil {
				t.Fatal(err)
			}
			archive, err := packed.OpenArchive(archiveBytes)
			if err != nil {
				t.Fatal(err)
			}
			for _, gv := range idx.GroupVersions {
				components, err := ReadComponents(filepath.Join(dir, gv.File))
				if err != nil {
					t.Fatal(err)
				}
				type entry struct{ key, component string }
				var entries []entry
				for _, k := range gv.Kinds {
					entries = append(entries, entry{packed.KindKey(gv.File, k.Kind), k.Schema})
				}
				for _, c := range extraComponents[gv.File] {
					entries = append(entries, entry{packed.ComponentKey(gv.File, c), c})
				}
				for _, e := range entries {
					want, err := components.Resolve(e.component)
					if err != nil {
						t.Fatalf("%s: %v", e.key, err)
					}
					got, ok, err := archive.Schema(e.key)
					if err != nil || !ok {
						t.Fatalf("%s: in archive %v, %v: run go generate in internal/render/schemas", e.key, ok, err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s: the packed schema differs from the resolved component %s: run go generate in internal/render/schemas", e.key, e.component)
					}
				}
			}
		})
	}
}
