package plugin_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/e2e/stack"
)

// syncTimeout bounds each wait for Argo CD: a sync here takes seconds, a loaded 2-core CI
// machine can stretch that a lot.
const syncTimeout = 4 * time.Minute

func TestPlugin_SyncsInstanceIntoHealthyDeploymentAndService(t *testing.T) {
	t.Parallel()
	eachArgoCD(t, true, func(t *testing.T, argo *stack.ArgoCDInstall) {
		ctx := context.Background()
		image, tag := instanceImage(t, filepath.Join(examplesDir, "develop/frontend/instance.yaml"))
		ns := destNamespace(argo, "develop")

		createApp(t, argo, "develop-frontend", "develop/frontend", ns)
		waitApp(t, argo, "develop-frontend", "Synced and Healthy", syncedHealthy(""))

		dep, err := st.Kube.AppsV1().Deployments(ns).Get(ctx, "frontend", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Deployment %s/frontend after sync: %v", ns, err)
		}
		if got, want := dep.Spec.Template.Spec.Containers[0].Image, image+":"+tag; got != want {
			t.Errorf("Deployment %s/frontend image = %q, want %q (from develop/frontend/instance.yaml)", ns, got, want)
		}
		if dep.Status.ReadyReplicas != *dep.Spec.Replicas {
			t.Errorf("Deployment %s/frontend ready replicas = %d, want %d (kwok pods)", ns, dep.Status.ReadyReplicas, *dep.Spec.Replicas)
		}
		if _, err := st.Kube.CoreV1().Services(ns).Get(ctx, "frontend", metav1.GetOptions{}); err != nil {
			t.Errorf("Service %s/frontend after sync: %v", ns, err)
		}
	})
}

func TestPlugin_RollsDeploymentWhenTagChangesInGit(t *testing.T) {
	t.Parallel()
	// One line after the other: both watch the same instance file, and each pushes a new tag.
	eachArgoCD(t, false, func(t *testing.T, argo *stack.ArgoCDInstall) {
		const path, app = "develop/backend", "rollout-backend"
		ns := destNamespace(argo, "rollout")
		file := filepath.Join(checkout.Dir, path, "instance.yaml")
		image, oldTag := instanceImage(t, file)
		name := instanceName(t, file)

		createApp(t, argo, app, path, ns)
		waitApp(t, argo, app, "Synced and Healthy at the current tag", syncedHealthy(""))
		assertImage(t, ns, name, image+":"+oldTag)

		newTag := oldTag + "-e2e"
		sha := pushTag(t, filepath.Join(path, "instance.yaml"), newTag)
		refresh(t, argo, app)
		waitApp(t, argo, app, "Synced and Healthy at "+sha[:8], syncedHealthy(sha))
		assertImage(t, ns, name, image+":"+newTag)
	})
}

// TestPlugin_BrokenInstanceShowsSidecarError: the Application's condition carries cmp-sidecar's
// error as the local run with that line's variables prints it. On v3 that run is given
// ARGOCD_APP_PROJECT_NAME, so when cmp-sidecar names the project in its error the condition
// proves argocd-cmp-server v3 passed it.
func TestPlugin_BrokenInstanceShowsSidecarError(t *testing.T) {
	t.Parallel()
	eachArgoCD(t, true, func(t *testing.T, argo *stack.ArgoCDInstall) {
		ns := destNamespace(argo, "broken")
		subject, want := sidecarError(t, argo, "broken-frontend", "broken/frontend", ns)

		createApp(t, argo, "broken-frontend", "broken/frontend", ns)
		var msg string
		waitApp(t, argo, "broken-frontend", "a condition carrying cmp-sidecar's error", func(a *v1alpha1.Application) bool {
			for _, c := range a.Status.Conditions {
				if strings.Contains(c.Message, "cmp-sidecar: "+subject) && strings.Contains(c.Message, want) {
					msg = c.Message
					return true
				}
			}
			return false
		})
		t.Logf("Application condition: %s", msg)
	})
}

// eachArgoCD runs test once for every Argo CD line of the stack (v2.14, v3), as subtests named
// by version, in parallel when parallel is set.
func eachArgoCD(t *testing.T, parallel bool, test func(*testing.T, *stack.ArgoCDInstall)) {
	for _, argo := range st.ArgoCDInstalls {
		t.Run(argo.Version, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			test(t, argo)
		})
	}
}

// destNamespace keeps each line's Applications out of the other's namespaces: both deploy the
// same instances, and a resource must belong to one Application only.
func destNamespace(argo *stack.ArgoCDInstall, ns string) string {
	if argo == st.ArgoCDV2() {
		return ns
	}
	return ns + "-v3"
}

// harnessRenderInProcess makes a cmp-sidecar the harness runs itself render in-process: the
// render server it would start otherwise is its own session, outside the stack's process
// groups, and would outlive the test.
const harnessRenderInProcess = "KROPIPE_RENDER_SERVER=off"

// sidecarError runs the freshly built cmp-sidecar the way argo's argocd-cmp-server does for
// Application app (in the source folder of a checkout, with the variables that line sets) and
// returns what the Application's condition must carry: the subject its error starts with ("application <name>",
// with whatever it makes of v3's project name) and the part of its last line that names the
// problem.
func sidecarError(t *testing.T, argo *stack.ArgoCDInstall, app, path, ns string) (subject, problem string) {
	t.Helper()
	cmd := exec.Command(st.Binaries.CmpSidecar, "generate")
	cmd.Dir = filepath.Join(checkout.Dir, path)
	cmd.Env = append(os.Environ(), "ARGOCD_APP_NAME="+app, "ARGOCD_APP_NAMESPACE="+ns, "ARGOCD_APP_SOURCE_PATH="+path,
		harnessRenderInProcess)
	if argo != st.ArgoCDV2() {
		// Argo CD v3 also tells the plugin the Application's project.
		cmd.Env = append(cmd.Env, "ARGOCD_APP_PROJECT_NAME=default")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("cmp-sidecar generate in %s succeeded; the broken instance should fail", path)
	}
	line := strings.TrimSpace(stderr.String())
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	line = strings.TrimPrefix(line, "cmp-sidecar: ")
	// The error starts with "application <name>[ ...]: " (the local run has no revision, which
	// Argo CD's message adds after the subject); the problem is what follows.
	subject = "application " + app
	if strings.HasPrefix(line, "application ") {
		if i := strings.Index(line, ": "); i >= 0 {
			subject, line = line[:i], line[i+2:]
		}
	}
	// Paths of the local checkout differ from the cmp-server's extraction folder; keep the part
	// after the last absolute path.
	if i := strings.LastIndex(line, checkout.Dir); i >= 0 {
		line = line[i+len(checkout.Dir):]
	}
	if line == "" {
		t.Fatalf("cmp-sidecar generate in %s failed without an error message", path)
	}
	t.Logf("cmp-sidecar generate says: %s: %s", subject, line)
	return subject, line
}

func createApp(t *testing.T, argo *stack.ArgoCDInstall, name, path, namespace string) {
	t.Helper()
	app := &v1alpha1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: argo.Namespace},
		Spec: v1alpha1.ApplicationSpec{
			Project: "default",
			Source: &v1alpha1.ApplicationSource{
				RepoURL:        st.Git.RepoURL(repoName),
				Path:           path,
				TargetRevision: "main",
				Plugin:         &v1alpha1.ApplicationSourcePlugin{Name: "kro"},
			},
			Destination: v1alpha1.ApplicationDestination{Server: st.APIServerURL, Namespace: namespace},
			SyncPolicy: &v1alpha1.SyncPolicy{
				Automated:   &v1alpha1.SyncPolicyAutomated{Prune: true, SelfHeal: true},
				SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"},
				Retry:       &v1alpha1.RetryStrategy{Limit: 5},
			},
		},
	}
	if _, err := apps(argo).Create(context.Background(), app, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Application %s/%s: %v", argo.Namespace, name, err)
	}
}

// apps are the Applications of Argo CD installation argo.
func apps(argo *stack.ArgoCDInstall) interface {
	Create(context.Context, *v1alpha1.Application, metav1.CreateOptions) (*v1alpha1.Application, error)
	Get(context.Context, string, metav1.GetOptions) (*v1alpha1.Application, error)
	Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*v1alpha1.Application, error)
} {
	return st.ArgoCD.ArgoprojV1alpha1().Applications(argo.Namespace)
}

// syncedHealthy is met when the Application is Synced (at revision, when given) and Healthy.
func syncedHealthy(revision string) func(*v1alpha1.Application) bool {
	return func(a *v1alpha1.Application) bool {
		s := a.Status
		if revision != "" && s.Sync.Revision != revision {
			return false
		}
		return s.Sync.Status == v1alpha1.SyncStatusCodeSynced && s.Health.Status == "Healthy"
	}
}

// waitApp polls Application name until cond holds; on timeout it fails with the Application's
// status and the tail of the Argo CD logs.
func waitApp(t testing.TB, argo *stack.ArgoCDInstall, name, what string, cond func(*v1alpha1.Application) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	start := time.Now()
	var last *v1alpha1.Application
	for {
		a, err := apps(argo).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = a
			if cond(a) {
				t.Logf("Application %s/%s: %s after %s", argo.Namespace, name, what, time.Since(start).Round(10*time.Millisecond))
				return
			}
		} else if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			t.Logf("get Application %s/%s: %v", argo.Namespace, name, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Application %s/%s (Argo CD %s): not %s after %s; status: %s", argo.Namespace, name, argo.Version, what, syncTimeout, stack.DescribeApplication(last))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// refresh asks Argo CD to re-read Git now instead of at the next reconciliation.
func refresh(t *testing.T, argo *stack.ArgoCDInstall, name string) {
	t.Helper()
	patch := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/refresh":"hard"}}}`)
	if _, err := apps(argo).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("refresh Application %s/%s: %v", argo.Namespace, name, err)
	}
}

var tagLine = regexp.MustCompile(`(?m)^(\s+tag:\s*)"?([A-Za-z0-9_][A-Za-z0-9._-]*)"?`)

// pushTag rewrites the tag line of the instance file in Git and pushes, returning the commit.
func pushTag(t testing.TB, rel, tag string) string {
	t.Helper()
	gitMu.Lock()
	defer gitMu.Unlock()
	b, err := checkout.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	if !tagLine.Match(b) {
		t.Fatalf("%s: no spec.values.deployment.tag line to change", rel)
	}
	b = tagLine.ReplaceAll(b, []byte(`${1}"`+tag+`"`))
	if err := checkout.WriteFile(rel, b); err != nil {
		t.Fatal(err)
	}
	sha, err := checkout.CommitAndPush(context.Background(), "e2e: "+rel+" tag "+tag)
	if err != nil {
		t.Fatalf("push %s: %v", rel, err)
	}
	return sha
}

func assertImage(t *testing.T, ns, name, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	var got string
	for {
		dep, err := st.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			got = dep.Spec.Template.Spec.Containers[0].Image
			if got == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Deployment %s/%s image = %q, want %q", ns, name, got, want)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type instance struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Values struct {
			Deployment struct {
				Image string `json:"image"`
				Tag   string `json:"tag"`
			} `json:"deployment"`
		} `json:"values"`
	} `json:"spec"`
}

func readInstance(t *testing.T, path string) instance {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var in instance
	if err := yaml.Unmarshal(b, &in); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return in
}

func instanceImage(t *testing.T, path string) (image, tag string) {
	in := readInstance(t, path)
	if in.Spec.Values.Deployment.Image == "" || in.Spec.Values.Deployment.Tag == "" {
		t.Fatalf("%s: spec.values.deployment.image and .tag must be set for this test", path)
	}
	return in.Spec.Values.Deployment.Image, in.Spec.Values.Deployment.Tag
}

func instanceName(t *testing.T, path string) string { return readInstance(t, path).Metadata.Name }
