package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// The conformance suite walks every RGD and instance the pinned kro module ships
// (test/upgrade/fixtures, test/e2e/chainsaw, examples) and classifies each offline render.
// Expectations come from kro itself: chainsaw's error steps and invalid-*-instance files are
// instances the API server refuses; everything else kro accepts. A fixture where cmp-sidecar
// and kro disagree must be listed in knownDifferences with the reason, and docs/reference/conformance.md's
// table must name it.

type outcome string

const (
	outRendered     outcome = "rendered"
	outCompiled     outcome = "compiled"        // an RGD shipped without an instance
	outRejected     outcome = "rejected"        // refused as the API server refuses it
	outRGDInvalid   outcome = "rgd-invalid"     // kro's own graph builder refuses the RGD
	outNeedsCluster outcome = "needs-a-cluster" // named error: data only a cluster has
	outRefused      outcome = "refused"         // any other error
)

type fixture struct {
	name       string // path inside the kro module
	root       string // folder the engine scans for RGDs
	crds       []string
	rgdPaths   []string // when the folder ships alternative RGDs of one kind, the one to use
	instance   string   // file, relative to root; "" compiles the RGDs only
	doc        int      // 1-based document of instance
	kroRejects bool     // kro's own tests expect the API server to refuse it
	asserts    []string
}

type result struct {
	fixture
	outcome  outcome
	why      string
	compared int // asserted fields compared
}

// kroRefusesRGD are shipped examples whose RGD kro v0.9.4's own graph builder refuses (the
// controller marks the RGD Inactive); cmp-sidecar runs that builder, so it refuses them too.
var kroRefusesRGD = map[string]string{
	"examples/apigateway/vpc-lattice/instance.yaml":                               "rg-webservice.yaml sets spec.gatewayClassName on a nested instance whose RGD (rg-lattice.yaml) has no such field",
	"examples/aws/ack-controller/instance.yaml":                                   "controllers/iam-controller.yaml concatenates a string and a boolean (\"--enable-development-logging=${…log.enabled}\")",
	"examples/aws/ack-eks-cluster/eks-cluster-instance.yaml with eks-reused.yaml": "eks-reused.yaml references an unknown identifier spc",
	"examples/aws/aws-accounts-factory/demo-account.yaml":                         "03-full-account-infrastructure.yaml reads network.status fields the nested RGD's status does not declare",
	"examples/aws/eks-cluster-mgmt/charts/kro/resource-groups/eks/":               "rg-eks.yaml reads vpc.status fields the nested RGD's status does not declare",
	"examples/aws/ingress-triangle/instances/app1-ingress.yaml":                   "application.yaml's readyWhen reads ingresstriangle.status.loadBalancerARN, which the nested RGD's status does not declare",
	"examples/aws/ingress-triangle/instances/app2-ingress.yaml":                   "as app1-ingress.yaml",
	"examples/aws/llm/instance.yaml":                                              "llm.yaml puts a boolean into a Deployment's nodeSelector, a map of strings",
}

// knownDifferences are fixtures kro accepts and cmp-sidecar cannot render offline, each
// explained in docs/reference/conformance.md's table.
var knownDifferences = map[string]string{
	"chainsaw/cel-random-namespaced-function/instance.yaml":                              "reads schema.metadata.uid, which the API server assigns on create",
	"examples/kubernetes/cel-functions/instance.yaml":                                    "reads schema.metadata.uid, which the API server assigns on create",
	"chainsaw/check-external-references/instance.yaml":                                   "reads an externalRef's data (a ConfigMap in the cluster)",
	"upgrade/external-ref/instance.yaml":                                                 "reads an externalRef's data (a ConfigMap in the cluster)",
	"examples/aws/ack-eks-cluster/eks-cluster-instance.yaml with eks-cluster.yaml":       "reads the status ACK writes (clusterVPC.status.vpcID)",
	"examples/aws/alb-listener-tg/alb-tg-listener-instance.yaml":                         "reads the status ACK writes (targetGroup ARNs)",
	"examples/aws/cachecluster/cachecluster-instance.yaml with cachecluster.yaml":        "reads the status of the nested NetworkingStack instance, written in the cluster",
	"examples/aws/cachecluster/cachecluster-instance.yaml with simple-cachecluster.yaml": "the instance lacks spec.subnetIDs that simple-cachecluster.yaml reads: kro would wait for it forever",
	"examples/aws/dogsvscats-appstack/instance.yaml":                                     "reads the status ACK writes (redis.status.endpoint)",
	"examples/aws/networkstack/network-stack-instance.yaml":                              "reads the status ACK writes (vpc.status.vpcID)",
	"examples/aws/podidenity/instance.yaml":                                              "reads the status ACK writes (role ARN)",
	"examples/aws/s3bucket/instance.yaml":                                                "reads the status ACK writes (bucket name in the policy)",
	"examples/aws/webstack/instance-tmpl.yaml":                                           "reads the status of a nested instance (s3bucket.status.s3PolicyARN), written in the cluster",
	"examples/kubernetes/core-dns/coredns-instance.yaml":                                 "core-dns.yaml names the key selector twice in the Service template (lines 154 and 169): cmp-sidecar refuses duplicate keys; with the second removed it renders (TestConformance_CoreDNSMapFields)",
	"examples/gcp/gemma-on-tpu/":                                                         "rgd.yaml puts name: under an externalRef, no field of kro's RGD API: kubectl's strict field validation refuses the RGD, and so does cmp-sidecar",
	"examples/azure/todo-app/instance.yaml":                                              "reads database.spec.azureName, which Azure Service Operator's webhook defaults in the cluster",
}

func TestConformance_KroFixtures(t *testing.T) {
	module := filepath.Dir(filepath.Dir(kroExamples(t)))
	fixtures := append(append(chainsawFixtures(t, module), upgradeFixtures(t, module)...), exampleFixtures(t, module)...)
	if len(fixtures) < 50 {
		t.Fatalf("found %d fixtures in %s; the walk is broken", len(fixtures), module)
	}
	var results []result
	for _, f := range fixtures {
		r := runFixture(t, f)
		results = append(results, r)
		var agrees bool
		switch {
		case f.kroRejects:
			agrees = r.outcome == outRejected
		case kroRefusesRGD[f.name] != "":
			// kro v0.9.4's own builder refuses the shipped RGD: the controller would mark it
			// Inactive and never create an instance.
			agrees = r.outcome == outRGDInvalid
		default:
			agrees = r.outcome == outRendered || r.outcome == outCompiled
		}
		if why, known := knownDifferences[f.name]; !agrees && !known {
			t.Errorf("%s: %s (%s), but kro %s it; fix the renderer or explain the difference in "+
				"knownDifferences and docs/reference/conformance.md", f.name, r.outcome, r.why, map[bool]string{true: "refuses", false: "accepts"}[f.kroRejects])
		} else if agrees && known {
			t.Errorf("%s: listed as a known difference (%s) but now agrees with kro: remove it", f.name, why)
		}
	}
	printTable(t, results)
	table, err := os.ReadFile("../../docs/reference/conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range kroRefusesRGD {
		knownDifferences[name] = kroRefusesRGD[name]
	}
	for name := range knownDifferences {
		if !strings.Contains(string(table), name) {
			t.Errorf("docs/reference/conformance.md's table does not explain %s", name)
		}
	}
}

func printTable(t *testing.T, results []result) {
	counts := map[outcome]int{}
	var b strings.Builder
	b.WriteString("| fixture | outcome | why |\n| --- | --- | --- |\n")
	for _, r := range results {
		counts[r.outcome]++
		why := r.why
		if known := knownDifferences[r.name]; known != "" {
			why = known
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.name, r.outcome, strings.ReplaceAll(why, "|", "\\|"))
	}
	var parts []string
	for _, o := range []outcome{outRendered, outCompiled, outRejected, outRGDInvalid, outNeedsCluster, outRefused} {
		parts = append(parts, fmt.Sprintf("%s %d", o, counts[o]))
	}
	t.Logf("conformance over %d kro fixtures: %s\n%s", len(results), strings.Join(parts, ", "), b.String())
}

func runFixture(t *testing.T, f fixture) result {
	r := result{fixture: f}
	var warnings strings.Builder
	e, err := New(f.root, WithCRDPaths(f.crds...), WithRGDPaths(f.rgdPaths...), WithWarnings(&warnings), WithAllowEmpty(true))
	if err != nil {
		return classify(r, err)
	}
	if f.instance == "" {
		if len(e.sources) == 0 && len(e.skipped) > 0 {
			r.outcome, r.why = outRefused, firstLine(e.skipped[0])
			return r
		}
		kinds := 0
		for gvk := range e.sources {
			if _, err := e.Definition(gvk); err != nil {
				return classify(r, err)
			}
			kinds++
		}
		r.outcome, r.why = outCompiled, fmt.Sprintf("%d RGD(s) compile; no instance shipped", kinds)
		return r
	}
	data, err := os.ReadFile(filepath.Join(f.root, f.instance))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(f.instance, data)
	if err != nil {
		return classify(r, err)
	}
	inst := docs[f.doc-1].obj
	def, err := e.Definition(inst.GroupVersionKind())
	if err != nil {
		return classify(r, err)
	}
	objs, err := e.renderTree(context.Background(), f.instance, def, inst, "default", nil, nil)
	if err != nil {
		return classify(r, err)
	}
	admitted := inst.DeepCopy()
	admitted.SetNamespace("default")
	if err := def.admission.admit(context.Background(), admitted); err != nil {
		t.Fatalf("%s: rendered but not admitted: %v", f.name, err)
	}
	r.outcome, r.why = outRendered, fmt.Sprintf("%d object(s)", len(objs))
	var mismatches, missing []string
	for _, a := range f.asserts {
		n, m, diff := compareAssert(t, a, admitted, objs)
		r.compared += n
		missing = append(missing, m...)
		mismatches = append(mismatches, diff...)
	}
	if len(f.asserts) > 0 {
		r.why += fmt.Sprintf("; %d asserted field(s) of %d assert file(s) equal", r.compared, len(f.asserts))
		if len(missing) > 0 {
			for i, m := range missing {
				_, missing[i], _ = strings.Cut(m, ": ")
			}
			r.why += fmt.Sprintf("; %d left to the API server's defaults or a controller (%s)", len(missing), strings.Join(missing, ", "))
		}
	}
	if len(mismatches) > 0 {
		t.Errorf("%s: rendered objects differ from kro's asserts:\n  %s", f.name, strings.Join(mismatches, "\n  "))
	}
	return r
}

func classify(r result, err error) result {
	var invalid *InvalidInstanceError
	var invalidRGD *InvalidRGDError
	var needsCluster *NeedsClusterError
	msg := err.Error()
	switch {
	case errors.As(err, &invalid):
		r.outcome = outRejected
	case errors.As(err, &invalidRGD):
		r.outcome = outRGDInvalid
	case errors.As(err, &needsCluster):
		r.outcome = outNeedsCluster
	default:
		r.outcome = outRefused
	}
	r.why = firstLine(msg)
	return r
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "\n"); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}

// compareAssert checks every field a chainsaw assert names against the admitted instance (for
// the instance's own kind) or the rendered object of that kind and name. Fields only a live
// cluster sets are left out: status, server-set metadata, kro's own labels and finalizers, and
// JMESPath expressions (keys in parentheses).
func compareAssert(t *testing.T, file string, inst *unstructured.Unstructured, objs []nestedObject) (compared int, missing, diffs []string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(filepath.Base(file), data)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		want := d.obj.Object
		var got map[string]interface{}
		if d.obj.GroupVersionKind() == inst.GroupVersionKind() {
			got = inst.Object
		} else {
			for _, o := range objs {
				if o.Object.Object.GetKind() == d.obj.GetKind() && (d.obj.GetName() == "" || o.Object.Object.GetName() == d.obj.GetName()) {
					got = o.Object.Object.Object
					break
				}
			}
		}
		if got == nil {
			diffs = append(diffs, fmt.Sprintf("%s: no rendered %s %q", filepath.Base(file), d.obj.GetKind(), d.obj.GetName()))
			continue
		}
		filtered, ok := offlineFields("", want)
		if !ok {
			continue
		}
		n, m, diff := subset(filepath.Base(file)+": "+d.obj.GetKind(), filtered, got)
		compared += n
		missing = append(missing, m...)
		diffs = append(diffs, diff...)
	}
	return compared, missing, diffs
}

// clusterOnlyAssert are fields of a chainsaw assert that only a cluster fills in.
var clusterOnlyAssert = map[string]bool{
	"status": true, "metadata.generation": true, "metadata.finalizers": true, "metadata.namespace": true,
	"metadata.ownerReferences": true, "metadata.uid": true, "metadata.resourceVersion": true,
}

// offlineFields drops from an assert what only a cluster writes: status, server-set metadata,
// kro's own kro.run/ labels (kropipe.io/ labels stand for them offline) and chainsaw's JMESPath
// expressions (keys in parentheses), which the suite does not evaluate.
func offlineFields(field string, v interface{}) (interface{}, bool) {
	m, ok := v.(map[string]interface{})
	if !ok {
		if s, isString := v.(string); isString && strings.HasPrefix(s, "(") {
			return nil, false
		}
		return v, true
	}
	out := map[string]interface{}{}
	for k, child := range m {
		p := strings.TrimPrefix(field+"."+k, ".")
		if strings.HasPrefix(k, "(") || clusterOnlyAssert[p] || strings.HasPrefix(k, "kro.run/") {
			continue
		}
		if kept, ok := offlineFields(p, child); ok {
			out[k] = kept
		}
	}
	if len(out) == 0 && len(m) > 0 {
		return nil, false
	}
	return out, true
}

// subset compares what chainsaw would: every field of want must be in got with the same value,
// lists element by element. A field the renderer leaves out is counted in missing: the API
// server fills those in (built-in defaults such as a Deployment's strategy) or a controller
// does; a field with another value is a difference.
func subset(path string, want, got interface{}) (compared int, missing, diffs []string) {
	switch w := want.(type) {
	case map[string]interface{}:
		g, ok := got.(map[string]interface{})
		if !ok {
			return 1, nil, []string{fmt.Sprintf("%s: want an object, got %v", path, got)}
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, present := g[k]
			if !present {
				missing = append(missing, path+"."+k)
				continue
			}
			c, m, d := subset(path+"."+k, w[k], gv)
			compared += c
			missing = append(missing, m...)
			diffs = append(diffs, d...)
		}
		return compared, missing, diffs
	case []interface{}:
		g, ok := got.([]interface{})
		if !ok || len(g) != len(w) {
			return 1, nil, []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
		}
		for i := range w {
			c, m, d := subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])
			compared += c
			missing = append(missing, m...)
			diffs = append(diffs, d...)
		}
		return compared, missing, diffs
	default:
		if !reflect.DeepEqual(normalizeScalar(want), normalizeScalar(got)) {
			return 1, nil, []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
		}
		return 1, nil, nil
	}
}

func normalizeScalar(v interface{}) interface{} {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int:
		return float64(n)
	case int32:
		return float64(n)
	}
	return v
}

// chainsawStep is the part of a chainsaw Test the suite reads.
type chainsawTest struct {
	Spec struct {
		Steps []struct {
			Try []struct {
				Apply  *struct{ File string } `json:"apply"`
				Assert *struct{ File string } `json:"assert"`
				Error  *struct{ File string } `json:"error"`
			} `json:"try"`
		} `json:"steps"`
	} `json:"spec"`
}

// chainsawFixtures follows each chainsaw test's steps: every instance it applies is a fixture
// with the asserts that follow it; every instance its error steps name, and every
// invalid-*-instance.yaml beside it, is a fixture kro refuses.
func chainsawFixtures(t *testing.T, module string) []fixture {
	base := filepath.Join(module, "test", "e2e", "chainsaw")
	dirs, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var out []fixture
	for _, d := range dirs {
		dir := filepath.Join(base, d.Name())
		raw, err := os.ReadFile(filepath.Join(dir, "chainsaw-test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var test chainsawTest
		if err := yaml.Unmarshal(raw, &test); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		kinds := rgdKinds(t, dir)
		var crds []string
		var current *fixture
		seen := map[string]bool{}
		instances := 0
		for _, step := range test.Spec.Steps {
			for _, op := range step.Try {
				switch {
				case op.Apply != nil:
					kind := fileKind(t, filepath.Join(dir, op.Apply.File))
					switch {
					case kind == "CustomResourceDefinition":
						crds = append(crds, filepath.Join(dir, op.Apply.File))
					case kinds[kind]:
						if seen[op.Apply.File] {
							continue // applied again to trigger a reconcile
						}
						seen[op.Apply.File] = true
						out = append(out, fixture{name: "chainsaw/" + d.Name() + "/" + op.Apply.File, root: dir,
							crds: crds, instance: op.Apply.File, doc: 1})
						current = &out[len(out)-1]
						instances++
					}
				case op.Assert != nil && current != nil:
					kind := fileKind(t, filepath.Join(dir, op.Assert.File))
					if kind != "ResourceGraphDefinition" && kind != "CustomResourceDefinition" {
						current.asserts = append(current.asserts, filepath.Join(dir, op.Assert.File))
					}
				case op.Error != nil && kinds[fileKind(t, filepath.Join(dir, op.Error.File))]:
					seen[op.Error.File] = true
					out = append(out, fixture{name: "chainsaw/" + d.Name() + "/" + op.Error.File, root: dir,
						crds: crds, instance: op.Error.File, doc: 1, kroRejects: true})
					instances++
				}
			}
		}
		invalid, _ := filepath.Glob(filepath.Join(dir, "invalid-*instance*.yaml"))
		for _, f := range invalid {
			if rel := filepath.Base(f); !seen[rel] {
				out = append(out, fixture{name: "chainsaw/" + d.Name() + "/" + rel, root: dir, crds: crds,
					instance: rel, doc: 1, kroRejects: true})
				instances++
			}
		}
		if instances == 0 {
			out = append(out, fixture{name: "chainsaw/" + d.Name() + "/rgd.yaml", root: dir, crds: crds})
		}
	}
	return out
}

// upgradeFixtures are kro's upgrade-test pairs: one RGD and one instance per folder.
func upgradeFixtures(t *testing.T, module string) []fixture {
	base := filepath.Join(module, "test", "upgrade", "fixtures")
	dirs, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var out []fixture
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		out = append(out, fixture{name: "upgrade/" + d.Name() + "/instance.yaml", root: filepath.Join(base, d.Name()),
			instance: "instance.yaml", doc: 1})
	}
	return out
}

// exampleFixtures: every folder of examples/ holding RGDs; each document of a YAML file in it
// (sub-folders included) whose kind one of its RGDs defines is an instance fixture, and a
// folder without one compiles its RGDs.
func exampleFixtures(t *testing.T, module string) []fixture {
	base := filepath.Join(module, "examples")
	roots := map[string]bool{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isYAMLFile(p) {
			return err
		}
		if data, _ := os.ReadFile(p); rgdKindLine.Match(data) {
			roots[filepath.Dir(p)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A folder whose parent also holds RGDs belongs to the parent (ack-controller/crds).
	var dirs []string
	for d := range roots {
		if !roots[filepath.Dir(d)] {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	var out []fixture
	for _, dir := range dirs {
		files := rgdFiles(t, dir)
		kinds := map[schema.GroupVersionKind]bool{}
		for gvk := range files {
			kinds[gvk] = true
		}
		rel, _ := filepath.Rel(module, dir)
		found := false
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !isYAMLFile(p) {
				return err
			}
			data, _ := os.ReadFile(p)
			docs, err := splitDocuments(p, data)
			if err != nil {
				return nil
			}
			for _, doc := range docs {
				gvk := doc.obj.GroupVersionKind()
				// kro's instances carry a kro.run group; an RGD file cmp-sidecar cannot read
				// still leaves its instances here to be classified.
				if !kinds[gvk] && (isRGD(doc) || !strings.HasSuffix(gvk.Group, "kro.run")) {
					continue
				}
				fr, _ := filepath.Rel(dir, p)
				name := filepath.ToSlash(filepath.Join(rel, fr))
				if len(docs) > 1 {
					name += fmt.Sprintf("#%d", doc.index)
				}
				// An instance named by a shell placeholder is a template for envsubst: as
				// shipped, the API server refuses its name.
				placeholder := strings.Contains(doc.obj.GetName(), "$")
				found = true
				alternatives := files[gvk]
				if len(alternatives) <= 1 {
					out = append(out, fixture{name: name, root: dir, instance: fr, doc: docIndex(docs, doc), kroRejects: placeholder})
					continue
				}
				// The folder ships alternative RGDs of one kind (same RGD name): in a cluster the
				// one applied last is the RGD; each is a fixture of its own.
				for _, alt := range alternatives {
					out = append(out, fixture{name: name + " with " + alt, root: dir, instance: fr, doc: docIndex(docs, doc),
						rgdPaths: append(otherRGDFiles(files, gvk), alt), kroRejects: placeholder})
				}
			}
			return nil
		})
		if !found {
			out = append(out, fixture{name: filepath.ToSlash(rel) + "/", root: dir})
		}
	}
	return out
}

func docIndex(docs []document, d document) int {
	for i := range docs {
		if docs[i].index == d.index {
			return i + 1
		}
	}
	return 0
}

func fileKind(t *testing.T, p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(p, data)
	if err != nil || len(docs) == 0 {
		return ""
	}
	return docs[0].obj.GetKind()
}

// rgdKindLine finds RGD documents by their bytes, so a file kro's tooling would read but
// cmp-sidecar refuses (a duplicate key) still becomes a fixture.
var rgdKindLine = regexp.MustCompile(`(?m)^kind:\s*ResourceGraphDefinition\s*$`)

// rgdFiles maps each instance kind defined under dir to the files (relative to dir) defining it.
func rgdFiles(t *testing.T, dir string) map[schema.GroupVersionKind][]string {
	out := map[schema.GroupVersionKind][]string{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isYAMLFile(p) {
			return err
		}
		data, _ := os.ReadFile(p)
		docs, _ := splitDocuments(p, data)
		rel, _ := filepath.Rel(dir, p)
		for _, doc := range docs {
			if isRGD(doc) {
				if rgd, err := decodeRGD(doc); err == nil {
					out[instanceGVK(rgd)] = append(out[instanceGVK(rgd)], filepath.ToSlash(rel))
				}
			}
		}
		return nil
	})
	return out
}

// otherRGDFiles lists the RGD files of every kind but gvk.
func otherRGDFiles(files map[schema.GroupVersionKind][]string, gvk schema.GroupVersionKind) []string {
	var out []string
	for k, fs := range files {
		if k != gvk {
			out = append(out, fs...)
		}
	}
	sort.Strings(out)
	return out
}

// rgdKinds are the instance kinds the RGDs directly in dir define.
func rgdKinds(t *testing.T, dir string) map[string]bool {
	out := map[string]bool{}
	for gvk := range rgdKindsDeep(t, dir) {
		out[gvk.Kind] = true
	}
	return out
}

func rgdKindsDeep(t *testing.T, dir string) map[schema.GroupVersionKind]bool {
	out := map[schema.GroupVersionKind]bool{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isYAMLFile(p) {
			return err
		}
		data, _ := os.ReadFile(p)
		docs, _ := splitDocuments(p, data)
		for _, doc := range docs {
			if isRGD(doc) {
				if rgd, err := decodeRGD(doc); err == nil {
					out[instanceGVK(rgd)] = true
				}
			}
		}
		return nil
	})
	return out
}

// TestConformance_CoreDNSMapFields renders kro's coredns example, whose schema is mostly map
// fields with map defaults, once the duplicate selector key it ships with is removed.
func TestConformance_CoreDNSMapFields(t *testing.T) {
	dir := filepath.Join(filepath.Dir(filepath.Dir(kroExamples(t))), "examples", "kubernetes", "core-dns")
	rgd, err := os.ReadFile(filepath.Join(dir, "core-dns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dup := "        selector:\n         k8s-app: kube-dns\n"
	if strings.Count(string(rgd), dup) != 1 {
		t.Fatalf("core-dns.yaml no longer has its duplicate selector; move it out of knownDifferences")
	}
	inst, err := os.ReadFile(filepath.Join(dir, "coredns-instance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"core-dns.yaml": strings.Replace(string(rgd), dup, "", 1), "app/instance.yaml": string(inst)})
	objs := decodeStream(t, renderRaw(t, root, nil, "app"))
	var svc *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Service" {
			svc = o
		}
	}
	if svc == nil {
		t.Fatalf("objects = %v, want a Service", ids(objs))
	}
	if l := svc.GetLabels(); l["k8s-app"] != "kube-dns" || l["kubernetes.io/name"] != "CoreDNS" {
		t.Errorf("service labels = %v, want the map default of spec.values.service.labels", l)
	}
	if sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector"); sel["k8s-app"] != "kube-dns" {
		t.Errorf("service selector = %v", sel)
	}
}
