package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// MaxFileSize bounds every file the engine reads: the repo-server hands us whatever the
	// repository holds, and a single huge file must not exhaust the sidecar.
	MaxFileSize = 1 << 20
	// maxScanFiles bounds the repository scan for RGDs and CRDs.
	maxScanFiles = 50000
)

// skipDirs are never scanned for RGDs: VCS metadata and vendored trees hold no definitions
// of this repository and can be very large.
var skipDirs = map[string]bool{".git": true, "vendor": true, "node_modules": true, ".hg": true, ".svn": true}

// document is one YAML document of a file, with its original bytes kept so plain manifests
// pass through byte for byte.
type document struct {
	file  string // path relative to the repository root, for messages
	index int    // 1-based position of the document in its file
	raw   []byte
	obj   *unstructured.Unstructured // nil when the document is empty
}

func (d document) where() string {
	if d.index > 1 {
		return fmt.Sprintf("%s (document %d)", d.file, d.index)
	}
	return d.file
}

// repoRoot confines every path the engine opens to one directory tree, after symlinks are
// followed: a repository must not be able to make the repo-server read files outside it.
type repoRoot struct {
	dir string // absolute, symlinks evaluated
	// folder is the repository folder dir holds ("" for the whole repository): files are
	// named in messages, and rgd-paths read, by their repository path.
	folder string
}

// repoFolder checks and cleans WithRepoFolder's folder.
func repoFolder(folder string) (string, error) {
	f := path.Clean(filepath.ToSlash(folder))
	switch {
	case folder == "" || f == "." || f == "/":
		return "", nil
	case path.IsAbs(f) || f == ".." || strings.HasPrefix(f, "../"):
		return "", fmt.Errorf("repository folder %q: %w", folder, ErrOutsideRoot)
	}
	return f, nil
}

// ErrNotInFolder is returned (wrapped) for an rgd-paths or crd-paths entry outside the only
// folder of the repository that is present (WithRepoFolder).
var ErrNotInFolder = errors.New("is outside the only folder of the repository present")

// fromRepoPath maps a repository-relative path (an rgd-paths or crd-paths entry, param) to
// one relative to dir. Absolute paths are the file system's and pass unchanged.
func (r repoRoot) fromRepoPath(param, p string) (string, error) {
	if r.folder == "" || filepath.IsAbs(p) {
		return p, nil
	}
	clean := path.Clean(filepath.ToSlash(p))
	if clean == r.folder {
		return ".", nil
	}
	if rest, ok := strings.CutPrefix(clean, r.folder+"/"); ok {
		return filepath.FromSlash(rest), nil
	}
	return "", fmt.Errorf("%s %q %w (%s)", param, p, ErrNotInFolder, r.folder)
}

// repoPath names a dir-relative path (slash-separated) by its repository path.
func (r repoRoot) repoPath(rel string) string {
	if r.folder == "" {
		return rel
	}
	return path.Join(r.folder, rel)
}

func newRepoRoot(dir string) (repoRoot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return repoRoot{}, fmt.Errorf("repository root %q: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return repoRoot{}, fmt.Errorf("repository root %q: %w", dir, err)
	}
	return repoRoot{dir: real}, nil
}

// resolve turns p (absolute, or relative to base) into an absolute path inside the root,
// returning it with its root-relative form for messages.
func (r repoRoot) resolve(base, p string) (abs, rel string, err error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	p = filepath.Clean(p)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("%s: no such file or directory: %w", r.display(p), fs.ErrNotExist)
		}
		return "", "", fmt.Errorf("%s: %w", r.display(p), err)
	}
	rel, err = filepath.Rel(r.dir, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", "", fmt.Errorf("%s resolves to %s, %w %s: "+
			"keep instances, RGDs and CRDs inside the repository", r.display(p), real, ErrOutsideRoot, r.dir)
	}
	return real, r.repoPath(filepath.ToSlash(rel)), nil
}

func (r repoRoot) display(p string) string {
	if rel, err := filepath.Rel(r.dir, p); err == nil && !strings.HasPrefix(rel, "..") {
		return r.repoPath(filepath.ToSlash(rel))
	}
	return p
}

func isYAMLFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// readFile reads a file inside the root, refusing anything over MaxFileSize.
func readFile(abs, rel string) ([]byte, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w of %d KiB: split it, or keep large "+
			"data out of the application folder", rel, ErrFileTooLarge, MaxFileSize>>10)
	}
	return data, nil
}

// splitDocuments splits a YAML stream into documents and decodes each one. YAML aliases are
// expanded by the decoder with its own bound, so an alias bomb fails here with a clear error
// instead of exhausting memory.
func splitDocuments(rel string, data []byte) ([]document, error) {
	if err := checkDuplicateKeys(rel, data); err != nil {
		return nil, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: cannot split YAML documents: %w", rel, err)
		}
		d := document{file: rel, index: i, raw: raw}
		var m map[string]interface{}
		if err := yaml.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: malformed YAML: %w", d.where(), yamlSyntaxError{err})
		}
		if len(m) == 0 {
			continue // comments or an empty document between separators
		}
		d.obj = &unstructured.Unstructured{Object: m}
		docs = append(docs, d)
	}
	return docs, nil
}

var (
	// ErrOutsideRoot is returned (wrapped) for a path that leaves the repository root.
	ErrOutsideRoot = errors.New("outside the repository root")
	// ErrFileTooLarge is returned (wrapped) for a file over MaxFileSize.
	ErrFileTooLarge = errors.New("file is larger than the limit")
)

// ErrDuplicateKey is returned (wrapped) for a YAML mapping that names a key twice.
var ErrDuplicateKey = errors.New("duplicate key")

// checkDuplicateKeys refuses a mapping with the same key twice, at any depth of any document.
// The YAML→JSON step would keep the last value silently, while the promoter edits the first
// one: Git would say one tag was promoted while another runs. yaml.v3's decoder reports the
// duplicate with lines counted from the start of the file, not of the document.
func checkDuplicateKeys(rel string, data []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for {
		var v interface{}
		err := dec.Decode(&v)
		if err == nil {
			continue
		}
		var typeErr *yamlv3.TypeError
		if !errors.As(err, &typeErr) {
			return nil // end of the stream, or a syntax error the YAML→JSON step reports in its words
		}
		for _, msg := range typeErr.Errors {
			if strings.Contains(msg, "already defined") {
				return fmt.Errorf("%s: %w: %s: keep one of them (kubectl and the API server refuse such a "+
					"document, and tools disagree on which value wins)", rel, ErrDuplicateKey, msg)
			}
		}
	}
}

// yamlSyntaxError shows a YAML decoding error without the converter's prefix.
type yamlSyntaxError struct{ err error }

func (e yamlSyntaxError) Error() string {
	return strings.TrimPrefix(e.err.Error(), "error converting YAML to JSON: ")
}
func (e yamlSyntaxError) Unwrap() error { return e.err }

// listAppFiles returns the YAML files a path names: the file itself, or the YAML files
// directly inside a folder (not its sub-folders, as Argo CD's directory source does by
// default), sorted for deterministic output.
func (r repoRoot) listAppFiles(base, p string) ([]string, error) {
	abs, rel, err := r.resolve(base, p)
	if err != nil {
		return nil, err
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	if !info.IsDir() {
		return []string{abs}, nil
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || !isYAMLFile(e.Name()) {
			continue
		}
		files = append(files, filepath.Join(abs, e.Name()))
	}
	sort.Strings(files)
	return files, nil
}

// walkDefinitions visits every YAML file under dir (inside the root) that may hold an RGD or
// a CRD, bounded in file size and count. Files whose bytes do not mention either kind are
// skipped without parsing: most of a repository is neither.
func (r repoRoot) walkDefinitions(dir string, visit func(rel string, data []byte) error) error {
	count := 0
	// Most files of a scanned repository are not definitions: they are read into one reused
	// buffer, and only a candidate's bytes are copied out for visit.
	var buf bytes.Buffer
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", r.display(path), err)
		}
		if d.IsDir() {
			if path != dir && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isYAMLFile(d.Name()) {
			return nil // symlinks are not followed by the scan
		}
		count++
		if count > maxScanFiles {
			return fmt.Errorf("more than %d YAML files under %s: name the RGD folders with the "+
				"rgd-paths parameter (or --rgd) instead of scanning the whole repository", maxScanFiles, r.display(dir))
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", r.display(path), err)
		}
		buf.Reset()
		_, err = buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", r.display(path), err)
		}
		data := buf.Bytes()
		if len(data) > MaxFileSize { // the scan skips what it could not use anyway
			return nil
		}
		if !bytes.Contains(data, []byte("ResourceGraphDefinition")) && !bytes.Contains(data, []byte("CustomResourceDefinition")) {
			return nil
		}
		return visit(r.display(path), bytes.Clone(data))
	})
}
