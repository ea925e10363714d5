package promoter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/kropipe/kropipe/e2e/stack"
)

// The Helm chart's install on the real kube-apiserver. charts/testdata/kropipe-e2e.yaml is the
// chart's output (`helm template` with webhook, metrics Service and a verification binding, into
// the namespace kropipe-chart; the charts module's test keeps it current, as this module does not
// link the Helm library). Every object passes a strict server-side dry-run apply; then the
// chart's ServiceAccount, Role, RoleBinding and peer Secret are applied for real and
// `promoter controller` runs with exactly the chart Deployment's arguments, authenticated as
// that ServiceAccount: it takes its 16 shards, fills the peer Secret, promotes a pushed tag,
// asks Argo CD to sync the Application — and its log never says "forbidden".
func TestChart_InstallDryRunsAndItsRBACRunsTheController(t *testing.T) {
	const (
		ns      = "kropipe-chart" // the namespace the chart was rendered into
		repo    = "chart-gitops"
		appName = "chart-s00"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	objs := chartObjects(t, filepath.Join(repoRoot, "charts", "testdata", "kropipe-e2e.yaml"))
	for _, n := range []string{ns, ns + "-verify", ns + "-dest"} {
		if err := st.EnsureNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, n := range []string{ns, ns + "-verify", ns + "-dest"} {
			if err := st.Kube.CoreV1().Namespaces().Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleanup: delete namespace %s: %v", n, err)
			}
		}
	})

	// 1. The whole install, as `kubectl apply --server-side --dry-run=server` would send it.
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(st.Kube.Discovery()))
	var deployment *unstructured.Unstructured
	for _, u := range objs {
		if err := dryRunApply(ctx, mapper, u); err != nil {
			t.Errorf("server-side dry-run of the chart's %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		if u.GetKind() == "Deployment" {
			deployment = u
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if deployment == nil {
		t.Fatal("the chart renders no Deployment")
	}

	// 2. The chart's identity and its credential Secret, for real.
	for _, u := range objs {
		switch u.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "Secret":
			if err := st.Apply(ctx, u); err != nil {
				t.Fatalf("apply the chart's %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	tr, err := st.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "kropipe-promoter",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the chart's ServiceAccount kropipe-promoter: %v", err)
	}
	kubeconfig, err := st.KubeconfigFor("kropipe-chart", tr.Status.Token, ns)
	if err != nil {
		t.Fatal(err)
	}

	// 3. One stage in the chart's namespace (Argo CD does not reconcile it: only the promoter
	// touches the Application), its image at 1.0.0.
	p := &pipeline{t: t, ctx: ctx, srv: st.Git}
	if err := p.srv.CreateRepo(ctx, repo); err != nil {
		t.Fatal(err)
	}
	if p.co, err = p.srv.Clone(ctx, repo, filepath.Join(t.TempDir(), repo)); err != nil {
		t.Fatal(err)
	}
	image := repo + "/img0"
	seed := seedStageFolders(t, ctx, p.co, 1, 1, func(int) string { return "s00" }, func(int) string { return image })
	app := stageApplication(appName, ns, p.srv.RepoURL(repo), "s00", image, "2s", ns+"-dest")
	if _, err := st.ArgoCD.ArgoprojV1alpha1().Applications(ns).Create(ctx, app, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Application %s: %v", appName, err)
	}

	// 4. The chart's container, as a process: its arguments with the pod's addresses moved to
	// loopback ports and its files to temporary ones.
	args, env, health := chartControllerArgs(t, deployment, ns)
	proc, err := st.Run("promoter-chart", st.Binaries.Promoter, append(args,
		"--kubeconfig="+kubeconfig,
		"--insecure-registry="+st.RegistryAddr, // the stack's registry speaks plain HTTP
	), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	pr := &promoter{Process: proc, addr: health}
	// A refusal shows in the log at once: fail on it then, not at a wait's timeout.
	forbidden := func() {
		t.Helper()
		logs, err := os.ReadFile(proc.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bytes.ToLower(logs), []byte("forbidden")) {
			t.Fatalf("promoter controller with the chart's RBAC logged forbidden:\n%s", prcGrepLines(logs, "forbidden"))
		}
	}
	p.waitHTTP(pr, "/readyz")

	p.poll("the chart's 16 shard Leases held by promoter-chart", syncTimeout, func() (bool, string) {
		ls, err := st.Kube.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: "kropipe.io/lease-kind=shard"})
		if err != nil {
			return false, err.Error()
		}
		forbidden()
		held := 0
		for _, l := range ls.Items {
			if strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), "promoter-chart_") {
				held++
			}
		}
		return held == 16, fmt.Sprintf("%d of %d Leases held", held, len(ls.Items))
	})
	p.poll("the peer Secret filled by the replica", syncTimeout, func() (bool, string) {
		forbidden()
		s, err := st.Kube.CoreV1().Secrets(ns).Get(ctx, "kropipe-promoter-peer", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(s.Data["token"]) > 0, "no token yet"
	})

	pushImage(t, st.RegistryAddr, image, "1.0.1")
	commit := p.waitCommit("s00", "Promote image from 1.0.0 to 1.0.1", seed)
	p.poll("the sync request on "+appName, syncTimeout, func() (bool, string) {
		forbidden()
		a, err := st.ArgoCD.ArgoprojV1alpha1().Applications(ns).Get(ctx, appName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return syncRequestedAt(a, commit), fmt.Sprintf("operation %+v", a.Operation)
	})
	forbidden()
}

// syncRequestedAt: the promoter asked Argo CD to sync a to revision.
func syncRequestedAt(a *v1alpha1.Application, revision string) bool {
	return a.Operation != nil && a.Operation.Sync != nil && a.Operation.Sync.Revision == revision
}

// chartObjects reads the rendered chart.
func chartObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (charts/: go test ./... -update writes it)", err)
	}
	defer f.Close()
	out, err := stack.DecodeObjects(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// dryRunApply sends u as a strict server-side apply that changes nothing.
func dryRunApply(ctx context.Context, mapper meta.RESTMapper, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	ri := st.Dynamic.Resource(m.Resource)
	opts := metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "helm", Force: ptr.To(true), FieldValidation: "Strict"}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		_, err = ri.Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
	} else {
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
	}
	return err
}

// chartControllerArgs turns the chart Deployment's promoter container into a local command
// line: the same arguments, with the listeners on free loopback ports, the data and webhook
// secret in temporary files, and the pod's downward-API environment filled in. It returns
// the arguments, the environment and the health listener's address.
func chartControllerArgs(t *testing.T, u *unstructured.Unstructured, ns string) (args, env []string, health string) {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Name != "promoter" {
		t.Fatalf("the chart's first container is %s, not promoter", c.Name)
	}
	ports, err := stack.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(randomHex(16)), 0o600); err != nil {
		t.Fatal(err)
	}
	local := map[string]string{
		"--data-dir":            filepath.Join(dir, "data"),
		"--addr":                "127.0.0.1:" + strconv.Itoa(ports[0]),
		"--health-addr":         "127.0.0.1:" + strconv.Itoa(ports[1]),
		"--peer-addr":           "127.0.0.1:" + strconv.Itoa(ports[2]),
		"--webhook-addr":        "127.0.0.1:" + strconv.Itoa(ports[3]),
		"--webhook-secret-file": secretFile,
	}
	for _, a := range c.Args {
		name, _, _ := strings.Cut(a, "=")
		if v, ok := local[name]; ok {
			a = name + "=" + v
			delete(local, name)
		}
		args = append(args, strings.ReplaceAll(a, "$(POD_NAMESPACE)", ns))
	}
	for name := range local {
		t.Fatalf("the chart's promoter has no %s argument (the test moves it to loopback)", name)
	}
	return args, []string{"POD_NAME=promoter-chart", "POD_NAMESPACE=" + ns, "POD_IP=127.0.0.1"}, "127.0.0.1:" + strconv.Itoa(ports[1])
}
