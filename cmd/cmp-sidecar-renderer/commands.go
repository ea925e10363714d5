package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kropipe/kropipe/internal/render"
	"github.com/kropipe/kropipe/internal/version"
)

// kroModule is the module whose packages render instances; its version is pinned in go.mod.
const kroModule = "github.com/kubernetes-sigs/kro"

// kroVersion is the kro release linked into this binary, read from its build information so
// `version` cannot name another release than the one that renders.
func kroVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == kroModule {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

func newRootCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:           "cmp-sidecar",
		Short:         "Render Kro instances into plain Kubernetes manifests, offline",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newGenerateCommand(stdout, stderr, getenv), newRenderCommand(stdout, stderr), newVersionCommand(stdout), newServeCommand(stderr, getenv))
	return root
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "cmp-sidecar %s (kro %s)\n", version.Version, kroVersion())
			return err
		},
	}
}

func newRenderCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		rgds, crds  []string
		namespace   string
		noWaves     bool
		allowEmpty  bool
		nested      string
		root        string
		kubeVersion string
	)
	cmd := &cobra.Command{
		Use:   "render [--rgd PATH]... [--crd PATH]... [-n NAMESPACE] [--no-sync-waves] PATH...",
		Short: "Render instance files or application folders to standard output",
		Long: "Render instance files or application folders (their YAML files, not sub-folders) the\n" +
			"way the Argo CD plugin does. RGDs are searched in --rgd paths, else in the whole\n" +
			"repository: --root, else the Git work tree holding the first PATH, else (no .git) the\n" +
			"nearest common ancestor of every PATH, --rgd and --crd (the working directory when it\n" +
			"holds them all).",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			if root == "" {
				named := append(append(absPaths(wd, paths), absPaths(wd, rgds)...), absPaths(wd, crds)...)
				root = findRepoRoot(wd, named)
			}
			mode, err := render.ParseNestedMode(nested)
			if err != nil {
				return fmt.Errorf("--%w", err)
			}
			opts := []render.Option{
				render.WithNestedInstances(mode),
				render.WithRGDPaths(absPaths(wd, rgds)...),
				render.WithCRDPaths(absPaths(wd, crds)...),
				render.WithNamespace(namespace),
				render.WithSyncWaves(!noWaves),
				render.WithAllowEmpty(allowEmpty),
				render.WithKubeVersion(kubeVersion),
				render.WithWarnings(stderr),
				render.WithWorkDir(wd),
			}
			return renderTo(cmd.Context(), stdout, root, paths, opts)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&rgds, "rgd", nil, "file or folder holding ResourceGraphDefinitions (repeatable); default: scan the repository")
	f.StringArrayVar(&crds, "crd", nil, "file or folder holding CustomResourceDefinitions for type checking (repeatable)")
	f.StringVarP(&namespace, "namespace", "n", "", "namespace for instances that have none (default \"default\")")
	f.BoolVar(&noWaves, "no-sync-waves", false, "do not add argocd.argoproj.io/sync-wave annotations")
	f.StringVar(&nested, "nested-instances", string(render.NestedExpand), "expand: render instances of other RGDs into their objects; emit: print them as they are")
	f.BoolVar(&allowEmpty, "allow-empty", false, "succeed with no output when the paths render no object (default: fail)")
	f.StringVar(&root, "root", "", "repository root that confines every path (default: the Git work tree of the first PATH, else the common ancestor of all paths named)")
	f.StringVar(&kubeVersion, "kube-version", "", "Kubernetes version whose built-in schemas to use (default: the newest embedded)")
	return cmd
}

// renderTo renders everything before writing anything, so a failure leaves stdout empty.
func renderTo(ctx context.Context, stdout io.Writer, root string, paths []string, opts []render.Option) error {
	if ctx == nil {
		ctx = context.Background()
	}
	engine, err := render.New(root, opts...)
	if err != nil {
		return err
	}
	out, err := engine.Render(ctx, paths...)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func newGenerateCommand(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	return &cobra.Command{
		Use:   "generate",
		Short: "Argo CD plugin generate command: render the application folder (the working directory)",
		Long: "Run by argocd-cmp-server in the application's folder. Reads Argo CD's environment (v2.14 and v3):\n" +
			"ARGOCD_APP_NAME, ARGOCD_APP_PROJECT_NAME, ARGOCD_APP_NAMESPACE, ARGOCD_APP_SOURCE_PATH, ARGOCD_APP_REVISION,\n" +
			"KUBE_VERSION, KUBE_API_VERSIONS, the plugin parameters (ARGOCD_APP_PARAMETERS, PARAM_*)\n" +
			"and ARGOCD_ENV_* variables.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			return generate(cmd.Context(), wd, getenv, stdout, stderr)
		},
	}
}

// generate renders the application folder wd as Argo CD asked (getenv), writing the whole stream
// to stdout or nothing. The render server runs it for each request with its DefinitionCache.
func generate(ctx context.Context, wd string, getenv func(string) string, stdout, stderr io.Writer, extra ...render.Option) error {
	env, err := readPluginEnv(getenv)
	if err != nil {
		return err
	}
	root, folder := env.streamedRoot(wd, stderr)
	opts := append([]render.Option{
		render.WithRGDPaths(env.rgdPaths...),
		render.WithCRDPaths(env.crdPaths...),
		render.WithNamespace(env.namespace),
		render.WithSyncWaves(env.syncWaves),
		render.WithAllowEmpty(env.allowEmpty),
		render.WithNestedInstances(env.nested),
		render.WithKubeVersion(env.kubeVersion),
		render.WithAPIVersions(env.apiVersions),
		render.WithWarnings(stderr),
		render.WithWorkDir(wd),
		render.WithRepoFolder(folder),
	}, extra...)
	var out bytes.Buffer
	if err := renderTo(ctx, &out, root, []string{"."}, opts); err != nil {
		return fmt.Errorf("%s: %w", env.describe(), env.streamedHint(err, folder))
	}
	_, err = stdout.Write(out.Bytes())
	return err
}

// pluginEnv is what Argo CD tells a plugin about the application being rendered.
//
// Both Argo CD lines are read the same way. v2.14 drops ARGOCD_ENV_* variables whose value is
// empty; v3 passes them (and adds ARGOCD_APP_PROJECT_NAME). An empty value means "not set" for
// every variable and parameter here — each one's empty form is its default — so an
// Application's `plugin.env: [{name: SYNC_WAVES, value: ""}]` renders alike on both lines.
type pluginEnv struct {
	appName, project, namespace, sourcePath string
	revision                                string
	kubeVersion                             string
	apiVersions                             []string
	rgdPaths, crdPaths                      []string
	syncWaves, allowEmpty                   bool
	nested                                  render.NestedMode
}

func (e pluginEnv) describe() string {
	s := "application"
	if e.appName != "" {
		s += " " + e.appName
	}
	if e.project != "" {
		s += " (project " + e.project + ")"
	}
	if e.revision != "" {
		s += " at revision " + e.revision
	}
	return s
}

// streamedRoot finds the root of the tree argocd-cmp-server extracted, and the repository
// folder it holds ("" for the whole repository). The plugin runs in the application's folder
// inside that tree, and ARGOCD_APP_SOURCE_PATH is the folder's repository path. Argo CD streams
// the whole repository, or — with reposerver.plugin.use.manifest.generate.paths — only the
// common folder of the application path and its manifest-generate-paths annotation, never one
// below the application folder (getApplicationRootPath). Either way the working directory
// ends with the source path's last components below the streamed folder: the longest such
// ending is stripped. The extraction folder itself is a random name under the cmp-server's
// work directory, which no folder of the repository repeats.
func (e pluginEnv) streamedRoot(wd string, stderr io.Writer) (root, folder string) {
	src := filepath.Clean(filepath.FromSlash(e.sourcePath))
	if src == "." || src == "" || src == string(filepath.Separator) {
		return wd, ""
	}
	if strings.HasPrefix(src, "..") || filepath.IsAbs(src) {
		fmt.Fprintf(stderr, "warning: ARGOCD_APP_SOURCE_PATH %q is not inside the repository; using %s as its root\n", e.sourcePath, wd)
		return wd, ""
	}
	parts := strings.Split(src, string(filepath.Separator))
	for k := len(parts); k > 0; k-- {
		suffix := string(filepath.Separator) + filepath.Join(parts[len(parts)-k:]...)
		if strings.HasSuffix(wd, suffix) {
			return strings.TrimSuffix(wd, suffix), filepath.ToSlash(filepath.Join(parts[:len(parts)-k]...))
		}
	}
	// Argo CD streamed the application folder alone (manifest-generate-paths inside it).
	return wd, filepath.ToSlash(src)
}

// streamedHint tells what to do when an RGD or CRD is missing from the part of the repository
// Argo CD streamed (folder, see streamedRoot): name its folder in the annotation.
func (e pluginEnv) streamedHint(err error, folder string) error {
	if folder == "" || !(errors.Is(err, render.ErrNotInFolder) || errors.Is(err, render.ErrNoRGD)) {
		return err
	}
	add := "the folder of the RGDs"
	if len(e.rgdPaths) > 0 {
		add = strings.Join(e.rgdPaths, " and ")
	}
	return fmt.Errorf("%w; Argo CD sent the plugin only %s/, the common folder of the application path and its "+
		"argocd.argoproj.io/manifest-generate-paths annotation (reposerver.plugin.use.manifest.generate.paths is on): "+
		"add %s to that annotation (entries separated by \";\", a leading \"/\" for a repository path), "+
		"e.g. \".;/%s\"", err, folder, add, firstOr(e.rgdPaths, "rgds"))
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return strings.TrimPrefix(list[0], "/")
	}
	return def
}

// appParameter is one element of ARGOCD_APP_PARAMETERS.
type appParameter struct {
	Name   string            `json:"name"`
	String *string           `json:"string,omitempty"`
	Array  []string          `json:"array,omitempty"`
	Map    map[string]string `json:"map,omitempty"`
}

// readPluginEnv reads the Argo CD plugin contract. A parameter is looked up in
// ARGOCD_APP_PARAMETERS, then PARAM_<NAME>, then ARGOCD_ENV_<NAME> (the app's plugin env).
func readPluginEnv(getenv func(string) string) (pluginEnv, error) {
	e := pluginEnv{
		appName:     getenv("ARGOCD_APP_NAME"),
		project:     getenv("ARGOCD_APP_PROJECT_NAME"),
		namespace:   getenv("ARGOCD_APP_NAMESPACE"),
		sourcePath:  getenv("ARGOCD_APP_SOURCE_PATH"),
		revision:    getenv("ARGOCD_APP_REVISION"),
		kubeVersion: getenv("KUBE_VERSION"),
		apiVersions: splitList(getenv("KUBE_API_VERSIONS")),
		syncWaves:   true,
	}
	params := map[string][]string{}
	if raw := getenv("ARGOCD_APP_PARAMETERS"); strings.TrimSpace(raw) != "" {
		var list []appParameter
		if err := json.Unmarshal([]byte(raw), &list); err != nil {
			return e, fmt.Errorf("ARGOCD_APP_PARAMETERS is not the JSON list Argo CD sends: %w", err)
		}
		for _, p := range list {
			switch {
			case p.String != nil:
				params[p.Name] = splitList(*p.String)
			case p.Array != nil:
				params[p.Name] = p.Array
			}
		}
	}
	lookup := func(name string) ([]string, bool) {
		if v, ok := params[name]; ok {
			return v, true
		}
		envName := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		for _, key := range []string{"PARAM_" + envName, "ARGOCD_ENV_" + envName} {
			if v := getenv(key); strings.TrimSpace(v) != "" { // v3 passes empty ones: unset
				return splitList(v), true
			}
		}
		return nil, false
	}
	e.rgdPaths, _ = lookup("rgd-paths")
	e.crdPaths, _ = lookup("crd-paths")
	var err error
	if e.syncWaves, err = boolParameter(lookup, "sync-waves", true); err != nil {
		return e, err
	}
	if e.allowEmpty, err = boolParameter(lookup, "allow-empty", false); err != nil {
		return e, err
	}
	nested, _ := lookup("nested-instances")
	if e.nested, err = render.ParseNestedMode(strings.Join(nested, ",")); err != nil {
		return e, fmt.Errorf("plugin parameter %w", err)
	}
	return e, nil
}

// boolParameter reads a "true"/"false" plugin parameter; unset or empty keeps the default.
func boolParameter(lookup func(string) ([]string, bool), name string, def bool) (bool, error) {
	v, ok := lookup(name)
	if !ok || len(v) == 0 {
		return def, nil
	}
	on, err := strconv.ParseBool(v[0])
	if err != nil {
		return def, fmt.Errorf("plugin parameter %s: %q is not a boolean: use \"true\" or \"false\"", name, v[0])
	}
	return on, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func absPath(wd, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(wd, p)
}

func absPaths(wd string, ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = absPath(wd, p)
	}
	return out
}

// findRepoRoot returns the Git work tree holding the first path (the nearest folder at or
// above it with .git). Outside Git (an extracted tarball, a scratch folder) it is the nearest
// common ancestor of every path named on the command line, so each of them is inside it —
// widened to the working directory when they all lie inside it, so that
// `cd repo && cmp-sidecar render develop/frontend` still scans the whole of repo for RGDs.
// generate does not use this: Argo CD tells it the root (ARGOCD_APP_SOURCE_PATH).
func findRepoRoot(wd string, paths []string) string {
	dirs := make([]string, len(paths))
	for i, p := range paths {
		dirs[i] = filepath.Clean(p)
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			dirs[i] = filepath.Dir(dirs[i])
		}
	}
	for d := dirs[0]; ; {
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	common := dirs[0]
	for _, d := range dirs[1:] {
		for !within(common, d) {
			common = filepath.Dir(common)
		}
	}
	if within(wd, common) {
		return wd
	}
	return common
}

// within reports whether dir is base or inside it.
func within(base, dir string) bool {
	rel, err := filepath.Rel(base, dir)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
