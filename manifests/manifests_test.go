package manifests_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubernetes-sigs/kro/pkg/simpleschema"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	extv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is where `go test` runs this package from: manifests/ sits one level below the root.
const repoRoot = ".."

// pluginConfig mirrors the fields argocd-cmp-server v2.14 reads from plugin.yaml
// (github.com/argoproj/argo-cd/v2 cmpserver/plugin/config.go and reposerver/apiclient
// ParameterAnnouncement). Parsed strictly, so a misspelt key — which Argo CD would silently
// ignore — fails the test.
type pluginConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version  string  `json:"version"`
		Init     command `json:"init"`
		Generate command `json:"generate"`
		Discover struct {
			FileName string `json:"fileName"`
			Find     struct {
				command `json:",inline"`
				Glob    string `json:"glob"`
			} `json:"find"`
		} `json:"discover"`
		Parameters struct {
			Static  []parameterAnnouncement `json:"static"`
			Dynamic command                 `json:"dynamic"`
		} `json:"parameters"`
		PreserveFileMode bool `json:"preserveFileMode"`
		ProvideGitCreds  bool `json:"provideGitCreds"`
	} `json:"spec"`
}

type command struct {
	Command []string `json:"command"`
	Args    []string `json:"args"`
}

type parameterAnnouncement struct {
	Name           string            `json:"name"`
	Title          string            `json:"title"`
	Tooltip        string            `json:"tooltip"`
	Required       bool              `json:"required"`
	ItemType       string            `json:"itemType"`
	CollectionType string            `json:"collectionType"`
	String         *string           `json:"string"`
	Array          []string          `json:"array"`
	Map            map[string]string `json:"map"`
}

func readPluginConfig(t *testing.T) pluginConfig {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "plugin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg pluginConfig
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		t.Fatalf("plugin.yaml: %v", err)
	}
	return cfg
}

func TestPluginConfig_IsTheKroPluginForArgoCD(t *testing.T) {
	cfg := readPluginConfig(t)

	if cfg.APIVersion != "argoproj.io/v1alpha1" || cfg.Kind != "ConfigManagementPlugin" {
		t.Errorf("plugin.yaml is %s %s, want argoproj.io/v1alpha1 ConfigManagementPlugin", cfg.APIVersion, cfg.Kind)
	}
	if cfg.Metadata.Name != "kro" {
		t.Errorf("metadata.name = %q, want kro", cfg.Metadata.Name)
	}
	// With a version Argo CD would only answer to "kro-<version>", breaking every Application.
	if cfg.Spec.Version != "" {
		t.Errorf("spec.version = %q, want none so Applications can say plugin.name: kro", cfg.Spec.Version)
	}
	if want := []string{"cmp-sidecar", "generate"}; !slices.Equal(cfg.Spec.Generate.Command, want) || len(cfg.Spec.Generate.Args) != 0 {
		t.Errorf("spec.generate = %v %v, want command %v and no args", cfg.Spec.Generate.Command, cfg.Spec.Generate.Args, want)
	}
	if cfg.Spec.PreserveFileMode {
		t.Error("spec.preserveFileMode is true; the plugin only reads YAML and must not receive executable bits")
	}
	if cfg.Spec.ProvideGitCreds {
		t.Error("spec.provideGitCreds is true; the plugin never talks to Git")
	}
}

func TestPluginConfig_AnnouncesRGDPathsAndSyncWaves(t *testing.T) {
	cfg := readPluginConfig(t)

	tests := []struct {
		name        string
		wantDefault string
		wantItem    string
	}{
		{name: "rgd-paths", wantDefault: "", wantItem: "string"},
		{name: "sync-waves", wantDefault: "true", wantItem: "boolean"},
		{name: "allow-empty", wantDefault: "false", wantItem: "boolean"},
		{name: "nested-instances", wantDefault: "expand", wantItem: "string"},
	}
	if got := len(cfg.Spec.Parameters.Static); got != len(tests) {
		t.Errorf("spec.parameters.static has %d announcements, want %d", got, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := slices.IndexFunc(cfg.Spec.Parameters.Static, func(p parameterAnnouncement) bool { return p.Name == tt.name })
			if i < 0 {
				t.Fatalf("spec.parameters.static has no %q", tt.name)
			}
			p := cfg.Spec.Parameters.Static[i]
			if p.Title == "" || p.Tooltip == "" {
				t.Errorf("%s: title %q, tooltip %q; the Argo CD UI shows both, set them", tt.name, p.Title, p.Tooltip)
			}
			if p.CollectionType != "string" || p.ItemType != tt.wantItem {
				t.Errorf("%s: collectionType %q itemType %q, want string %s", tt.name, p.CollectionType, p.ItemType, tt.wantItem)
			}
			if p.String == nil || *p.String != tt.wantDefault {
				t.Errorf("%s: announced default %v, want %q", tt.name, p.String, tt.wantDefault)
			}
			if p.Required {
				t.Errorf("%s: required, but Applications without it must still render", tt.name)
			}
		})
	}
}

// TestPluginConfig_HasNoDiscovery: with a discover rule, argocd-repo-server streams the
// repository to the sidecar for a match check before every manifest generation of every
// Application that does not name its source type, and of kro apps even when they name the
// plugin (util/app/discovery: cmpSupports calls MatchRepository whenever discovery is
// configured), which slows every app of the Argo CD instance. Applications name the plugin.
func TestPluginConfig_HasNoDiscovery(t *testing.T) {
	d := readPluginConfig(t).Spec.Discover
	if d.FileName != "" || d.Find.Glob != "" || len(d.Find.Command) != 0 || len(d.Find.Args) != 0 {
		t.Errorf("spec.discover = %+v, want none: Applications name the plugin (plugin.name: kro)", d)
	}
}

func TestPluginConfig_ComponentCopyMatchesRoot(t *testing.T) {
	root, err := os.ReadFile(filepath.Join(repoRoot, "plugin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(filepath.Join("cmp-sidecar", "plugin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, cp) {
		t.Error("manifests/cmp-sidecar/plugin.yaml differs from plugin.yaml; run `cp plugin.yaml manifests/cmp-sidecar/plugin.yaml`")
	}
}

// kustomizeDocs builds dir with kustomize's own library (krusty, what `kubectl kustomize`
// runs) and returns the YAML documents it prints.
func kustomizeDocs(t *testing.T, dir string) [][]byte {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var docs [][]byte
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("kustomize build %s output: %v", dir, err)
		}
		docs = append(docs, doc)
	}
}

func kustomizeBuild(t *testing.T, dir string) (deployments map[string]appsv1.Deployment, configMaps map[string]corev1.ConfigMap) {
	t.Helper()
	deployments = map[string]appsv1.Deployment{}
	configMaps = map[string]corev1.ConfigMap{}
	for _, doc := range kustomizeDocs(t, dir) {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("kustomize build %s output: %v", dir, err)
		}
		switch meta.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				t.Fatalf("kustomize build %s: Deployment: %v", dir, err)
			}
			deployments[d.Name] = d
		case "ConfigMap":
			var c corev1.ConfigMap
			if err := yaml.UnmarshalStrict(doc, &c); err != nil {
				t.Fatalf("kustomize build %s: ConfigMap: %v", dir, err)
			}
			configMaps[c.Name] = c
		}
	}
	return deployments, configMaps
}

func TestInstallOverlay_AddsSidecarAsArgoCDPrescribes(t *testing.T) {
	deployments, configMaps := kustomizeBuild(t, "install")

	repoServer, ok := deployments["argocd-repo-server"]
	if !ok {
		t.Fatalf("kustomize build install: no argocd-repo-server Deployment among %v", slices.Collect(maps.Keys(deployments)))
	}
	if repoServer.Namespace != "argocd" {
		t.Errorf("argocd-repo-server namespace = %q, want argocd", repoServer.Namespace)
	}
	pod := repoServer.Spec.Template.Spec
	sidecar := findContainer(t, pod.Containers, "kropipe-cmp")
	own := findContainer(t, pod.Containers, "argocd-repo-server")

	if want := []string{"/var/run/argocd/argocd-cmp-server"}; !slices.Equal(sidecar.Command, want) {
		t.Errorf("kropipe-cmp command = %v, want %v", sidecar.Command, want)
	}
	if !strings.HasPrefix(sidecar.Image, "ghcr.io/kropipe/cmp-sidecar:") {
		t.Errorf("kropipe-cmp image = %q, want ghcr.io/kropipe/cmp-sidecar:<tag>", sidecar.Image)
	}

	t.Run("security context", func(t *testing.T) {
		sc := sidecar.SecurityContext
		if sc == nil {
			t.Fatal("kropipe-cmp has no securityContext")
		}
		checks := []struct {
			what string
			ok   bool
		}{
			{"runAsUser 999 (Argo CD requires it for the plugin socket)", sc.RunAsUser != nil && *sc.RunAsUser == 999},
			{"runAsNonRoot", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
			{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
			{"allowPrivilegeEscalation false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
			{"capabilities drop ALL", sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, corev1.Capability("ALL"))},
			{"seccomp RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		}
		for _, c := range checks {
			if !c.ok {
				t.Errorf("kropipe-cmp securityContext lacks %s", c.what)
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := sidecar.Resources.Limits[name]; !ok {
				t.Errorf("kropipe-cmp has no %s limit", name)
			}
			if _, ok := sidecar.Resources.Requests[name]; !ok {
				t.Errorf("kropipe-cmp has no %s request", name)
			}
		}
	})

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := []struct {
		path    string
		subPath string
		// check says what the volume behind the mount must be.
		check func(v corev1.Volume) string
	}{
		{path: "/var/run/argocd", check: namedVolume("var-files")},
		{path: "/home/argocd/cmp-server/plugins", check: namedVolume("plugins")},
		{path: "/home/argocd/cmp-server/config/plugin.yaml", subPath: "plugin.yaml", check: func(v corev1.Volume) string {
			if v.ConfigMap == nil {
				return "is not a ConfigMap volume"
			}
			cm, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				return "names ConfigMap " + v.ConfigMap.Name + ", which the build does not contain"
			}
			if !strings.HasPrefix(cm.Name, "kropipe-cmp-plugin") {
				return "names ConfigMap " + cm.Name + ", want kropipe-cmp-plugin-<hash>"
			}
			root, err := os.ReadFile(filepath.Join(repoRoot, "plugin.yaml"))
			if err != nil {
				return err.Error()
			}
			if cm.Data["plugin.yaml"] != string(root) {
				return "ConfigMap " + cm.Name + " key plugin.yaml differs from the repository's plugin.yaml"
			}
			return ""
		}},
		{path: "/tmp", check: func(v corev1.Volume) string {
			if v.EmptyDir == nil {
				return "is not an emptyDir"
			}
			// argocd-cmp-server extracts the repository here on every call: on tmpfs, and
			// bounded so a full /tmp fails a generation instead of the sidecar's memory limit.
			if v.EmptyDir.Medium != corev1.StorageMediumMemory || v.EmptyDir.SizeLimit == nil {
				return "is not a memory-backed emptyDir with a sizeLimit"
			}
			if limit := sidecar.Resources.Limits.Memory(); limit.Cmp(*v.EmptyDir.SizeLimit) <= 0 {
				return "sizeLimit " + v.EmptyDir.SizeLimit.String() + " leaves no room under the container's memory limit " + limit.String()
			}
			// Argo CD (since v2.4): the plugin must not share the repo-server's /tmp.
			for _, m := range own.VolumeMounts {
				if m.Name == v.Name {
					return "is shared with the argocd-repo-server container"
				}
			}
			return ""
		}},
	}
	for _, m := range mounts {
		t.Run("mount "+m.path, func(t *testing.T) {
			i := slices.IndexFunc(sidecar.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == m.path })
			if i < 0 {
				t.Fatalf("kropipe-cmp does not mount %s", m.path)
			}
			vm := sidecar.VolumeMounts[i]
			if vm.SubPath != m.subPath {
				t.Errorf("kropipe-cmp mount %s: subPath %q, want %q", m.path, vm.SubPath, m.subPath)
			}
			v, ok := volumes[vm.Name]
			if !ok {
				t.Fatalf("kropipe-cmp mount %s: volume %q is not in the Pod", m.path, vm.Name)
			}
			if problem := m.check(v); problem != "" {
				t.Errorf("kropipe-cmp mount %s: volume %q %s", m.path, vm.Name, problem)
			}
		})
	}

	t.Run("repo-server keeps its own setup", func(t *testing.T) {
		if own.Image == "" || !slices.ContainsFunc(own.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == "/tmp" && vm.Name == "tmp" }) {
			t.Errorf("argocd-repo-server container changed by the component: image %q mounts %v", own.Image, own.VolumeMounts)
		}
		if !slices.ContainsFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == "copyutil" }) {
			t.Error("copyutil init container is gone; it provides argocd-cmp-server to the sidecar")
		}
		if got := repoServer.Spec.Template.Annotations["kubectl.kubernetes.io/default-container"]; got != "argocd-repo-server" {
			t.Errorf("default-container annotation = %q, want argocd-repo-server", got)
		}
	})

	t.Run("plugin tarball excludes .git", func(t *testing.T) {
		cm, ok := configMaps["argocd-cmd-params-cm"]
		if !ok {
			t.Fatal("install overlay has no argocd-cmd-params-cm")
		}
		if got := cm.Data["reposerver.plugin.tar.exclusions"]; !slices.Contains(strings.Split(got, ";"), ".git/*") {
			t.Errorf("argocd-cmd-params-cm reposerver.plugin.tar.exclusions = %q, want it to hold .git/*", got)
		}
	})
}

func namedVolume(name string) func(corev1.Volume) string {
	return func(v corev1.Volume) string {
		if v.Name != name {
			return "is not " + name
		}
		return ""
	}
}

func findContainer(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("argocd-repo-server has no container %q", name)
	}
	return cs[i]
}

// exampleDocs decodes every YAML document of every file under examples/.
func exampleDocs(t *testing.T) map[string][]map[string]any {
	t.Helper()
	docs := map[string][]map[string]any{}
	root := filepath.Join(repoRoot, "examples")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("examples/%s: %v", rel, err)
				break
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				t.Errorf("examples/%s: %v", rel, err)
				continue
			}
			if obj == nil {
				continue // a document of comments only
			}
			docs[filepath.ToSlash(rel)] = append(docs[filepath.ToSlash(rel)], obj)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestExamples_EveryYAMLFileIsAKubernetesObject(t *testing.T) {
	docs := exampleDocs(t)
	if len(docs) == 0 {
		t.Fatal("no YAML files under examples/")
	}
	for file, objs := range docs {
		for i, obj := range objs {
			if obj["apiVersion"] == nil || obj["kind"] == nil {
				t.Errorf("examples/%s document %d has no apiVersion/kind", file, i+1)
			}
		}
	}
}

// TestExamples_InstancesFitTheWebAppRGD compiles the RGD's SimpleSchema with kro's own parser
// (the pinned version) and checks every field each instance sets exists in it, so a typo in an
// example surfaces here rather than in a render far away.
func TestExamples_InstancesFitTheWebAppRGD(t *testing.T) {
	docs := exampleDocs(t)
	rgds := docs["gitops/rgds/webapp.yaml"]
	if len(rgds) != 1 {
		t.Fatalf("examples/gitops/rgds/webapp.yaml holds %d documents, want 1", len(rgds))
	}
	schema := nested(rgds[0], "spec", "schema")
	if schema["kind"] != "WebApp" || schema["apiVersion"] != "v1alpha1" {
		t.Fatalf("RGD schema is %v %v, want v1alpha1 WebApp", schema["apiVersion"], schema["kind"])
	}
	spec, err := simpleschema.ToOpenAPISpec(nested(schema, "spec"), nil)
	if err != nil {
		t.Fatalf("examples/gitops/rgds/webapp.yaml spec.schema.spec: %v", err)
	}

	deployment := spec.Properties["values"].Properties["deployment"]
	if !slices.Contains(deployment.Required, "image") {
		t.Error("values.deployment.image is not required")
	}
	if tag := deployment.Properties["tag"]; tag.Default == nil || string(tag.Default.Raw) != `"latest"` {
		t.Errorf("values.deployment.tag default = %v, want \"latest\"", tag.Default)
	}
	if r := deployment.Properties["replicas"]; r.Minimum == nil || *r.Minimum != 0 || r.Maximum == nil || *r.Maximum != 50 {
		t.Errorf("values.deployment.replicas bounds = %v..%v, want 0..50", r.Minimum, r.Maximum)
	}

	instances := 0
	for file, objs := range docs {
		if filepath.Base(file) != "instance.yaml" {
			continue
		}
		for _, obj := range objs {
			instances++
			if obj["apiVersion"] != "kro.run/v1alpha1" || obj["kind"] != "WebApp" {
				t.Errorf("examples/%s is %v %v, want kro.run/v1alpha1 WebApp", file, obj["apiVersion"], obj["kind"])
			}
			checkFieldsExist(t, "examples/"+file, "spec", obj["spec"], *spec)
		}
	}
	if instances != 4 {
		t.Errorf("found %d instances, want 4 (develop and staging × frontend and backend)", instances)
	}
}

func checkFieldsExist(t *testing.T, file, path string, value any, schema extv1.JSONSchemaProps) {
	t.Helper()
	obj, ok := value.(map[string]any)
	if !ok {
		return
	}
	for k, v := range obj {
		prop, ok := schema.Properties[k]
		if !ok {
			t.Errorf("%s: field %s.%s is not in the WebApp schema", file, path, k)
			continue
		}
		checkFieldsExist(t, file, path+"."+k, v, prop)
	}
}

func TestExamples_ApplicationSetCoversEveryInstanceFolder(t *testing.T) {
	docs := exampleDocs(t)
	sets := docs["gitops/appsets/services.yaml"]
	if len(sets) != 1 || sets[0]["kind"] != "ApplicationSet" {
		t.Fatalf("examples/gitops/appsets/services.yaml: want one ApplicationSet, got %d documents", len(sets))
	}
	set := sets[0]
	tmpl := nested(set, "spec", "template")
	if got := nested(tmpl, "metadata")["name"]; got != "{{ .env }}-{{ .service }}" {
		t.Errorf("Application name template = %v, want {{ .env }}-{{ .service }}", got)
	}
	paths, _ := nested(tmpl, "metadata", "annotations")["argocd.argoproj.io/manifest-generate-paths"].(string)
	if parts := strings.Split(paths, ";"); !slices.Contains(parts, ".") || !slices.Contains(parts, "/rgds") {
		t.Errorf("manifest-generate-paths = %q, want it to list . and /rgds", paths)
	}
	if got := nested(tmpl, "spec", "source", "plugin")["name"]; got != "kro" {
		t.Errorf("source.plugin.name = %v, want kro", got)
	}

	var generated []string
	for _, g := range nested(set, "spec")["generators"].([]any) {
		list, ok := g.(map[string]any)["list"].(map[string]any)
		if !ok {
			continue
		}
		for _, e := range list["elements"].([]any) {
			el := e.(map[string]any)
			generated = append(generated, el["env"].(string)+"/"+el["service"].(string))
		}
	}
	var folders []string
	for file := range docs {
		if strings.HasSuffix(file, "/instance.yaml") {
			folders = append(folders, strings.TrimSuffix(strings.TrimPrefix(file, "gitops/"), "/instance.yaml"))
		}
	}
	slices.Sort(generated)
	slices.Sort(folders)
	if !slices.Equal(generated, folders) {
		t.Errorf("ApplicationSet generates %v, instance folders are %v", generated, folders)
	}
}

func nested(obj map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, _ := obj[k].(map[string]any)
		obj = next
	}
	return obj
}
