package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const instanceHead = `apiVersion: kro.run/v1alpha1
kind: WebApp
metadata:
  name: frontend
spec:
  values:
    deployment:
`

// rgdWith is a one-resource RGD whose ConfigMap data.value is the given expression.
func rgdWith(kind, resources string) string {
	return `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: ` + strings.ToLower(kind) + `
spec:
  schema:
    apiVersion: v1alpha1
    kind: ` + kind + `
    spec:
      name: string | default="x"
      size: integer | default=1
  resources:
` + resources
}

// rgdWithSpec is an RGD of kind with the given SimpleSchema spec lines and resources.
func rgdWithSpec(kind, spec, resources string) string {
	return "apiVersion: kro.run/v1alpha1\nkind: ResourceGraphDefinition\nmetadata:\n  name: " + strings.ToLower(kind) +
		"\nspec:\n  schema:\n    apiVersion: v1alpha1\n    kind: " + kind + "\n    spec:\n" + spec + "      name: string | default=\"x\"\n  resources:\n" + resources
}

// nestedOf is a resource that is an instance of another RGD's kind.
func nestedOf(kind string) string {
	return "    - id: nested\n      template:\n        apiVersion: kro.run/v1alpha1\n        kind: " + kind +
		"\n        metadata:\n          name: ${schema.metadata.name}-n\n"
}

func configMap(id, value string) string {
	return `    - id: ` + id + `
      template:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: ` + id + `
        data:
          value: ` + value + "\n"
}

func deployment(id string) string {
	return `    - id: ` + id + `
      template:
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: ` + id + `
        spec:
          selector:
            matchLabels: {app: ` + id + `}
          template:
            metadata:
              labels: {app: ` + id + `}
            spec:
              containers:
                - name: app
                  image: nginx
`
}

const thingInstance = "apiVersion: kro.run/v1alpha1\nkind: Thing\nmetadata:\n  name: t\n"

// TestRender_BadInputFailsClearlyWithNothingOnStdout runs the real binary on each kind of bad
// input: exit status non-zero, stdout empty, and stderr naming the file and the field.
func TestRender_BadInputFailsClearlyWithNothingOnStdout(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		path  string   // what to render, relative to the repository
		args  []string // extra flags
		want  []string
	}{
		{
			name:  "malformed YAML",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: [unclosed\n"},
			want:  []string{"app/instance.yaml", "malformed YAML", "line"},
		},
		{
			name:  "missing required field",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      tag: \"1.2.1\"\n"},
			want:  []string{"app/instance.yaml", `WebApp "frontend"`, "spec.values.deployment.image", "Required value"},
		},
		{
			name:  "maximum violated",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n      replicas: 100\n"},
			want:  []string{"app/instance.yaml", "spec.values.deployment.replicas", "less than or equal to 50"},
		},
		{
			name:  "minimum violated",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n      replicas: -1\n"},
			want:  []string{"app/instance.yaml", "spec.values.deployment.replicas", "greater than or equal to 0"},
		},
		{
			name:  "enum violated",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n      tier: database\n"},
			want:  []string{"app/instance.yaml", "spec.values.deployment.tier", "Unsupported value", `"web"`},
		},
		{
			name:  "pattern violated",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n      tag: \"bad tag!\"\n"},
			want:  []string{"app/instance.yaml", "spec.values.deployment.tag", "should match"},
		},
		{
			name:  "unknown field",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n      replica: 3\n"},
			want:  []string{"app/instance.yaml", "spec.values.deployment.replica", "unknown field"},
		},
		{
			name:  "unknown kind",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": "apiVersion: kro.run/v1alpha1\nkind: WebAp\nmetadata:\n  name: f\n"},
			want:  []string{"app/instance.yaml", "no ResourceGraphDefinition defines kind WebAp", "looked in"},
		},
		{
			name: "two RGDs define the same kind",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "platform/webapp-copy.yaml": "@webapp",
				"app/instance.yaml": instanceHead + "      image: r/f\n"},
			want: []string{"app/instance.yaml", "more than one ResourceGraphDefinition", "rgds/webapp.yaml", "platform/webapp-copy.yaml"},
		},
		{
			name:  "CEL syntax error",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", configMap("cm", "${schema.spec.name +}")), "app/instance.yaml": thingInstance},
			want:  []string{"rgds/thing.yaml", `ResourceGraphDefinition "thing"`, "schema.spec.name +", "Syntax error"},
		},
		{
			name:  "CEL type error",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", configMap("cm", "${schema.spec.name + 1}")), "app/instance.yaml": thingInstance},
			want:  []string{"rgds/thing.yaml", `resource "cm"`, "schema.spec.name + 1", "no matching overload"},
		},
		{
			name: "type error against a CRD schema",
			files: map[string]string{
				"crds/widget.yaml": widgetCRD,
				"rgds/thing.yaml": rgdWith("Thing", `    - id: widget
      template:
        apiVersion: example.com/v1
        kind: Widget
        metadata:
          name: w
        spec:
          size: ${schema.spec.name}
`), "app/instance.yaml": thingInstance},
			want: []string{"rgds/thing.yaml", `resource "widget"`, "spec.size", `expected "int"`},
		},
		{
			name: "dependency cycle",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", configMap("a", "${b.metadata.name}")+configMap("b", "${a.metadata.name}")),
				"app/instance.yaml": thingInstance},
			want: []string{"rgds/thing.yaml", "cycle"},
		},
		{
			name: "reference to another resource's status",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", deployment("a")+configMap("b", "${string(a.status.readyReplicas)}")),
				"app/instance.yaml": thingInstance},
			want: []string{"app/instance.yaml", `Thing "t"`, `resource "b"`, "field data.value", "${string(a.status.readyReplicas)}", "a.status.readyReplicas", "live cluster"},
		},
		{
			name: "reference to externalRef data",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", `    - id: shared
      externalRef:
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: shared-config
`+configMap("b", "${shared.data.region}")), "app/instance.yaml": thingInstance},
			want: []string{"app/instance.yaml", `resource "b"`, "shared.data.region", "externalRef"},
		},
		{
			name: "CEL expression over the cost limit",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing",
				configMap("cm", "${string(lists.range(3000).map(i, lists.range(3000).map(j, i + j)).size())}")), "app/instance.yaml": thingInstance},
			want: []string{"app/instance.yaml", `resource "cm"`, "cost limit"},
		},
		{
			name: "map value of the wrong type",
			files: map[string]string{"rgds/thing.yaml": collectionsRGD,
				"app/instance.yaml": thingInstance + "spec:\n  limits: {cpu: lots}\n"},
			want: []string{"app/instance.yaml", `Thing "t"`, "spec.limits.cpu", "must be of type integer"},
		},
		{
			name: "duplicate item of a uniqueItems list",
			files: map[string]string{"rgds/thing.yaml": collectionsRGD,
				"app/instance.yaml": thingInstance + "spec:\n  tags: [production, staging, production]\n"},
			want: []string{"app/instance.yaml", `Thing "t"`, "spec.tags[2]", `Duplicate value: "production"`},
		},
		{
			name: "map with more keys than its validation allows",
			files: map[string]string{"rgds/thing.yaml": collectionsRGD,
				"app/instance.yaml": thingInstance + "spec:\n  labels: {a: x, b: w, c: z}\n"},
			want: []string{"app/instance.yaml", `Thing "t"`, "spec.labels", "Invalid value: validation failed"},
		},
		{
			name: "duplicate key deep in an instance",
			files: map[string]string{"rgds/webapp.yaml": "@webapp",
				"app/instance.yaml": instanceHead + "      image: r/f\n      tag: \"1.0.0\"\n      tag: \"0.9.0\"\n"},
			want: []string{"app/instance.yaml", "duplicate key", "line 10", `"tag"`, "line 9"},
		},
		{
			name: "duplicate key in a plain manifest of the application",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n",
				"app/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  name: c\n"},
			path: "app",
			want: []string{"app/extra.yaml", "duplicate key", "line 10", `"name"`},
		},
		{
			name: "duplicate key in the RGD the instance needs",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", configMap("cm", "a")+"      id: again\n"),
				"app/instance.yaml": thingInstance},
			want: []string{"rgds/thing.yaml", "duplicate key", `"id"`, "line 2"},
		},
		{
			name: "duplicate key in a CRD named with --crd",
			files: map[string]string{"crds/widget.yaml": widgetCRD + "  scope: Cluster\n", "rgds/thing.yaml": rgdWith("Thing", configMap("cm", "a")),
				"app/instance.yaml": thingInstance},
			args: []string{"--crd", "crds"},
			want: []string{"crds/widget.yaml", "duplicate key", `"scope"`},
		},
		{
			name: "nested instance invalid for the child RGD",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", `    - id: db
      template:
        apiVersion: kro.run/v1alpha1
        kind: Db
        metadata:
          name: ${schema.metadata.name}-db
        spec:
          size: ${schema.spec.size + 20}
`), "rgds/db.yaml": rgdWithSpec("Db", "      size: integer | maximum=10\n", configMap("cm", "a")), "app/instance.yaml": thingInstance},
			want: []string{"app/instance.yaml", `Thing "t"`, `resource "db" of rgds/thing.yaml`, "rgds/db.yaml", `Db "t-db"`, "spec.size", "less than or equal to 10"},
		},
		{
			name: "RGD nesting cycle",
			files: map[string]string{"rgds/thing.yaml": rgdWith("Thing", nestedOf("Other")), "rgds/other.yaml": rgdWithSpec("Other", "", nestedOf("Thing")),
				"app/instance.yaml": thingInstance},
			want: []string{"app/instance.yaml", "RGD nesting cycle", "Thing → Other → Thing", "nested-instances: emit"},
		},
		{
			name:  "bad nested-instances flag",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": instanceHead + "      image: r/f\n"},
			args:  []string{"--nested-instances", "flatten"},
			want:  []string{"--nested-instances", `"flatten"`, "expand", "emit"},
		},
		{
			name:  "YAML alias bomb",
			files: map[string]string{"rgds/webapp.yaml": "@webapp", "app/instance.yaml": aliasBomb()},
			want:  []string{"app/instance.yaml", "alias"},
		},
		{
			name: "file over the size limit",
			files: map[string]string{"rgds/webapp.yaml": "@webapp",
				"app/instance.yaml": instanceHead + "      image: r/f\n#" + strings.Repeat("x", 1<<20) + "\n"},
			want: []string{"app/instance.yaml", "larger than the limit of 1024 KiB"},
		},
		{
			name:  "path outside the repository via ..",
			files: map[string]string{"repo/rgds/webapp.yaml": "@webapp", "outside/instance.yaml": instanceHead + "      image: r/f\n"},
			path:  "../outside/instance.yaml",
			want:  []string{"outside the repository root"},
		},
		{
			name:  "rgd path outside the repository via ..",
			files: map[string]string{"repo/app/instance.yaml": instanceHead + "      image: r/f\n", "elsewhere/webapp.yaml": "@webapp"},
			args:  []string{"--rgd", "../elsewhere"},
			want:  []string{"outside the repository root"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRepo(t, tt.files)
			root := dir
			if _, err := os.Stat(filepath.Join(dir, "repo")); err == nil {
				root = filepath.Join(dir, "repo")
			}
			path := tt.path
			if path == "" {
				path = "app/instance.yaml"
			}
			args := append([]string{"render", "--root", root}, tt.args...)
			res := run(t, root, nil, append(args, path)...)
			if res.code == 0 {
				t.Fatalf("exit 0, want failure; stdout:\n%.400s", res.stdout)
			}
			if res.stdout != "" {
				t.Errorf("stdout must stay empty on error, got:\n%.400s", res.stdout)
			}
			wantAll(t, res.stderr, tt.want...)
		})
	}
}

// TestRender_EmptyApplicationFails: an application that renders nothing would make Argo CD
// prune all its objects, so it fails in render and in generate unless allow-empty is set.
func TestRender_EmptyApplicationFails(t *testing.T) {
	for name, content := range map[string]string{
		"empty file":         "",
		"only comments":      "# nothing here yet\n# really\n",
		"only separators":    "---\n---\n",
		"comments and ---":   "---\n# later\n---\n",
		"instance, no nodes": "apiVersion: kro.run/v1alpha1\nkind: Empty\nmetadata:\n  name: e\n",
	} {
		t.Run(name, func(t *testing.T) {
			root := writeRepo(t, map[string]string{
				"rgds/empty.yaml":                "apiVersion: kro.run/v1alpha1\nkind: ResourceGraphDefinition\nmetadata:\n  name: empty\nspec:\n  schema:\n    apiVersion: v1alpha1\n    kind: Empty\n",
				"develop/frontend/instance.yaml": content,
			})
			app := filepath.Join(root, "develop", "frontend")
			env := []string{"ARGOCD_APP_NAME=develop-frontend", "ARGOCD_APP_SOURCE_PATH=develop/frontend"}
			for _, res := range []result{
				run(t, root, nil, "render", "--root", root, "develop/frontend"),
				run(t, app, env, "generate"),
			} {
				if res.code == 0 || res.stdout != "" {
					t.Fatalf("exit %d, stdout %q: want a failure with nothing on stdout", res.code, res.stdout)
				}
				wantAll(t, res.stderr, "develop/frontend:", "rendered no Kubernetes object", "develop/frontend/instance.yaml", "allow-empty")
			}
			for _, res := range []result{
				run(t, root, nil, "render", "--root", root, "--allow-empty", "develop/frontend"),
				run(t, app, append(env, "PARAM_ALLOW_EMPTY=true"), "generate"),
				run(t, app, append(env, `ARGOCD_APP_PARAMETERS=[{"name":"allow-empty","string":"true"}]`), "generate"),
			} {
				if res.code != 0 || res.stdout != "" {
					t.Fatalf("allow-empty: exit %d, stdout %q, stderr %s: want success with no output", res.code, res.stdout, res.stderr)
				}
			}
		})
	}
}

func TestRender_SymlinkOutOfTheRepositoryIsRefused(t *testing.T) {
	dir := writeRepo(t, map[string]string{"repo/rgds/webapp.yaml": "@webapp", "secret/instance.yaml": instanceHead + "      image: r/f\n"})
	root := filepath.Join(dir, "repo")
	if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "secret", "instance.yaml"), filepath.Join(root, "app", "instance.yaml")); err != nil {
		t.Fatal(err)
	}
	res := run(t, root, nil, "render", "--root", root, "app")
	if res.code == 0 || res.stdout != "" {
		t.Fatalf("exit %d, stdout %q: a symlink out of the repository must be refused", res.code, res.stdout)
	}
	wantAll(t, res.stderr, "app/instance.yaml", "outside the repository root")
}

// aliasBomb is the "billion laughs" document: a few hundred bytes that expand exponentially.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: kro.run/v1alpha1\nkind: WebApp\nmetadata:\n  name: f\n")
	b.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		b.WriteString(n + ": &" + n + " [")
		for k := 0; k < 9; k++ {
			if k > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = n
	}
	return b.String()
}

// collectionsRGD has map and set fields. SimpleSchema v0.9.4 has no maxProperties marker; a
// validation rule is how an RGD bounds a map (the maxProperties keyword itself is enforced by
// admission when a schema carries it: internal/render's TestAdmission_CRDSemantics…).
const collectionsRGD = `apiVersion: kro.run/v1alpha1
kind: ResourceGraphDefinition
metadata:
  name: thing
spec:
  schema:
    apiVersion: v1alpha1
    kind: Thing
    spec:
      labels: "map[string]string | validation=\"self.size() <= 2\""
      limits: "map[string]integer"
      tags: "[]string | uniqueItems=true"
  resources:
` + "    - id: cm\n      template:\n        apiVersion: v1\n        kind: ConfigMap\n        metadata:\n          name: cm\n"

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
`

// TestRender_OutsideGitTheRootHoldsEveryNamedPath: without .git and --root, explicit paths
// from anywhere are accepted (the root is their nearest common ancestor), in a Git work tree
// the work tree still confines them.
func TestRender_OutsideGitTheRootHoldsEveryNamedPath(t *testing.T) {
	dir := writeRepo(t, map[string]string{
		"repo/rgds/webapp.yaml":               "@webapp",
		"repo/crds/widget.yaml":               widgetCRD,
		"repo/develop/frontend/instance.yaml": instanceHead + "      image: r/f\n",
		"scratch/.keep":                       "",
	})
	tests := []struct {
		name, wd string
		args     []string
	}{
		{"from a folder outside the repository", "scratch", []string{"--rgd", "../repo/rgds", "--crd", "../repo/crds", "../repo/develop/frontend"}},
		{"from above the repository", ".", []string{"--rgd", "repo/rgds", "repo/develop/frontend"}},
		{"absolute paths", "scratch", []string{"--rgd", filepath.Join(dir, "repo/rgds"), filepath.Join(dir, "repo/develop/frontend/instance.yaml")}},
		{"inside the repository, scanning it", "repo", []string{"develop/frontend"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, filepath.Join(dir, tt.wd), nil, append([]string{"render"}, tt.args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			wantAll(t, res.stdout, "kind: Deployment", "image: r/f")
		})
	}

	// In a Git work tree the tree is the root: an RGD outside it is refused.
	if err := os.Mkdir(filepath.Join(dir, "repo", ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scratch", "webapp.yaml"), []byte(mustRead(t, "testdata/webapp-rgd.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	res := run(t, dir, nil, "render", "--rgd", "scratch", "repo/develop/frontend")
	if res.code == 0 || res.stdout != "" {
		t.Fatalf("exit %d: an RGD outside the Git work tree must be refused", res.code)
	}
	wantAll(t, res.stderr, "outside the repository root")
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
