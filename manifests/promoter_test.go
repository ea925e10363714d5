package manifests_test

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// promoterRBAC builds manifests/promoter and returns its Roles, ClusterRoles and bindings.
func promoterRBAC(t *testing.T) (roles []rbacv1.Role, clusterRoles []rbacv1.ClusterRole, bindings []rbacv1.RoleBinding, accounts []string) {
	t.Helper()
	for _, doc := range kustomizeDocs(t, "promoter") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict(doc, &r); err != nil {
				t.Fatalf("Role: %v", err)
			}
			roles = append(roles, r)
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(doc, &r); err != nil {
				t.Fatalf("ClusterRole: %v", err)
			}
			clusterRoles = append(clusterRoles, r)
		case "RoleBinding":
			var b rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict(doc, &b); err != nil {
				t.Fatalf("RoleBinding: %v", err)
			}
			bindings = append(bindings, b)
		case "ClusterRoleBinding":
			t.Errorf("manifests/promoter has ClusterRoleBinding %s; everything the promoter touches is in argocd, a RoleBinding suffices", meta.Metadata.Name)
		case "ServiceAccount":
			accounts = append(accounts, meta.Metadata.Name)
		}
	}
	return roles, clusterRoles, bindings, accounts
}

func promoterDeployment(t *testing.T) (appsv1.Deployment, corev1.Container) {
	t.Helper()
	deployments, _ := kustomizeBuild(t, "promoter")
	d, ok := deployments["kropipe-promoter"]
	if !ok {
		t.Fatalf("kustomize build promoter: no kropipe-promoter Deployment")
	}
	cs := d.Spec.Template.Spec.Containers
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == "promoter" })
	if i < 0 {
		t.Fatalf("kropipe-promoter has no container named promoter")
	}
	return d, cs[i]
}

// flagValue returns --name's value from args ("" and false when absent).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				return args[i+1], true
			}
			return "true", true
		}
	}
	return "", false
}

func TestPromoterManifests_RunTwoControllersWithLeaderElection(t *testing.T) {
	d, c := promoterDeployment(t)
	if d.Namespace != "argocd" {
		t.Errorf("namespace = %q, want argocd (next to the Applications it reads)", d.Namespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2 (sharing the shards, each taking the other's over)", d.Spec.Replicas)
	}
	// Sharded, so that changing replicas alone spreads the work: the Role names every Lease
	// and state ConfigMap of up to 16 shards.
	if v, _ := flagValue(c.Args, "shards"); v != "16" {
		t.Errorf("--shards = %q, want 16 (the Role names the Leases and ConfigMaps of 16 shards)", v)
	}
	if v, _ := flagValue(c.Args, "peer-addr"); v != ":8083" {
		t.Errorf("--peer-addr = %q, want :8083 (the replicas pass requests on to each other)", v)
	}
	if len(c.Args) == 0 || c.Args[0] != "controller" {
		t.Errorf("args = %v, want the controller subcommand first", c.Args)
	}
	if v, ok := flagValue(c.Args, "leader-elect"); !ok || v != "true" {
		t.Errorf("--leader-elect = %q (given %v), want it on: two replicas must not both promote", v, ok)
	}
	if v, _ := flagValue(c.Args, "addr"); !strings.HasPrefix(v, "127.0.0.1:") {
		t.Errorf("--addr = %q, want loopback (reached with kubectl port-forward, no token needed)", v)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API env = %v, want POD_NAME (Lease identity) and POD_NAMESPACE", env)
	}
	if v, _ := flagValue(c.Args, "namespace"); v != "$(POD_NAMESPACE)" {
		t.Errorf("--namespace = %q, want $(POD_NAMESPACE)", v)
	}
	if d.Spec.Template.Spec.ServiceAccountName != "kropipe-promoter" {
		t.Errorf("serviceAccountName = %q, want kropipe-promoter", d.Spec.Template.Spec.ServiceAccountName)
	}
}

func TestPromoterManifests_ProbesReachAHealthPortOffLoopback(t *testing.T) {
	_, c := promoterDeployment(t)
	health, ok := flagValue(c.Args, "health-addr")
	if !ok {
		t.Fatal("no --health-addr: the kubelet probes the pod IP and cannot reach the loopback API")
	}
	_, port, _ := strings.Cut(health, ":")
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("--health-addr %q has no port number", health)
	}
	i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "health" })
	if i < 0 || c.Ports[i].ContainerPort != int32(n) {
		t.Fatalf("ports = %v, want a port named health = %s", c.Ports, port)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe = %v, want httpGet on the health port", name, p)
			continue
		}
		want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[name]
		if p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "health" {
			t.Errorf("%s probe = %s on %s, want %s on health", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), want)
		}
	}
}

func TestPromoterManifests_RestrictedPodSecurity(t *testing.T) {
	d, c := promoterDeployment(t)
	pod := d.Spec.Template.Spec
	sc := c.SecurityContext
	if sc == nil || pod.SecurityContext == nil {
		t.Fatal("the pod or the promoter container has no securityContext")
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"pod runAsNonRoot", pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot},
		{"pod seccomp RuntimeDefault", pod.SecurityContext.SeccompProfile != nil && pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"runAsNonRoot", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
		{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
		{"allowPrivilegeEscalation false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"capabilities drop ALL", sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, corev1.Capability("ALL")) && len(sc.Capabilities.Add) == 0},
		{"seccomp RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"no host namespaces", !pod.HostNetwork && !pod.HostPID && !pod.HostIPC},
		{"cpu and memory requests and limits", c.Resources.Limits.Cpu() != nil && !c.Resources.Limits.Memory().IsZero() && !c.Resources.Requests.Cpu().IsZero() && !c.Resources.Requests.Memory().IsZero()},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("promoter lacks %s", ck.what)
		}
	}

	// With a read-only root, --data-dir must be a writable volume.
	dataDir, _ := flagValue(c.Args, "data-dir")
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dataDir })
	if dataDir == "" || i < 0 {
		t.Fatalf("--data-dir %q is not a mounted volume (mounts %v)", dataDir, c.VolumeMounts)
	}
	j := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if j < 0 || pod.Volumes[j].EmptyDir == nil || c.VolumeMounts[i].ReadOnly {
		t.Errorf("--data-dir %s: volume %q is not a writable emptyDir", dataDir, c.VolumeMounts[i].Name)
	}
}

func TestPromoterManifests_RBACIsLeastPrivilege(t *testing.T) {
	roles, clusterRoles, bindings, accounts := promoterRBAC(t)
	// The one ClusterRole is verification's, bound per destination namespace by the user.
	for _, cr := range clusterRoles {
		if cr.Name != "kropipe-promoter-verify" && cr.Name != "kropipe-promoter-cluster-analysis" {
			t.Errorf("ClusterRole %s: the promoter needs nothing outside argocd but verification Jobs", cr.Name)
		}
	}
	if len(roles) != 1 {
		t.Fatalf("%d Roles, want 1", len(roles))
	}
	role := roles[0]
	if !slices.Contains(accounts, "kropipe-promoter") {
		t.Errorf("ServiceAccounts %v, want kropipe-promoter", accounts)
	}
	bound := slices.ContainsFunc(bindings, func(b rbacv1.RoleBinding) bool {
		return b.RoleRef.Kind == "Role" && b.RoleRef.Name == role.Name &&
			slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == "kropipe-promoter" })
	})
	if !bound {
		t.Errorf("no RoleBinding binds Role %s to ServiceAccount kropipe-promoter", role.Name)
	}

	for _, r := range role.Rules {
		for _, list := range [][]string{r.Verbs, r.Resources, r.APIGroups, r.ResourceNames} {
			if slices.Contains(list, "*") {
				t.Errorf("rule %+v uses *", r)
			}
		}
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v grants non-resource URLs", r)
		}
	}

	// allowed reports whether the Role lets the promoter do verb on group/resource (named name).
	allowed := func(group, resource, verb, name string) bool {
		return slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
				(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name))
		})
	}
	type check struct {
		group, resource, verb, name string
		want                        bool
	}
	tests := []check{
		{"argoproj.io", "applications", "get", "", true},
		{"argoproj.io", "applications", "list", "", true},
		{"argoproj.io", "applications", "watch", "", true},
		{"argoproj.io", "applications", "patch", "", true},
		{"argoproj.io", "applications", "update", "", false},
		{"argoproj.io", "applications", "delete", "", false},
		{"argoproj.io", "applications", "create", "", false},
		{"argoproj.io", "applicationsets", "list", "", true},
		{"argoproj.io", "applicationsets", "watch", "", true},
		{"argoproj.io", "applicationsets", "patch", "", false},
		{"", "secrets", "get", "", true},
		{"", "secrets", "list", "", true},
		{"", "secrets", "watch", "", true},
		{"", "secrets", "create", "", false},
		{"", "secrets", "update", "", false},
		{"", "secrets", "update", "kropipe-promoter-peer", true},
		{"", "secrets", "update", "argocd-secret", false},
		{"", "secrets", "delete", "kropipe-promoter-peer", false},
		{"", "secrets", "patch", "", false},
		{"", "secrets", "delete", "", false},
		{"", "events", "create", "", true},
		{"", "events", "patch", "", true},
		{"coordination.k8s.io", "leases", "create", "", true},
		{"coordination.k8s.io", "leases", "list", "", true},
		{"coordination.k8s.io", "leases", "get", "kropipe-promoter", true},
		{"coordination.k8s.io", "leases", "update", "kropipe-promoter", true},
		{"coordination.k8s.io", "leases", "update", "kropipe-promoter-topology", true},
		{"coordination.k8s.io", "leases", "update", "kropipe-promoter-shard-0", true},
		{"coordination.k8s.io", "leases", "update", "kropipe-promoter-shard-15", true},
		{"coordination.k8s.io", "leases", "update", "kropipe-promoter-shard-16", false},
		{"coordination.k8s.io", "leases", "get", "kropipe-promoter-member-15", true},
		{"coordination.k8s.io", "leases", "update", "kropipe-promoter-member-0", true},
		{"coordination.k8s.io", "leases", "delete", "kropipe-promoter-member-0", false},
		{"coordination.k8s.io", "leases", "update", "someone-elses-lease", false},
		{"coordination.k8s.io", "leases", "delete", "kropipe-promoter", false},
		{"", "configmaps", "create", "", true},
		{"", "configmaps", "get", "kropipe-promoter-state-stages-0", true},
		{"", "configmaps", "update", "kropipe-promoter-state-stages-0", true},
		{"", "configmaps", "update", "kropipe-promoter-state-stages-63", true},
		{"", "configmaps", "update", "kropipe-promoter-state-stages-64", false},
		// An older promoter's state, read once on an upgrade, never written.
		{"", "configmaps", "get", "kropipe-promoter-state", true},
		{"", "configmaps", "get", "kropipe-promoter-state-15", true},
		{"", "configmaps", "update", "kropipe-promoter-state", false},
		{"", "configmaps", "update", "kropipe-promoter-state-0", false},
		{"", "configmaps", "get", "kropipe-promoter-state-16", false},
		{"", "configmaps", "get", "argocd-tls-certs-cm", true},
		{"", "configmaps", "get", "argocd-ssh-known-hosts-cm", true},
		{"", "configmaps", "update", "argocd-tls-certs-cm", false},
		{"", "configmaps", "get", "argocd-cm", false},
		{"", "configmaps", "update", "argocd-cm", false},
		{"", "configmaps", "list", "", false},
		{"apps", "deployments", "get", "", false},
		{"", "pods", "list", "", false},
	}
	// Every bucket a stage's state may live in.
	for b := range kubestate.Buckets {
		name := kubestate.BucketName(kubestate.DefaultName, b)
		tests = append(tests, check{"", "configmaps", "get", name, true}, check{"", "configmaps", "update", name, true})
	}
	for _, tt := range tests {
		if got := allowed(tt.group, tt.resource, tt.verb, tt.name); got != tt.want {
			what := tt.verb + " " + tt.resource
			if tt.group != "" {
				what += "." + tt.group
			}
			if tt.name != "" {
				what += " " + tt.name
			}
			t.Errorf("Role allows %s: %v, want %v", what, got, tt.want)
		}
	}
}

// TestExamples_ApplicationSetDescribesTheSeedPipeline generates the example ApplicationSet's
// Applications the way Argo CD does (Go template with missingkey=error, then templatePatch merged
// over the result) and derives the stages with the promoter's own annotation reader.
func TestExamples_ApplicationSetDescribesTheSeedPipeline(t *testing.T) {
	docs := exampleDocs(t)
	sets := docs["gitops/appsets/services.yaml"]
	if len(sets) != 1 {
		t.Fatalf("examples/gitops/appsets/services.yaml: want one ApplicationSet, got %d documents", len(sets))
	}
	set := &unstructured.Unstructured{Object: sets[0]}
	spec := nested(set.Object, "spec")
	tmplYAML, err := yaml.Marshal(spec["template"])
	if err != nil {
		t.Fatal(err)
	}
	patch, _ := spec["templatePatch"].(string)

	var apps []*unstructured.Unstructured
	for _, g := range spec["generators"].([]any) {
		list, ok := g.(map[string]any)["list"].(map[string]any)
		if !ok {
			continue
		}
		for _, e := range list["elements"].([]any) {
			el := e.(map[string]any)
			var app map[string]any
			if err := yaml.Unmarshal(render(t, string(tmplYAML), el), &app); err != nil {
				t.Fatalf("element %v: template: %v", el, err)
			}
			if patch != "" {
				var p map[string]any
				if err := yaml.Unmarshal(render(t, patch, el), &p); err != nil {
					t.Fatalf("element %v: templatePatch: %v", el, err)
				}
				if p == nil || nested(p, "metadata")["annotations"] == nil {
					t.Fatalf("element %v: templatePatch renders no annotations; a null would make Argo CD's strategic merge drop them all", el)
				}
				mergeMaps(app, p)
			}
			u := &unstructured.Unstructured{Object: app}
			u.SetAPIVersion("argoproj.io/v1alpha1")
			u.SetKind("Application")
			u.SetNamespace(set.GetNamespace())
			u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "ApplicationSet", Name: set.GetName(), UID: "set"}})
			apps = append(apps, u)
		}
	}

	cfg := argocd.Derive(apps, []*unstructured.Unstructured{set})
	for _, p := range append(cfg.Problems, cfg.Warnings...) {
		t.Errorf("examples/gitops/appsets/services.yaml: %v", p)
	}
	got := map[string]stage.Spec{}
	for _, s := range cfg.Specs {
		got[s.Name] = s
	}
	tests := []struct {
		stage, image, constraint, upstream, file string
		soak                                     time.Duration
	}{
		{"develop-frontend", "registry.example.com/team/frontend", "^1.2", "", "develop/frontend/instance.yaml", 0},
		{"develop-backend", "registry.example.com/team/backend", "", "", "develop/backend/instance.yaml", 0},
		{"staging-frontend", "registry.example.com/team/frontend", "^1.2", "develop-frontend", "staging/frontend/instance.yaml", 10 * time.Minute},
		{"staging-backend", "registry.example.com/team/backend", "", "develop-backend", "staging/backend/instance.yaml", 10 * time.Minute},
	}
	if len(got) != len(tests) {
		t.Errorf("stages %v, want %d", slices.Sorted(maps.Keys(got)), len(tests))
	}
	for _, tt := range tests {
		s, ok := got[tt.stage]
		if !ok {
			t.Errorf("no stage %s", tt.stage)
			continue
		}
		if s.Image != tt.image || s.Constraint != tt.constraint || s.Upstream != tt.upstream || s.Soak != tt.soak || s.File != tt.file {
			t.Errorf("%s = image %s constraint %q upstream %q soak %s file %s; want %s %q %q %s %s",
				tt.stage, s.Image, s.Constraint, s.Upstream, s.Soak, s.File, tt.image, tt.constraint, tt.upstream, tt.soak, tt.file)
		}
		if s.Strategy != "semver" || s.Interval != 5*time.Minute || !s.AutoPromote || s.Key != stage.DefaultKey {
			t.Errorf("%s = strategy %q interval %s autoPromote %v key %s; want the set's semver, 5m, true, %s", tt.stage, s.Strategy, s.Interval, s.AutoPromote, s.Key, stage.DefaultKey)
		}
	}
}

// render executes text as an ApplicationSet Go template (goTemplateOptions missingkey=error).
func render(t *testing.T, text string, params map[string]any) []byte {
	t.Helper()
	tmpl, err := template.New("appset").Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, params); err != nil {
		t.Fatalf("template with %v: %v", params, err)
	}
	return out.Bytes()
}

// mergeMaps merges src into dst the way a strategic merge patch treats maps.
func mergeMaps(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// The promoter-webhook component, added to manifests/promoter as a user would: the promoter
// receives notifications on a port the Service reaches, with the secret mounted from the Secret
// the component names, and the POD_IP the leader advertises to its standby.
func TestPromoterWebhookComponent_ExposesTheListenerWithItsSecret(t *testing.T) {
	var svc corev1.Service
	var dep appsv1.Deployment
	for _, doc := range kustomizeDocs(t, "testdata/promoter-webhook") {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Service":
			if err := yaml.UnmarshalStrict(doc, &svc); err != nil {
				t.Fatal(err)
			}
		case "Deployment":
			if err := yaml.UnmarshalStrict(doc, &dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if svc.Name != "kropipe-promoter-webhook" || svc.Namespace != "argocd" {
		t.Fatalf("Service %s/%s, want argocd/kropipe-promoter-webhook", svc.Namespace, svc.Name)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	addr, _ := flagValue(c.Args, "webhook-addr")
	secretFile, _ := flagValue(c.Args, "webhook-secret-file")
	_, port, _ := strings.Cut(addr, ":")
	if port == "" || secretFile == "" {
		t.Fatalf("args %v: want --webhook-addr=:<port> and --webhook-secret-file", c.Args)
	}
	// The Service reaches the listener's port, and selects the promoter's pods.
	named := map[string]int32{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	if len(svc.Spec.Ports) != 1 || strconv.Itoa(int(named[svc.Spec.Ports[0].TargetPort.StrVal])) != port {
		t.Errorf("Service ports %+v, container ports %v: the Service does not reach --webhook-addr %s", svc.Spec.Ports, named, addr)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the promoter's pods (%v)", k, v, dep.Spec.Template.Labels)
		}
	}
	// The secret file comes from the Secret's key "secret".
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "kropipe-promoter-webhook" && secretFile == m.MountPath+"/secret" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--webhook-secret-file %s is not key \"secret\" of the mounted Secret kropipe-promoter-webhook", secretFile)
	}
	hasPodIP := false
	for _, e := range c.Env {
		hasPodIP = hasPodIP || (e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP")
	}
	if !hasPodIP {
		t.Error("no POD_IP from status.podIP: the leader cannot advertise its listener to the standby")
	}
}

func TestPromoterManifests_VerifyClusterRolesAllowOnlyVerification(t *testing.T) {
	_, clusterRoles, bindings, _ := promoterRBAC(t)
	i := slices.IndexFunc(clusterRoles, func(r rbacv1.ClusterRole) bool { return r.Name == "kropipe-promoter-verify" })
	if i < 0 {
		t.Fatal("no ClusterRole kropipe-promoter-verify")
	}
	for _, b := range bindings {
		if b.RoleRef.Kind == "ClusterRole" {
			t.Errorf("RoleBinding %s binds ClusterRole %s in argocd; it is bound in destination namespaces only", b.Name, b.RoleRef.Name)
		}
	}
	rules := clusterRoles[i].Rules
	allowed := func(group, resource, verb string) bool {
		return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb)
		})
	}
	tests := []struct {
		group, resource, verb string
		want                  bool
	}{
		{"batch", "jobs", "create", true},
		{"batch", "jobs", "get", true},
		{"batch", "jobs", "list", true},
		{"batch", "jobs", "delete", true},
		{"batch", "jobs", "update", false},
		{"batch", "jobs", "patch", false},
		{"batch", "cronjobs", "create", false},
		{"", "pods", "list", true},
		{"", "pods", "get", false},
		{"", "pods", "delete", false},
		{"", "pods/log", "get", true},
		{"", "pods/exec", "create", false},
		{"", "secrets", "get", false},
		{"argoproj.io", "analysisruns", "create", true},
		{"argoproj.io", "analysisruns", "get", true},
		{"argoproj.io", "analysisruns", "list", true},
		{"argoproj.io", "analysisruns", "delete", true},
		{"argoproj.io", "analysisruns", "patch", true},
		{"argoproj.io", "analysisruns", "update", false},
		{"argoproj.io", "analysistemplates", "get", true},
		{"argoproj.io", "analysistemplates", "create", false},
		{"argoproj.io", "analysistemplates", "update", false},
		{"argoproj.io", "rollouts", "get", false},
		{"argoproj.io", "applications", "get", false},
	}
	for _, tt := range tests {
		if got := allowed(tt.group, tt.resource, tt.verb); got != tt.want {
			t.Errorf("kropipe-promoter-verify allows %s %s/%s: %v, want %v", tt.verb, tt.group, tt.resource, got, tt.want)
		}
	}
}

func TestPromoterManifests_ClusterAnalysisRoleOnlyReadsClusterAnalysisTemplates(t *testing.T) {
	_, clusterRoles, _, _ := promoterRBAC(t)
	i := slices.IndexFunc(clusterRoles, func(r rbacv1.ClusterRole) bool { return r.Name == "kropipe-promoter-cluster-analysis" })
	if i < 0 {
		t.Fatal("no ClusterRole kropipe-promoter-cluster-analysis")
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"clusteranalysistemplates"}, Verbs: []string{"get"}}}
	if !reflect.DeepEqual(clusterRoles[i].Rules, want) {
		t.Errorf("rules %+v, want %+v", clusterRoles[i].Rules, want)
	}
}

// promoterNetworkPolicies builds dir and returns its NetworkPolicies and Secrets.
func promoterNetworkPolicies(t *testing.T, dir string) ([]networkingv1.NetworkPolicy, map[string]corev1.Secret) {
	t.Helper()
	var nps []networkingv1.NetworkPolicy
	secrets := map[string]corev1.Secret{}
	for _, doc := range kustomizeDocs(t, dir) {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "NetworkPolicy":
			var np networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict(doc, &np); err != nil {
				t.Fatalf("NetworkPolicy: %v", err)
			}
			nps = append(nps, np)
		case "Secret":
			var s corev1.Secret
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				t.Fatalf("Secret: %v", err)
			}
			secrets[s.Name] = s
		}
	}
	return nps, secrets
}

// ingressAllowed says whether the NetworkPolicies let a connection from a pod in the policy's
// namespace labelled from (nil: an address outside the cluster's pods) reach the pod labelled
// to on its container port number port, as a NetworkPolicy implementation decides: a pod no
// policy selects for ingress takes everything; a selected one only what a rule allows.
func ingressAllowed(t *testing.T, nps []networkingv1.NetworkPolicy, from, to map[string]string, ports []corev1.ContainerPort, port int32) bool {
	t.Helper()
	matches := func(sel *metav1.LabelSelector, l map[string]string) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatalf("selector %v: %v", sel, err)
		}
		return s.Matches(labels.Set(l))
	}
	portMatches := func(p networkingv1.NetworkPolicyPort) bool {
		switch {
		case p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP:
			return false
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.Int:
			return p.Port.IntVal == port
		}
		i := slices.IndexFunc(ports, func(c corev1.ContainerPort) bool { return c.Name == p.Port.StrVal })
		return i >= 0 && ports[i].ContainerPort == port
	}
	selected := false
	for _, np := range nps {
		if !matches(&np.Spec.PodSelector, to) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) > 0 && !slices.ContainsFunc(rule.Ports, portMatches) {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, peer := range rule.From {
				switch {
				case peer.IPBlock != nil:
					if from == nil {
						return true
					}
				case peer.NamespaceSelector != nil:
					t.Errorf("NetworkPolicy %s allows whole namespaces (%v): the promoter's pods are in its own", np.Name, peer.NamespaceSelector)
				case peer.PodSelector != nil && from != nil && matches(peer.PodSelector, from):
					return true
				}
			}
		}
	}
	return !selected
}

// TestPromoterManifests_OnlyPromoterPodsReachThePeerPort: --peer-addr is on the pod IP, so a
// NetworkPolicy keeps every other pod off it, while the probes, the metrics and registry
// notifications still arrive from anywhere.
func TestPromoterManifests_OnlyPromoterPodsReachThePeerPort(t *testing.T) {
	for _, dir := range []string{"promoter", "testdata/promoter-webhook"} {
		t.Run(dir, func(t *testing.T) {
			deployments, _ := kustomizeBuild(t, dir)
			d := deployments["kropipe-promoter"]
			c := d.Spec.Template.Spec.Containers[0]
			pod := d.Spec.Template.Labels
			nps, _ := promoterNetworkPolicies(t, dir)
			if len(nps) != 1 {
				t.Fatalf("%d NetworkPolicies, want 1", len(nps))
			}
			np := nps[0]
			if np.Namespace != d.Namespace {
				t.Errorf("NetworkPolicy in %q, the promoter in %q", np.Namespace, d.Namespace)
			}
			if sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); sel.Empty() || !sel.Matches(labels.Set(pod)) {
				t.Errorf("NetworkPolicy selects %v, want the promoter's pods %v (and only them)", np.Spec.PodSelector, pod)
			}
			if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("NetworkPolicy restricts egress: the promoter reaches Git, registries and the API server")
			}
			portOf := func(flag string) int32 {
				v, ok := flagValue(c.Args, flag)
				_, p, _ := strings.Cut(v, ":")
				n, err := strconv.Atoi(p)
				if !ok || err != nil {
					t.Fatalf("--%s = %q: no port", flag, v)
				}
				return int32(n)
			}
			peer := portOf("peer-addr")
			if i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "peer" }); i < 0 || c.Ports[i].ContainerPort != peer {
				t.Errorf("container ports %v, want peer = --peer-addr's %d", c.Ports, peer)
			}
			argocdServer := map[string]string{"app.kubernetes.io/name": "argocd-server", "app.kubernetes.io/part-of": "argocd"}
			sameSet := map[string]string{"app.kubernetes.io/part-of": "kropipe"} // another kropipe part, not the promoter
			tests := []struct {
				what string
				from map[string]string
				port int32
				want bool
			}{
				{"another promoter replica → peer", pod, peer, true},
				{"Argo CD's server → peer", argocdServer, peer, false},
				{"another kropipe pod → peer", sameSet, peer, false},
				{"outside the cluster → peer", nil, peer, false},
				{"the kubelet or Prometheus → health", nil, portOf("health-addr"), true},
				{"any pod → health", argocdServer, portOf("health-addr"), true},
			}
			if _, ok := flagValue(c.Args, "webhook-addr"); ok {
				tests = append(tests, struct {
					what string
					from map[string]string
					port int32
					want bool
				}{"the registry → webhook", nil, portOf("webhook-addr"), true})
			}
			for _, tt := range tests {
				if got := ingressAllowed(t, nps, tt.from, pod, c.Ports, tt.port); got != tt.want {
					t.Errorf("%s (%d): allowed %v, want %v", tt.what, tt.port, got, tt.want)
				}
			}
		})
	}
}

// TestPromoterManifests_PeerCredentialNeverInGit: the replicas authenticate to each other
// with the token of a Secret the manifests ship empty and the promoter fills.
func TestPromoterManifests_PeerCredentialNeverInGit(t *testing.T) {
	_, c := promoterDeployment(t)
	name, ok := flagValue(c.Args, "peer-secret")
	if !ok || name == "" {
		t.Fatal("no --peer-secret: requests on --peer-addr would carry no credential the replicas share")
	}
	_, secrets := promoterNetworkPolicies(t, "promoter")
	s, ok := secrets[name]
	if !ok {
		t.Fatalf("--peer-secret=%s, but the manifests ship no such Secret", name)
	}
	if len(s.Data) != 0 || len(s.StringData) != 0 {
		t.Errorf("Secret %s ships with content: the promoter fills it, no credential lives in Git", name)
	}
	roles, _, _, _ := promoterRBAC(t)
	updates := slices.ContainsFunc(roles[0].Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "secrets") && slices.Contains(r.Verbs, "update") && slices.Equal(r.ResourceNames, []string{name})
	})
	if !updates {
		t.Errorf("the Role does not allow update on Secret %s (and only it): the first replica cannot fill it", name)
	}
}

// The signing key comes from the Secret kropipe-promoter-signing, mounted read-only where
// the README's --signing-key-file points; optional, so the promoter starts without it and
// signs once the Secret exists and the flag is given.
func TestPromoterManifests_SigningKeyMountIsOptional(t *testing.T) {
	d, c := promoterDeployment(t)
	vols := d.Spec.Template.Spec.Volumes
	i := slices.IndexFunc(vols, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "kropipe-promoter-signing"
	})
	if i < 0 {
		t.Fatalf("volumes %v: no Secret kropipe-promoter-signing", vols)
	}
	if s := vols[i].Secret; s.Optional == nil || !*s.Optional {
		t.Error("Secret kropipe-promoter-signing is not optional: the pod would not start without a signing key")
	}
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == vols[i].Name })
	if j < 0 || c.VolumeMounts[j].MountPath != "/etc/kropipe/signing" || !c.VolumeMounts[j].ReadOnly {
		t.Errorf("mounts %v: want %s read-only at /etc/kropipe/signing", c.VolumeMounts, vols[i].Name)
	}
	// Signing is the user's choice: the shipped args name no key.
	if _, ok := flagValue(c.Args, "signing-key-file"); ok {
		t.Errorf("args %v name a signing key; without the Secret the pod would not start", c.Args)
	}
}

// The signature policies come from the ConfigMap kropipe-signature-policies, mounted where
// --signature-policies points; optional, so the promoter starts without it (no policies).
func TestPromoterManifests_SignaturePoliciesMountIsOptional(t *testing.T) {
	d, c := promoterDeployment(t)
	vols := d.Spec.Template.Spec.Volumes
	i := slices.IndexFunc(vols, func(v corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == "kropipe-signature-policies"
	})
	if i < 0 {
		t.Fatalf("volumes %v: no ConfigMap kropipe-signature-policies", vols)
	}
	if o := vols[i].ConfigMap.Optional; o == nil || !*o {
		t.Error("ConfigMap kropipe-signature-policies is not optional: the pod would not start without signature policies")
	}
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == vols[i].Name })
	if j < 0 || !c.VolumeMounts[j].ReadOnly {
		t.Fatalf("mounts %v: want %s mounted read-only", c.VolumeMounts, vols[i].Name)
	}
	file, ok := flagValue(c.Args, "signature-policies")
	if !ok || file != c.VolumeMounts[j].MountPath+"/policies.yaml" {
		t.Errorf("--signature-policies %q; want the ConfigMap's policies.yaml under %s", file, c.VolumeMounts[j].MountPath)
	}
}
