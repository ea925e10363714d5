package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// rolloutsCRDs are the Argo Rollouts CRDs the analysis controller and kropipe use.
var rolloutsCRDs = []string{"analysis-run-crd.yaml", "analysis-template-crd.yaml", "cluster-analysis-template-crd.yaml"}

// startRollouts installs the AnalysisRun, AnalysisTemplate and ClusterAnalysisTemplate CRDs from
// the pinned Rollouts module and starts its analysis controller with the admin kubeconfig.
func (s *Stack) startRollouts(ctx context.Context) error {
	modDir := filepath.Join(s.e2eDir, "tools", "rollouts")
	cmd := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", "github.com/argoproj/argo-rollouts")
	cmd.Dir = modDir
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("locate the Argo Rollouts module (go mod download in %s): %w", modDir, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return fmt.Errorf("locate the Argo Rollouts module: unexpected `go mod download -json` output: %s", out)
	}
	for _, f := range rolloutsCRDs {
		if err := s.ApplyFile(ctx, filepath.Join(m.Dir, "manifests", "crds", f), ""); err != nil {
			return fmt.Errorf("Argo Rollouts CRDs: %w", err)
		}
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if err := poll(ctx, time.Minute, func(ctx context.Context) error {
		for _, name := range []string{"analysisruns.argoproj.io", "analysistemplates.argoproj.io", "clusteranalysistemplates.argoproj.io"} {
			u, err := s.Dynamic.Resource(crds).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var crd apiextensionsv1.CustomResourceDefinition
			b, _ := json.Marshal(u.Object)
			if err := json.Unmarshal(b, &crd); err != nil {
				return err
			}
			established := false
			for _, c := range crd.Status.Conditions {
				established = established || c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
			}
			if !established {
				return fmt.Errorf("CRD %s not established yet", name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	p, err := s.start("rollouts-analysis", s.Binaries.RolloutsAnalysis, []string{"--kubeconfig=" + s.Kubeconfig}, nil)
	if err != nil {
		return err
	}
	return p.waitReady(ctx, 2*time.Minute, func(context.Context) error {
		b, err := os.ReadFile(p.LogPath)
		if err != nil || !bytes.Contains(b, []byte("analysis controller ready")) {
			return fmt.Errorf("%w: informers not synced", errNotYet)
		}
		return nil
	})
}
