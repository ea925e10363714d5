package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kubernetes-sigs/kro/api/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kropipe/kropipe/internal/render/schemas"
)

const (
	// LabelInstance, LabelRGD and LabelResource tie every rendered object to the instance, the
	// ResourceGraphDefinition and the RGD resource id it came from.
	LabelInstance = "kropipe.io/instance"
	LabelRGD      = "kropipe.io/rgd"
	LabelResource = "kropipe.io/resource"
	// SyncWaveAnnotation is Argo CD's ordering annotation.
	SyncWaveAnnotation = "argocd.argoproj.io/sync-wave"
)

type options struct {
	rgdPaths    []string
	crdPaths    []string
	namespace   string
	syncWaves   bool
	kubeVersion string
	apiVersions []string
	warnings    io.Writer
	workDir     string
	repoFolder  string
	allowEmpty  bool
	nested      NestedMode
	cache       *DefinitionCache
}

// Option configures an Engine.
type Option func(*options)

// WithRGDPaths names the files or folders holding ResourceGraphDefinitions, relative to the
// repository root unless absolute. Without it the whole repository is scanned.
func WithRGDPaths(paths ...string) Option {
	return func(o *options) { o.rgdPaths = append(o.rgdPaths, paths...) }
}

// WithCRDPaths adds files or folders holding CustomResourceDefinitions whose schemas type-check
// RGD templates that create custom kinds.
func WithCRDPaths(paths ...string) Option {
	return func(o *options) { o.crdPaths = append(o.crdPaths, paths...) }
}

// WithNamespace is the namespace for instances that have none (Argo CD's ARGOCD_APP_NAMESPACE).
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithSyncWaves turns the argocd.argoproj.io/sync-wave annotations on or off (default on).
func WithSyncWaves(on bool) Option { return func(o *options) { o.syncWaves = on } }

// WithKubeVersion picks the built-in schemas closest to the target cluster (KUBE_VERSION).
func WithKubeVersion(v string) Option { return func(o *options) { o.kubeVersion = v } }

// WithAPIVersions lists what the target cluster serves (KUBE_API_VERSIONS); objects of other
// API versions are reported as warnings.
func WithAPIVersions(v []string) Option { return func(o *options) { o.apiVersions = v } }

// WithWarnings receives warnings, one per line (default: discarded).
func WithWarnings(w io.Writer) Option { return func(o *options) { o.warnings = w } }

// WithAllowEmpty lets Render return an empty stream instead of ErrEmptyRender (the plugin
// parameter allow-empty), for applications that are meant to hold nothing for a while.
func WithAllowEmpty(on bool) Option { return func(o *options) { o.allowEmpty = on } }

// WithNestedInstances chooses what happens to RGD resources that are instances of other RGDs
// of the repository (default NestedExpand).
func WithNestedInstances(m NestedMode) Option { return func(o *options) { o.nested = m } }

// WithDefinitionCache shares compiled RGDs with other Engines (the render server's warm state).
// Output, errors and warnings are the same with or without it.
func WithDefinitionCache(c *DefinitionCache) Option { return func(o *options) { o.cache = c } }

// WithWorkDir is the folder relative paths given to Render resolve from (default: the root).
func WithWorkDir(dir string) Option { return func(o *options) { o.workDir = dir } }

// WithRepoFolder says the root holds only this folder of the repository (slash-separated,
// repository-relative; default: the whole repository), as when Argo CD streams a plugin only
// the common folder of an application's manifest-generate-paths. rgd-paths and crd-paths stay
// repository paths, one outside the folder is an ErrNotInFolder error, and messages name files
// by their repository path.
func WithRepoFolder(folder string) Option { return func(o *options) { o.repoFolder = folder } }

// Engine renders the instances of one repository. Definitions are found once, when the engine
// is made, and compiled on first use.
type Engine struct {
	root repoRoot
	opts options
	set  *schemas.Set
	// setDigest stands for every CRD added to set, in order: part of each cache key.
	setDigest cacheKey
	looked    string // where definitions were searched, for "no RGD" errors
	// skipped lists definition documents that could not be read, for "no RGD" errors.
	skipped []string

	mu       sync.Mutex
	sources  map[schema.GroupVersionKind][]rgdSource
	compiled map[schema.GroupVersionKind]*Definition

	warnMu sync.Mutex
	warned map[string]bool
}

type rgdSource struct {
	doc document
	rgd *v1alpha1.ResourceGraphDefinition
}

// New finds the ResourceGraphDefinitions and CRDs of the repository at root.
func New(root string, opts ...Option) (*Engine, error) {
	o := options{syncWaves: true, warnings: io.Discard, nested: NestedExpand}
	for _, opt := range opts {
		opt(&o)
	}
	r, err := newRepoRoot(root)
	if err != nil {
		return nil, err
	}
	if r.folder, err = repoFolder(o.repoFolder); err != nil {
		return nil, err
	}
	if o.workDir == "" {
		o.workDir = r.dir
	}
	e := &Engine{
		root:     r,
		opts:     o,
		sources:  map[schema.GroupVersionKind][]rgdSource{},
		compiled: map[schema.GroupVersionKind]*Definition{},
		warned:   map[string]bool{},
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	// A definition file found by the repository scan that cannot be read must not break every
	// application of the repository: it is reported as a warning, and named again if an
	// instance then finds no RGD. A file named explicitly (--rgd, --crd, rgd-paths, crd-paths)
	// with a duplicate key fails: which of its two values counts is anyone's guess.
	explicit := false
	collect := func(rel string, data []byte) error {
		docs, err := o.cache.splitDocuments(rel, data)
		if err != nil {
			if explicit && errors.Is(err, ErrDuplicateKey) {
				return err
			}
			e.skip(err)
			return nil
		}
		for _, d := range docs {
			switch {
			case isRGD(d):
				rgd, err := decodeRGD(d)
				if err != nil {
					e.skip(err)
					continue
				}
				gvk := instanceGVK(rgd)
				e.sources[gvk] = append(e.sources[gvk], rgdSource{doc: d, rgd: rgd})
			case isCRD(d):
				parsed, err := schemas.ParseCRDs(d.raw)
				if err != nil {
					e.skip(fmt.Errorf("%s: %w", d.where(), err))
					continue
				}
				crds = append(crds, parsed...)
			}
		}
		return nil
	}
	if len(o.rgdPaths) > 0 {
		explicit = true
		if err := e.walkPaths("rgd-paths", o.rgdPaths, collect); err != nil {
			return nil, err
		}
		e.looked = "rgd-paths " + strings.Join(o.rgdPaths, ", ")
	} else {
		if err := r.walkDefinitions(r.dir, collect); err != nil {
			return nil, err
		}
		e.looked = "the whole repository " + r.dir
		if r.folder != "" {
			e.looked = "the folder " + r.folder + " (all of the repository that is present)"
		}
	}
	explicit = true
	if err := e.walkPaths("crd-paths", o.crdPaths, collect); err != nil {
		return nil, err
	}
	e.set, err = schemas.New(
		schemas.WithKubeVersion(o.kubeVersion),
		schemas.WithWarnings(func(msg string) { e.warn(msg) }),
	)
	if err != nil {
		return nil, err
	}
	for _, crd := range crds {
		if err := e.addCRD(crd); err != nil {
			e.skip(err)
		}
	}
	return e, nil
}

func (e *Engine) walkPaths(param string, paths []string, visit func(rel string, data []byte) error) error {
	for _, p := range paths {
		inRoot, err := e.root.fromRepoPath(param, p)
		if err != nil {
			return err
		}
		abs, _, err := e.root.resolve(e.root.dir, inRoot)
		if err != nil {
			return err
		}
		if err := e.root.walkDefinitions(abs, visit); err != nil {
			return err
		}
	}
	return nil
}

func isRGD(d document) bool {
	return d.obj.GetKind() == "ResourceGraphDefinition" && strings.HasPrefix(d.obj.GetAPIVersion(), "kro.run/")
}

func isCRD(d document) bool {
	return d.obj.GetKind() == "CustomResourceDefinition" && strings.HasPrefix(d.obj.GetAPIVersion(), "apiextensions.k8s.io/")
}

// skip records a definition file that could not be used.
func (e *Engine) skip(err error) {
	e.skipped = append(e.skipped, err.Error())
	e.warn("skipped: " + err.Error())
}

func (e *Engine) warn(msg string) {
	e.warnMu.Lock()
	defer e.warnMu.Unlock()
	if e.warned[msg] {
		return
	}
	e.warned[msg] = true
	fmt.Fprintf(e.opts.warnings, "warning: %s\n", msg)
}

// Definition returns the compiled RGD for an instance apiVersion/kind, or an error naming the
// kind and where the engine looked.
func (e *Engine) Definition(gvk schema.GroupVersionKind) (*Definition, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.definitionLocked(gvk, map[schema.GroupVersionKind]bool{})
}

// definitionLocked compiles the RGD for gvk. An RGD whose resources are instances of other RGDs
// (nested RGDs) gets their synthesized CRDs first, so its templates are type-checked against
// them as in a cluster where kro has installed those CRDs.
func (e *Engine) definitionLocked(gvk schema.GroupVersionKind, visiting map[schema.GroupVersionKind]bool) (*Definition, error) {
	if d, ok := e.compiled[gvk]; ok {
		return d, nil
	}
	srcs := e.sources[gvk]
	switch len(srcs) {
	case 0:
		var also string
		if len(e.skipped) > 0 {
			also = "; these definition files could not be read:\n  - " + strings.Join(e.skipped, "\n  - ")
		}
		return nil, fmt.Errorf("%w %s (apiVersion %s); looked in %s: "+
			"add the RGD to the repository or name its folder with the rgd-paths parameter (--rgd)%s",
			ErrNoRGD, gvk.Kind, gvk.GroupVersion(), e.looked, also)
	case 1:
	default:
		var files []string
		for _, s := range srcs {
			files = append(files, fmt.Sprintf("%s (%q)", s.doc.where(), s.doc.obj.GetName()))
		}
		return nil, fmt.Errorf("kind %s (apiVersion %s) %w: %s; "+
			"keep one, or narrow the search with the rgd-paths parameter (--rgd)",
			gvk.Kind, gvk.GroupVersion(), ErrDuplicateRGD, strings.Join(files, " and "))
	}
	src := srcs[0]
	visiting[gvk] = true
	for _, nested := range nestedKinds(src.rgd) {
		if _, isRGD := e.sources[nested]; !isRGD || visiting[nested] {
			continue
		}
		inner, err := e.definitionLocked(nested, visiting)
		if err != nil {
			return nil, fmt.Errorf("%s: nested %s: %w", src.doc.where(), nested.Kind, err)
		}
		if err := e.addCRD(inner.CRD()); err != nil {
			return nil, fmt.Errorf("%s: nested %s: %w", src.doc.where(), nested.Kind, err)
		}
	}
	d, err := e.compile(src)
	if err != nil {
		return nil, err
	}
	e.compiled[gvk] = d
	return d, nil
}

// addCRD adds a CRD to the schema set and to the digest that cache keys carry.
func (e *Engine) addCRD(crd *apiextensionsv1.CustomResourceDefinition) error {
	if err := e.set.AddCRD(crd); err != nil {
		return err
	}
	e.setDigest = chainDigest(e.setDigest, crd)
	return nil
}

// compile compiles one RGD, or takes it from the DefinitionCache. Failures are not cached: they
// are cheap to find again and their messages name the file.
func (e *Engine) compile(src rgdSource) (*Definition, error) {
	file := src.doc.where()
	if e.opts.cache == nil {
		return Compile(src.rgd, file, e.set)
	}
	key, err := definitionKey(src.rgd, e.set.KubeVersion(), e.setDigest, DefaultCostLimit)
	if err != nil {
		return Compile(src.rgd, file, e.set)
	}
	reuse := func(cached *Definition) *Definition {
		e.replayWarnings(nestedKinds(src.rgd))
		d := *cached // shares the immutable compiled parts; the file is this request's
		d.File = file
		return &d
	}
	if cached, ok := e.opts.cache.get(key, false); ok {
		return reuse(cached), nil
	}
	e.opts.cache.compiling.Lock()
	defer e.opts.cache.compiling.Unlock()
	if cached, ok := e.opts.cache.get(key, true); ok { // compiled while this request waited
		return reuse(cached), nil
	}
	before := allocatedBytes()
	d, err := Compile(src.rgd, file, e.set)
	if err != nil {
		return nil, err
	}
	e.opts.cache.add(key, d, allocatedBytes()-before)
	return d, nil
}

// nestedKinds lists the apiVersion/kinds of an RGD's resource templates.
func nestedKinds(rgd *v1alpha1.ResourceGraphDefinition) []schema.GroupVersionKind {
	var out []schema.GroupVersionKind
	for _, r := range rgd.Spec.Resources {
		if r == nil || r.Template.Raw == nil {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if json.Unmarshal(r.Template.Raw, &tm) == nil && tm.Kind != "" {
			out = append(out, schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind))
		}
	}
	return out
}

// Render renders the instance files and application folders at paths (relative to the work
// dir) into one YAML stream: each instance becomes its objects, other Kubernetes documents
// pass through byte for byte, RGDs are left out. Nothing is returned on error.
//
// Rendering no object at all is an error (ErrEmptyRender) unless WithAllowEmpty: Argo CD would
// take an empty stream as "this application has no objects" and prune every one it has.
func (e *Engine) Render(ctx context.Context, paths ...string) ([]byte, error) {
	var out bytes.Buffer
	var read []string
	for _, p := range paths {
		files, err := e.root.listAppFiles(e.opts.workDir, p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if err := e.renderFile(ctx, f, &out); err != nil {
				return nil, err
			}
			read = append(read, e.root.display(f))
		}
	}
	if out.Len() == 0 && !e.opts.allowEmpty {
		return nil, e.emptyError(paths, read)
	}
	return out.Bytes(), nil
}

var (
	// ErrNoRGD is returned (wrapped) when no RGD defines an instance's kind.
	ErrNoRGD = errors.New("no ResourceGraphDefinition defines kind")
	// ErrDuplicateRGD is returned (wrapped) when two RGDs define one kind.
	ErrDuplicateRGD = errors.New("is defined by more than one ResourceGraphDefinition")
)

// ErrEmptyRender is returned (wrapped) when the paths rendered no object.
var ErrEmptyRender = errors.New("rendered no Kubernetes object")

func (e *Engine) emptyError(paths, read []string) error {
	var where []string
	for _, p := range paths {
		where = append(where, e.root.display(absIn(e.opts.workDir, p)))
	}
	files := "no YAML file"
	if len(read) > 0 {
		files = "the files " + strings.Join(read, ", ") + " (empty, only comments or ---, or instances whose RGD creates nothing)"
	}
	return fmt.Errorf("%s: %w from %s: an empty result would let Argo CD prune every object of the "+
		"application; add an instance or a manifest, or set the plugin parameter allow-empty: \"true\" "+
		"(--allow-empty) if the application is meant to be empty", strings.Join(where, ", "), ErrEmptyRender, files)
}

func absIn(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

func (e *Engine) renderFile(ctx context.Context, abs string, out *bytes.Buffer) error {
	_, rel, err := e.root.resolve(e.root.dir, abs)
	if err != nil {
		return err
	}
	data, err := readFile(abs, rel)
	if err != nil {
		return err
	}
	docs, err := e.opts.cache.splitDocuments(rel, data)
	if err != nil {
		return err
	}
	for _, d := range docs {
		gvk := d.obj.GroupVersionKind()
		switch {
		case isRGD(d):
			continue
		case d.obj.GetAPIVersion() == "" || d.obj.GetKind() == "":
			return fmt.Errorf("%s: not a Kubernetes object: apiVersion and kind are required", d.where())
		case e.isInstance(gvk, rel):
			def, err := e.Definition(gvk)
			if err != nil {
				return fmt.Errorf("%s: %w", d.where(), err)
			}
			objs, err := e.renderTree(ctx, d.where(), def, d.obj, e.namespace(), nil, nil)
			if err != nil {
				return err
			}
			waves := waveRanks(objs)
			for i, o := range objs {
				e.decorateNested(o, d.obj.GetName(), waves[i])
				b, err := marshalYAML(o.Object.Object.Object)
				if err != nil {
					return fmt.Errorf("%s: resource %q: %w", d.where(), o.NodeID, err)
				}
				writeDoc(out, b)
			}
		default:
			e.checkServed(d.where(), d.obj.GetAPIVersion(), d.obj.GetKind())
			writeDoc(out, d.raw)
		}
	}
	return nil
}

// isInstance decides whether a document is a kro instance: its kind is defined by an RGD, or
// it claims to be one (kro's default group, or a file named instance.yaml) and is not a kind
// the schemas know, in which case the missing RGD is an error rather than a silent pass-through.
func (e *Engine) isInstance(gvk schema.GroupVersionKind, rel string) bool {
	e.mu.Lock()
	_, defined := e.sources[gvk]
	e.mu.Unlock()
	if defined {
		return true
	}
	if gvk.Group == "kro.run" {
		return true
	}
	return filepath.Base(rel) == "instance.yaml" && !e.set.Known(gvk)
}

func (e *Engine) namespace() string {
	if e.opts.namespace != "" {
		return e.opts.namespace
	}
	return "default"
}

// checkServed warns when Argo CD told us (KUBE_API_VERSIONS) the target cluster does not serve
// an object's API version: the sync would fail there.
func (e *Engine) checkServed(what, apiVersion, kind string) {
	if len(e.opts.apiVersions) == 0 {
		return
	}
	for _, v := range e.opts.apiVersions {
		if v == apiVersion || v == apiVersion+"/"+kind {
			return
		}
	}
	e.warn(fmt.Sprintf("%s: the target cluster does not serve %s (KUBE_API_VERSIONS)", what, apiVersion))
}

func writeDoc(out *bytes.Buffer, b []byte) {
	b = bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimLeft(b, "\n"), []byte("---")))
	if len(b) == 0 {
		return
	}
	out.WriteString("---\n")
	out.Write(b)
	out.WriteByte('\n')
}

// labelValue keeps a value within the 63 characters of a label value; longer names keep a
// readable prefix and a hash so two long names do not collide.
func labelValue(v string) string {
	if len(v) <= 63 {
		return v
	}
	h := fnv.New64a()
	h.Write([]byte(v))
	return strings.TrimRight(v[:46], "-_.") + "-" + fmt.Sprintf("%016x", h.Sum64())
}
