package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/kropipe/kropipe/internal/render/schemas/packed"
)

// writeAllKinds rewrites the kinds file of each version directory in out.
func writeAllKinds(out string, versions []string) error {
	for _, v := range versions {
		n, err := writeKinds(filepath.Join(out, v))
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		fmt.Fprintf(os.Stderr, "gen: %s kinds: %d bytes\n", v, n)
	}
	return nil
}

// extraComponents are the schema components, by components file, that a render needs besides
// kinds: the ObjectMeta that package schemas puts into CRD schemas, from core/v1.
var extraComponents = map[string][]string{"core_v1.json.gz": {"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}}

// writeKinds resolves every kind of the snapshot in dir from its components files and writes
// them packed, in one archive, to dir/kinds.kpa (replaced).
func writeKinds(dir string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return 0, err
	}
	var idx index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return 0, fmt.Errorf("index.json: %w", err)
	}
	kinds := map[string][]byte{}
	for _, gv := range idx.GroupVersions {
		components, err := ReadComponents(filepath.Join(dir, gv.File))
		if err != nil {
			return 0, err
		}
		for _, k := range gv.Kinds {
			sch, err := components.Resolve(k.Schema)
			if err != nil {
				return 0, fmt.Errorf("%s kind %s: %w", gv.File, k.Kind, err)
			}
			b, err := packed.Encode(sch)
			if err != nil {
				return 0, fmt.Errorf("%s kind %s: %w", gv.File, k.Kind, err)
			}
			kinds[packed.KindKey(gv.File, k.Kind)] = b
		}
		for _, name := range extraComponents[gv.File] {
			sch, err := components.Resolve(name)
			if err != nil {
				return 0, fmt.Errorf("%s component %s: %w", gv.File, name, err)
			}
			if kinds[packed.ComponentKey(gv.File, name)], err = packed.Encode(sch); err != nil {
				return 0, fmt.Errorf("%s component %s: %w", gv.File, name, err)
			}
		}
	}
	archive := packed.EncodeArchive(kinds)
	return len(archive), os.WriteFile(filepath.Join(dir, packed.KindsFile), archive, 0o644)
}

// Components is one group-version's components.schemas as the components file holds it.
type Components map[string]json.RawMessage

// ReadComponents reads a gzipped components file written by writeSnapshot.
func ReadComponents(path string) (Components, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var c Components
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Resolve returns the component named name with every $ref inlined, exactly as the API server's
// resolver does for its own clients: PopulateRefs unwraps allOf-wrapped refs and breaks reference
// cycles (JSONSchemaProps) with a plain object.
func (c Components) Resolve(name string) (*spec.Schema, error) {
	parsed := map[string]*spec.Schema{}
	var parseErr error
	schemaOf := func(ref string) (*spec.Schema, bool) {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if s, ok := parsed[name]; ok {
			return s, true
		}
		raw, ok := c[name]
		if !ok {
			return nil, false
		}
		s := new(spec.Schema)
		if err := json.Unmarshal(raw, s); err != nil {
			if parseErr == nil {
				parseErr = fmt.Errorf("schema %s: %w", name, err)
			}
			return nil, false
		}
		parsed[name] = s
		return s, true
	}
	sch, err := resolver.PopulateRefs(schemaOf, name)
	if parseErr != nil {
		return nil, parseErr
	}
	return sch, err
}
