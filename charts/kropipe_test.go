package charts_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	"sigs.k8s.io/yaml"
)

const chartDir = "kropipe"

// TestChart_LintsClean is `helm lint --strict` with the defaults and with every optional part on.
func TestChart_LintsClean(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{name: "defaults"},
		{name: "everything on", values: everythingOn()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = "argocd"
			res := lint.Run([]string{chartDir}, tc.values)
			for _, m := range res.Messages {
				t.Logf("helm lint: %s", m)
			}
			if len(res.Errors) > 0 {
				t.Errorf("helm lint --strict %s: %v", chartDir, res.Errors)
			}
		})
	}
}

// everythingOn turns every optional part of the chart on.
func everythingOn() map[string]any {
	return map[string]any{
		"api":               map[string]any{"addr": ":8080", "token": map[string]any{"secretName": "kropipe-api-token", "create": true}},
		"webhook":           map[string]any{"enabled": true, "secret": map[string]any{"create": true}, "service": map[string]any{"type": "LoadBalancer"}},
		"metrics":           map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}}},
		"signing":           map[string]any{"enabled": true, "passphrase": true, "authorEmail": "bot@example.com"},
		"watchNamespaces":   []any{"argocd", "team-a"},
		"verification":      map[string]any{"namespaces": []any{"team-a-dev"}, "clusterAnalysis": true},
		"image":             map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32), "pullPolicy": "Always"},
		"imagePullSecrets":  []any{map[string]any{"name": "ghcr"}},
		"extraArgs":         []any{"--pull-secrets=regcred", "--interval=2m"},
		"extraEnv":          []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}},
		"podAnnotations":    map[string]any{"example.com/team": "platform"},
		"podLabels":         map[string]any{"example.com/tier": "tools"},
		"nodeSelector":      map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":       []any{map[string]any{"key": "tools", "operator": "Exists"}},
		"priorityClassName": "system-cluster-critical",
	}
}

// TestChart_DefaultsRenderTheKustomizeInstall: where both exist, the chart and
// manifests/ make the same objects — same kinds and names, same spec, same RBAC rules; the
// chart only adds Helm's labels. So `helm install` and `kubectl apply -k` install the same
// promoter, and a kustomize install's Deployment can be adopted (same selector).
func TestChart_DefaultsRenderTheKustomizeInstall(t *testing.T) {
	c := loadChart(t, chartDir)
	for _, tc := range []struct {
		name      string
		values    map[string]any
		kustomize string
	}{
		{name: "promoter", kustomize: "../manifests/promoter"},
		{name: "promoter with webhook", values: map[string]any{"webhook": map[string]any{"enabled": true}}, kustomize: "../manifests/testdata/promoter-webhook"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := byKey(kustomize(t, tc.kustomize))
			got := byKey(render(t, c, "argocd", tc.values))
			if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
				t.Fatalf("objects differ:\nchart:     %s\nkustomize: %s", strings.Join(g, " "), strings.Join(w, " "))
			}
			for k, w := range want {
				g := got[k]
				gl, wl := popLabels(g), popLabels(w)
				for name, v := range wl {
					if gl[name] != v {
						t.Errorf("%s: label %s=%v, want %v (as manifests/)", k, name, gl[name], v)
					}
				}
				if d := cmp.Diff(w, g); d != "" {
					t.Errorf("%s differs from manifests/ (-kustomize +chart):\n%s", k, d)
				}
			}
		})
	}
}

func byKey(objs []object) map[string]object {
	m := map[string]object{}
	for _, o := range objs {
		m[key(o)] = o
	}
	return m
}

// popLabels removes and returns an object's metadata.labels.
func popLabels(o object) map[string]any {
	meta, _ := o["metadata"].(map[string]any)
	l, _ := meta["labels"].(map[string]any)
	delete(meta, "labels")
	return l
}

// TestChart_ValuesShapeTheObjects: each value changes what its comment in values.yaml says.
func TestChart_ValuesShapeTheObjects(t *testing.T) {
	c := loadChart(t, chartDir)
	for _, tc := range []struct {
		name      string
		namespace string
		values    map[string]any
		check     func(t *testing.T, objs []object)
	}{{
		name:   "shards set the flag and the Leases the Role grants",
		values: map[string]any{"replicaCount": 3, "shards": 4},
		check: func(t *testing.T, objs []object) {
			d := find(t, objs, "Deployment", "kropipe-promoter")
			if r := mustAt(t, d, "spec", "replicas"); r != 3.0 {
				t.Errorf("replicas %v, want 3", r)
			}
			wantArg(t, objs, "--shards=4", true)
			want := []string{"kropipe-promoter", "kropipe-promoter-topology",
				"kropipe-promoter-shard-0", "kropipe-promoter-shard-1", "kropipe-promoter-shard-2", "kropipe-promoter-shard-3",
				"kropipe-promoter-member-0", "kropipe-promoter-member-1", "kropipe-promoter-member-2", "kropipe-promoter-member-3"}
			if got := leaseNames(t, objs); !slices.Equal(got, want) {
				t.Errorf("Role grants Leases %v, want %v", got, want)
			}
		},
	}, {
		name:   "one shard: the leader's Lease only",
		values: map[string]any{"shards": 1, "replicaCount": 2},
		check: func(t *testing.T, objs []object) {
			wantArg(t, objs, "--shards=1", true)
			if got, want := leaseNames(t, objs), []string{"kropipe-promoter", "kropipe-promoter-topology"}; !slices.Equal(got, want) {
				t.Errorf("Role grants Leases %v, want %v", got, want)
			}
		},
	}, {
		name:   "image digest and pull policy",
		values: map[string]any{"image": map[string]any{"repository": "registry.example.com/kropipe/promoter", "digest": "sha256:" + strings.Repeat("0f", 32), "pullPolicy": "IfNotPresent"}},
		check: func(t *testing.T, objs []object) {
			ct := promoterContainer(t, objs)
			if want := "registry.example.com/kropipe/promoter@sha256:" + strings.Repeat("0f", 32); ct["image"] != want {
				t.Errorf("image %v, want %s", ct["image"], want)
			}
			if ct["imagePullPolicy"] != "IfNotPresent" {
				t.Errorf("imagePullPolicy %v, want IfNotPresent", ct["imagePullPolicy"])
			}
		},
	}, {
		name:   "image tag",
		values: map[string]any{"image": map[string]any{"tag": "v1.4.0"}},
		check: func(t *testing.T, objs []object) {
			if img := promoterContainer(t, objs)["image"]; img != "ghcr.io/kropipe/promoter:v1.4.0" {
				t.Errorf("image %v, want ghcr.io/kropipe/promoter:v1.4.0", img)
			}
		},
	}, {
		name:   "GOMEMLIMIT follows the memory limit; none without one",
		values: map[string]any{"resources": map[string]any{"requests": map[string]any{"memory": "256Mi"}, "limits": nil}},
		check: func(t *testing.T, objs []object) {
			if _, err := at(promoterContainer(t, objs), "env", "name=GOMEMLIMIT"); err == nil {
				t.Error("GOMEMLIMIT is set without a memory limit (it would be the node's memory)")
			}
			if got := mustAt(t, promoterContainer(t, objs), "resources"); !cmp.Equal(got, map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "256Mi"}}) {
				t.Errorf("resources %v", got)
			}
		},
	}, {
		name:   "webhook with a created secret",
		values: map[string]any{"webhook": map[string]any{"enabled": true, "port": 9443, "secret": map[string]any{"name": "hook", "create": true}}},
		check: func(t *testing.T, objs []object) {
			wantArg(t, objs, "--webhook-addr=:9443", true)
			if p := mustAt(t, find(t, objs, "Service", "kropipe-promoter-webhook"), "spec", "ports"); p.([]any)[0].(map[string]any)["port"] != 9443.0 {
				t.Errorf("Service ports %v, want 9443", p)
			}
			wantRandomKey(t, find(t, objs, "Secret", "hook"), "secret")
			if v := mustAt(t, find(t, objs, "Deployment", "kropipe-promoter"), "spec", "template", "spec", "volumes", "name=webhook-secret", "secret", "secretName"); v != "hook" {
				t.Errorf("webhook volume mounts Secret %v, want hook", v)
			}
		},
	}, {
		name:   "API off loopback with a created token",
		values: map[string]any{"api": map[string]any{"addr": ":9090", "token": map[string]any{"secretName": "api-token", "create": true}}},
		check: func(t *testing.T, objs []object) {
			wantArg(t, objs, "--addr=:9090", true)
			wantArg(t, objs, "--token-file=/etc/kropipe/api/token", true)
			wantRandomKey(t, find(t, objs, "Secret", "api-token"), "token")
			np := find(t, objs, "NetworkPolicy", "kropipe-promoter")
			if ports := fmt.Sprint(mustAt(t, np, "spec", "ingress")); !strings.Contains(ports, "port:9090") {
				t.Errorf("NetworkPolicy does not open the API's port 9090: %s", ports)
			}
		},
	}, {
		name:   "ServiceMonitor only when asked, with its Service",
		values: map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true, "interval": "1m", "labels": map[string]any{"release": "prom"}}}},
		check: func(t *testing.T, objs []object) {
			sm := find(t, objs, "ServiceMonitor", "kropipe-promoter")
			if v := mustAt(t, sm, "metadata", "labels", "release"); v != "prom" {
				t.Errorf("ServiceMonitor label release=%v", v)
			}
			svc := find(t, objs, "Service", "kropipe-promoter-metrics")
			sel := mustAt(t, sm, "spec", "selector", "matchLabels").(map[string]any)
			labels := mustAt(t, svc, "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("ServiceMonitor selects %s=%v; the metrics Service has %v", k, v, labels[k])
				}
			}
		},
	}, {
		name:   "PodDisruptionBudget and NetworkPolicy can be left out",
		values: map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}, "networkPolicy": map[string]any{"enabled": false}},
		check: func(t *testing.T, objs []object) {
			for _, kind := range []string{"PodDisruptionBudget", "NetworkPolicy"} {
				if lookup(objs, kind, "kropipe-promoter") != nil {
					t.Errorf("%s rendered although disabled", kind)
				}
			}
		},
	}, {
		name:   "other watched namespaces get the Application rules",
		values: map[string]any{"watchNamespaces": []any{"argocd", "team-a"}},
		check: func(t *testing.T, objs []object) {
			wantArg(t, objs, "--watch-namespaces=argocd,team-a", true)
			var roles []string
			for _, o := range objs {
				if o["kind"] == "Role" || o["kind"] == "RoleBinding" {
					roles = append(roles, key(o))
				}
			}
			want := []string{"Role/argocd/kropipe-promoter", "Role/team-a/kropipe-promoter", "RoleBinding/argocd/kropipe-promoter", "RoleBinding/team-a/kropipe-promoter"}
			if slices.Sort(roles); !slices.Equal(roles, want) {
				t.Errorf("Roles and bindings %v, want %v", roles, want)
			}
		},
	}, {
		name:      "installed outside argocd: that namespace is Argo CD's",
		namespace: "gitops",
		check: func(t *testing.T, objs []object) {
			wantArg(t, objs, "--argocd-namespace=gitops", true)
			wantArg(t, objs, "--watch-namespaces=gitops", true)
		},
	}, {
		name:   "signing",
		values: map[string]any{"signing": map[string]any{"enabled": true, "secretName": "sign", "passphrase": true, "authorEmail": "bot@example.com"}},
		check: func(t *testing.T, objs []object) {
			for _, a := range []string{"--signing-key-file=/etc/kropipe/signing/key", "--signing-key-passphrase-file=/etc/kropipe/signing/passphrase", "--git-author-email=bot@example.com"} {
				wantArg(t, objs, a, true)
			}
		},
	}, {
		name:   "verification bindings",
		values: map[string]any{"verification": map[string]any{"namespaces": []any{"dev"}, "clusterAnalysis": true}},
		check: func(t *testing.T, objs []object) {
			find(t, objs, "RoleBinding", "kropipe-promoter-verify")
			find(t, objs, "ClusterRoleBinding", "kropipe-promoter-cluster-analysis")
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := tc.namespace
			if ns == "" {
				ns = "argocd"
			}
			tc.check(t, render(t, c, ns, tc.values))
		})
	}
}

// TestChart_RefusesValuesThatCannotWork: values.schema.json and the templates refuse a value
// that would make a broken install, naming the value.
func TestChart_RefusesValuesThatCannotWork(t *testing.T) {
	c := loadChart(t, chartDir)
	for _, tc := range []struct {
		name    string
		values  map[string]any
		wantErr string
	}{
		{name: "no shards", values: map[string]any{"shards": 0}, wantErr: "shards"},
		{name: "replicas as words", values: map[string]any{"replicaCount": "two"}, wantErr: "replicaCount"},
		{name: "a misspelt key", values: map[string]any{"replicas": 3}, wantErr: "replicas"},
		{name: "unknown log level", values: map[string]any{"logLevel": "verbose"}, wantErr: "logLevel"},
		{name: "an extra arg that is no flag", values: map[string]any{"extraArgs": []any{"shards=3"}}, wantErr: "extraArgs"},
		{name: "webhook on the peer port", values: map[string]any{"webhook": map[string]any{"port": 8083}}, wantErr: "webhook"},
		{name: "API address without a port", values: map[string]any{"api": map[string]any{"addr": "localhost"}}, wantErr: "addr"},
		{name: "memory limit that is no quantity", values: map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1 GB"}}}, wantErr: "memory"},
		{name: "API off loopback without a token", values: map[string]any{"api": map[string]any{"addr": "0.0.0.0:8080"}}, wantErr: "api.token.secretName"},
		{name: "verify bindings without the ClusterRoles", values: map[string]any{"verification": map[string]any{"clusterRoles": false, "namespaces": []any{"dev"}}}, wantErr: "verification.clusterRoles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(c, "kropipe", "argocd", tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("helm template with %v: error %v, want one naming %q", tc.values, err, tc.wantErr)
			}
		})
	}
}

func promoterContainer(t *testing.T, objs []object) map[string]any {
	t.Helper()
	return mustAt(t, find(t, objs, "Deployment", "kropipe-promoter"), "spec", "template", "spec", "containers", "name=promoter").(map[string]any)
}

func wantArg(t *testing.T, objs []object, arg string, want bool) {
	t.Helper()
	args := promoterContainer(t, objs)["args"].([]any)
	if slices.Contains(args, any(arg)) != want {
		t.Errorf("args %v: %s present %v, want %v", args, arg, !want, want)
	}
}

// leaseNames are the Lease names the promoter's Role may get and update.
func leaseNames(t *testing.T, objs []object) []string {
	t.Helper()
	var names []string
	for _, r := range mustAt(t, find(t, objs, "Role", "kropipe-promoter"), "rules").([]any) {
		rule := r.(map[string]any)
		if fmt.Sprint(rule["resources"]) == "[leases]" && rule["resourceNames"] != nil {
			for _, n := range rule["resourceNames"].([]any) {
				names = append(names, n.(string))
			}
		}
	}
	return names
}

// wantRandomKey checks a created Secret holds a 48-character random value under key.
func wantRandomKey(t *testing.T, secret object, key string) {
	t.Helper()
	v, _ := mustAt(t, secret, "data", key).(string)
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(raw) != 48 {
		t.Errorf("Secret %s: %s is not 48 random characters (%d bytes, %v)", secret["metadata"].(map[string]any)["name"], key, len(raw), err)
	}
}

// renderedForE2E is the chart's install that e2e/promoter/chart_test.go applies (server-side
// dry-run, then the controller runs with its RBAC): the defaults plus every part the stack can
// hold (no ServiceMonitor: the stack has no prometheus-operator CRDs), in a namespace of its
// own so its Leases are nobody else's (the chart's "installed outside argocd" case).
const (
	renderedForE2E  = "testdata/kropipe-e2e.yaml"
	namespaceForE2E = "kropipe-chart"
)

func e2eValues() map[string]any {
	return map[string]any{
		"webhook":      map[string]any{"enabled": true},
		"metrics":      map[string]any{"service": map[string]any{"enabled": true}},
		"verification": map[string]any{"namespaces": []any{namespaceForE2E + "-verify"}},
	}
}

// TestChart_RenderedInstallForE2EIsCurrent keeps testdata/kropipe-argocd.yaml the chart's
// output, so the e2e (a module without the Helm library) applies what the chart makes today.
func TestChart_RenderedInstallForE2EIsCurrent(t *testing.T) {
	manifest, err := helmTemplate(loadChart(t, chartDir), "kropipe", namespaceForE2E, e2eValues())
	if err != nil {
		t.Fatal(err)
	}
	got := []byte("# Generated by charts/kropipe_test.go from charts/kropipe (helm template kropipe charts/kropipe -n " + namespaceForE2E + "\n" +
		"# with webhook, metrics Service and a verification binding): go test ./... -update in charts/.\n" + manifest)
	if *update {
		if err := os.WriteFile(renderedForE2E, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(renderedForE2E)
	if err != nil {
		t.Fatalf("%v (create it with go test ./... -update in charts/)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not the chart's output: run go test ./... -update in charts/", renderedForE2E)
	}
}

// TestChart_ReadmeListsEveryValue keeps the values table of kropipe/README.md generated from
// values.yaml's "# --" comments.
func TestChart_ReadmeListsEveryValue(t *testing.T) {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := valuesTable(values)
	if err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	readme := filepath.Join(chartDir, "README.md")
	doc, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	got, err := replaceBetween(string(doc), valuesBegin, valuesEnd, table)
	if err != nil {
		t.Fatalf("%s: %v", readme, err)
	}
	if *update {
		if err := os.WriteFile(readme, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != string(doc) {
		t.Errorf("%s's values table is not values.yaml's: run go test ./... -update in charts/", readme)
	}
}

// Every value of the chart's defaults is documented: a key without a "# --" comment fails.
func TestChart_EveryValueHasAComment(t *testing.T) {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := valueRows(values)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, r := range rows {
		documented[r.key] = true
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(values, &defaults); err != nil {
		t.Fatal(err)
	}
	for _, leaf := range leaves("", defaults) {
		if !documented[leaf] && !documentedParent(leaf, documented) {
			t.Errorf("values.yaml: %s has no \"# --\" comment", leaf)
		}
	}
}

func documentedParent(k string, documented map[string]bool) bool {
	for i := strings.LastIndex(k, "."); i > 0; i = strings.LastIndex(k[:i], ".") {
		if documented[k[:i]] {
			return true
		}
	}
	return false
}

// leaves lists the dotted keys of a values tree's leaves (a map's keys, not a list's items).
func leaves(prefix string, m map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if sub, ok := m[k].(map[string]any); ok && len(sub) > 0 {
			out = append(out, leaves(prefix+k+".", sub)...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out
}

// BenchmarkChart_Render is one `helm template` of the chart with its defaults, loading included.
func BenchmarkChart_Render(b *testing.B) {
	for b.Loop() {
		if _, err := helmTemplate(loadChart(b, chartDir), "kropipe", "argocd", nil); err != nil {
			b.Fatal(err)
		}
	}
}
