// Command gen turns the OpenAPI v3 documents published with pinned Kubernetes releases into the
// compact snapshots that package schemas embeds, so built-in kinds type-check without a cluster.
//
// Usage (from the schemas package directory, see its go:generate line):
//
//	go run ./gen -out data v1.34.4 v1.35.4 v1.36.3 v1.37.2
//
// For each version it runs `go mod download -json k8s.io/kubernetes@VERSION`, reads
// api/openapi-spec/v3/*.json from the module, keeps the GA group-versions (v1, v2, ...), and
// writes to OUT/VERSION/:
//
//   - one GROUP_VERSION.json.gz per group-version: its components.schemas map, with the
//     documentation ("description") removed from every schema, minified and gzipped;
//   - index.json: per group-version, the file, and per kind the schema component that declares
//     it (x-kubernetes-group-version-kind) plus the REST resource and scope read from the paths;
//   - kinds.kpa: every kind's schema with each $ref inlined, as the API server's own resolver
//     (k8s.io/apiserver's resolver.PopulateRefs) inlines them, in the binary form of package
//     packed. With index.json it is all a render reads: the components files are the source,
//     kept for regenerating and for the test that proves the two agree.
//
// -kinds-only rewrites only kinds.kpa, from the components files already in OUT, without
// downloading Kubernetes.
//
// The output is deterministic (sorted keys, no gzip timestamp), so regenerating is a no-op diff.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

func main() {
	out := flag.String("out", "data", "directory to write one snapshot per version into (replaced)")
	kindsOnly := flag.Bool("kinds-only", false, "only rewrite OUT/VERSION/kinds.kpa from the components files already there")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: gen -out DIR VERSION...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	do := run
	if *kindsOnly {
		do = writeAllKinds
	}
	if err := do(*out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string, versions []string) error {
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	for _, v := range versions {
		dir, err := downloadKubernetes(v)
		if err != nil {
			return err
		}
		total, err := writeSnapshot(filepath.Join(dir, "api", "openapi-spec", "v3"), filepath.Join(out, v), v)
		if err != nil {
			return fmt.Errorf("k8s.io/kubernetes@%s: %w", v, err)
		}
		n, err := writeKinds(filepath.Join(out, v))
		if err != nil {
			return fmt.Errorf("k8s.io/kubernetes@%s: %w", v, err)
		}
		total += n
		fmt.Fprintf(os.Stderr, "gen: %s: %d bytes\n", v, total)
	}
	return nil
}

// downloadKubernetes returns the module cache directory of k8s.io/kubernetes at version v.
// It runs outside any module so the caller's go.mod is never consulted or touched.
func downloadKubernetes(v string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+v)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	runErr := cmd.Run()
	var info struct {
		Dir   string
		Error string
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		return "", fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w (output %q)", v, runErr, stdout.String())
	}
	if info.Error != "" || runErr != nil {
		return "", fmt.Errorf("go mod download k8s.io/kubernetes@%s: %s %w", v, info.Error, runErr)
	}
	return info.Dir, nil
}

// gaFile matches the per-group-version documents of GA APIs: api__v1_openapi.json and
// apis__GROUP__vN_openapi.json (alpha and beta versions have a suffix after the number).
var gaFile = regexp.MustCompile(`^(api|apis__(.+))__(v[0-9]+)_openapi\.json$`)

type document struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]map[string]any `json:"schemas"`
	} `json:"components"`
}

// index is the layout of index.json; package schemas declares the same shape.
type index struct {
	KubeVersion   string         `json:"kubeVersion"`
	GroupVersions []groupVersion `json:"groupVersions"`
}

type groupVersion struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	File    string `json:"file"`
	Kinds   []kind `json:"kinds"`
}

type kind struct {
	Kind       string `json:"kind"`
	Schema     string `json:"schema"`
	Resource   string `json:"resource,omitempty"`
	Namespaced bool   `json:"namespaced,omitempty"`
}

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

func writeSnapshot(src, dst, kubeVersion string) (int, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	idx := index{KubeVersion: kubeVersion}
	total := 0
	for _, e := range entries {
		m := gaFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		group, version := m[2], m[3]
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return 0, err
		}
		var doc document
		if err := json.Unmarshal(raw, &doc); err != nil {
			return 0, fmt.Errorf("%s: %w", e.Name(), err)
		}
		gv := groupVersion{Group: group, Version: version, File: fileName(group, version)}
		gv.Kinds, err = kindsOf(&doc, group, version)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", e.Name(), err)
		}
		if len(gv.Kinds) == 0 {
			continue
		}
		for _, s := range doc.Components.Schemas {
			stripDocs(s)
		}
		n, err := writeGzipJSON(filepath.Join(dst, gv.File), doc.Components.Schemas)
		if err != nil {
			return 0, err
		}
		total += n
		idx.GroupVersions = append(idx.GroupVersions, gv)
	}
	sort.Slice(idx.GroupVersions, func(i, j int) bool {
		a, b := idx.GroupVersions[i], idx.GroupVersions[j]
		return a.Group+"/"+a.Version < b.Group+"/"+b.Version
	})
	buf, err := json.MarshalIndent(idx, "", " ")
	if err != nil {
		return 0, err
	}
	buf = append(buf, '\n')
	if err := os.WriteFile(filepath.Join(dst, "index.json"), buf, 0o644); err != nil {
		return 0, err
	}
	return total + len(buf), nil
}

func fileName(group, version string) string {
	if group == "" {
		group = "core"
	}
	return group + "_" + version + ".json.gz"
}

// kindsOf lists the kinds of group/version declared by the document's schemas, each with the
// resource that serves it. A resource is a path PREFIX/[namespaces/{namespace}/]PLURAL[/{name}];
// longer paths are subresources (status, scale, eviction) and do not define a kind's resource.
func kindsOf(doc *document, group, version string) ([]kind, error) {
	byKind := map[string]*kind{}
	for name, s := range doc.Components.Schemas {
		ext, ok := s["x-kubernetes-group-version-kind"]
		if !ok {
			continue
		}
		b, _ := json.Marshal(ext)
		var gvks []gvk
		if err := json.Unmarshal(b, &gvks); err != nil {
			return nil, fmt.Errorf("schema %s: x-kubernetes-group-version-kind: %w", name, err)
		}
		for _, g := range gvks {
			if g.Group != group || g.Version != version {
				continue
			}
			if prev, dup := byKind[g.Kind]; dup {
				return nil, fmt.Errorf("kind %s declared by both %s and %s", g.Kind, prev.Schema, name)
			}
			byKind[g.Kind] = &kind{Kind: g.Kind, Schema: name}
		}
	}

	prefix := "/api/" + version + "/"
	if group != "" {
		prefix = "/apis/" + group + "/" + version + "/"
	}
	namespacedPlural := map[string]bool{}
	pluralOf := map[string]string{}
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
		namespaced := false
		if len(segs) > 2 && segs[0] == "namespaces" && segs[1] == "{namespace}" {
			namespaced, segs = true, segs[2:]
		}
		if segs[0] == "watch" || len(segs) > 2 || (len(segs) == 2 && segs[1] != "{name}") {
			continue
		}
		plural := segs[0]
		if namespaced {
			namespacedPlural[plural] = true
		}
		for method, op := range doc.Paths[p] {
			if method == "parameters" {
				continue
			}
			var o struct {
				GVK *gvk `json:"x-kubernetes-group-version-kind"`
			}
			if err := json.Unmarshal(op, &o); err != nil || o.GVK == nil {
				continue
			}
			if o.GVK.Group != group || o.GVK.Version != version {
				continue
			}
			if prev, ok := pluralOf[o.GVK.Kind]; ok && prev != plural {
				return nil, fmt.Errorf("kind %s served by both %s and %s", o.GVK.Kind, prev, plural)
			}
			pluralOf[o.GVK.Kind] = plural
		}
	}

	kinds := make([]kind, 0, len(byKind))
	for _, k := range byKind {
		if plural, ok := pluralOf[k.Kind]; ok {
			k.Resource = plural
			k.Namespaced = namespacedPlural[plural]
		}
		kinds = append(kinds, *k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].Kind < kinds[j].Kind })
	return kinds, nil
}

// stripDocs removes human documentation from a schema and its sub-schemas: it is most of the
// bytes and the type checker never reads it. Property maps are walked by value so that a
// property which happens to be named "description" survives.
func stripDocs(s map[string]any) {
	delete(s, "description")
	delete(s, "externalDocs")
	delete(s, "example")
	if props, ok := s["properties"].(map[string]any); ok {
		for _, p := range props {
			if ps, ok := p.(map[string]any); ok {
				stripDocs(ps)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "not"} {
		if sub, ok := s[key].(map[string]any); ok {
			stripDocs(sub)
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if subs, ok := s[key].([]any); ok {
			for _, sub := range subs {
				if ss, ok := sub.(map[string]any); ok {
					stripDocs(ss)
				}
			}
		}
	}
}

func writeGzipJSON(path string, v any) (int, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return 0, err
	}
	if _, err := zw.Write(raw); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return buf.Len(), os.WriteFile(path, buf.Bytes(), 0o644)
}
