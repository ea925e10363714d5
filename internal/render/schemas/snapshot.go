package schemas

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/kropipe/kropipe/internal/render/schemas/packed"
)

//go:generate go run ./gen -out data v1.34.4 v1.35.4 v1.36.3 v1.37.2

// data holds one directory per pinned Kubernetes release, written by ./gen: index.json and the
// packed, resolved schema of every kind (kinds.kpa). The gzipped components.schemas files next
// to them are ./gen's source and stay out of the binary.
//
//go:embed data/*/index.json data/*/kinds.kpa
var data embed.FS

// snapshotIndex mirrors the index.json written by ./gen.
type snapshotIndex struct {
	KubeVersion   string `json:"kubeVersion"`
	GroupVersions []struct {
		Group   string `json:"group"`
		Version string `json:"version"`
		File    string `json:"file"`
		Kinds   []struct {
			Kind       string `json:"kind"`
			Schema     string `json:"schema"`
			Resource   string `json:"resource"`
			Namespaced bool   `json:"namespaced"`
		} `json:"kinds"`
	} `json:"groupVersions"`
}

// builtinKind says where the schema of a built-in kind lives and which resource serves it.
type builtinKind struct {
	file       string // gzipped components file in the snapshot directory: names the group-version
	schema     string // component name, e.g. io.k8s.api.apps.v1.Deployment
	resource   string // plural; empty for kinds no resource serves (lists, options, reviews of subresources)
	namespaced bool
}

type snapshot struct {
	name    string // directory name, the release tag, e.g. v1.34.4
	version *utilversion.Version
}

// embeddedSnapshots lists the embedded releases, oldest first.
func embeddedSnapshots() ([]snapshot, error) {
	entries, err := data.ReadDir("data")
	if err != nil {
		return nil, fmt.Errorf("embedded schema data: %w", err)
	}
	var out []snapshot
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v, err := utilversion.ParseGeneric(e.Name())
		if err != nil {
			return nil, fmt.Errorf("embedded schema data: directory %q is not a version: %w", e.Name(), err)
		}
		out = append(out, snapshot{name: e.Name(), version: v})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("embedded schema data is empty: run go generate in internal/render/schemas")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version.LessThan(out[j].version) })
	return out, nil
}

// pickSnapshot chooses the embedded release for the requested Kubernetes version: the same minor,
// else the nearest lower minor (its API is a subset the cluster still serves), else the nearest.
// An empty request means the newest.
func pickSnapshot(want string, all []snapshot) (snapshot, error) {
	newest := all[len(all)-1]
	if strings.TrimSpace(want) == "" {
		return newest, nil
	}
	v, err := utilversion.ParseMajorMinor(want)
	if err != nil || v.Major() != 1 {
		return snapshot{}, fmt.Errorf("kube version %q is not a Kubernetes version such as \"1.34\" or \"v1.34.2\" (embedded schemas: %s)", want, snapshotNames(all))
	}
	var lower *snapshot
	for i := range all {
		s := &all[i]
		if s.version.Major() == v.Major() && s.version.Minor() == v.Minor() {
			return *s, nil
		}
		if s.version.LessThan(v) {
			lower = s
		}
	}
	if lower != nil {
		return *lower, nil
	}
	return all[0], nil
}

// KubeVersions lists the Kubernetes releases whose schemas are embedded, oldest first.
func KubeVersions() []string {
	all, err := embeddedSnapshots()
	if err != nil {
		return nil
	}
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.name
	}
	return names
}

func snapshotNames(all []snapshot) string {
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// indexes keeps each snapshot's decoded index (an *index) for the life of the process: a render
// server makes a Set per request, and an embedded snapshot never changes. Sets only read it.
var indexes sync.Map

type index struct {
	kubeVersion string
	builtins    map[schema.GroupVersionKind]builtinKind

	mapperOnce sync.Once
	mapper     *meta.DefaultRESTMapper // see builtinMapper
}

// cachedIndex is loadIndex, decoded once per process and snapshot.
func cachedIndex(dir string) (*index, error) {
	if idx, ok := indexes.Load(dir); ok {
		return idx.(*index), nil
	}
	kubeVersion, builtins, err := loadIndex(dir)
	if err != nil {
		return nil, err
	}
	idx, _ := indexes.LoadOrStore(dir, &index{kubeVersion: kubeVersion, builtins: builtins})
	return idx.(*index), nil
}

// loadIndex reads the snapshot's index into kind and group-version lookups.
func loadIndex(dir string) (kubeVersion string, kinds map[schema.GroupVersionKind]builtinKind, err error) {
	raw, err := data.ReadFile(path.Join(dir, "index.json"))
	if err != nil {
		return "", nil, fmt.Errorf("embedded schema data %s: %w", dir, err)
	}
	var idx snapshotIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		return "", nil, fmt.Errorf("embedded schema data %s/index.json: %w", dir, err)
	}
	kinds = make(map[schema.GroupVersionKind]builtinKind)
	for _, gv := range idx.GroupVersions {
		for _, k := range gv.Kinds {
			kinds[schema.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: k.Kind}] = builtinKind{
				file:       gv.File,
				schema:     k.Schema,
				resource:   k.Resource,
				namespaced: k.Namespaced,
			}
		}
	}
	return idx.KubeVersion, kinds, nil
}

// loadKinds opens the snapshot's archive of packed kind schemas: written by ./gen with every
// $ref already inlined, so a render decodes the schemas it needs and resolves nothing.
func loadKinds(dir string) (*packed.Archive, error) {
	raw, err := data.ReadFile(path.Join(dir, packed.KindsFile))
	if err != nil {
		return nil, fmt.Errorf("embedded schema data: %w", err)
	}
	a, err := packed.OpenArchive(raw)
	if err != nil {
		return nil, fmt.Errorf("embedded schema data %s/%s: %w", dir, packed.KindsFile, err)
	}
	return a, nil
}
