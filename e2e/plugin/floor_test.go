package plugin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"sigs.k8s.io/yaml"
)

// floorPluginName names a Config Management Plugin that does no work: its generate prints the
// manifests the kro plugin rendered for the same application, kept on the sidecar's disk under
// the application's name. Asked for the same application of the same repository, through the
// same repo-server, it pays everything Argo CD's plugin protocol costs — the repository
// tarred, streamed to its own argocd-cmp-server, extracted, a command run, its output parsed,
// the folder removed — and nothing a renderer costs: the floor under any plugin, ours included.
// Only the benchmarks start it.
const floorPluginName = "floor"

// floorPluginYAML runs one shell and one cat: the least a plugin's generate can be.
const floorPluginYAML = `apiVersion: argoproj.io/v1alpha1
kind: ConfigManagementPlugin
metadata:
  name: ` + floorPluginName + `
spec:
  generate:
    command: [sh, -c, 'exec cat "$KROPIPE_FLOOR_DIR/$ARGOCD_APP_NAME.yaml"']
  preserveFileMode: false
`

// floorEnv marks the floor's argocd-cmp-server, so peakRSS tells it from kro's.
const floorEnv = "KROPIPE_FLOOR_DIR"

var (
	floorOnce sync.Once
	floorErr  error
	floorDir  string
)

// startFloorPlugin starts the floor plugin beside every Argo CD installation's kro plugin, once.
func startFloorPlugin(ctx context.Context) error {
	floorOnce.Do(func() {
		floorDir = filepath.Join(st.Dir, "floor")
		config := filepath.Join(floorDir, "config")
		if floorErr = os.MkdirAll(config, 0o755); floorErr != nil {
			return
		}
		if floorErr = os.WriteFile(filepath.Join(config, "plugin.yaml"), []byte(floorPluginYAML), 0o644); floorErr != nil {
			return
		}
		for _, argo := range st.ArgoCDInstalls {
			if floorErr = st.StartPlugin(ctx, argo, floorPluginName, config, floorEnv+"="+floorDir); floorErr != nil {
				floorErr = fmt.Errorf("floor plugin for Argo CD %s: %w", argo.Version, floorErr)
				return
			}
		}
	})
	return floorErr
}

// writeFloorOutput keeps manifests (as repo-server returns them: one JSON object each) as the
// YAML stream the floor plugin prints for application appName.
func writeFloorOutput(appName string, manifests []string) error {
	var b strings.Builder
	for _, m := range manifests {
		y, err := yaml.JSONToYAML([]byte(m))
		if err != nil {
			return err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return os.WriteFile(filepath.Join(floorDir, appName+".yaml"), []byte(b.String()), 0o644)
}

// floorSource is src asking the floor plugin instead of kro.
func floorSource(src *v1alpha1.ApplicationSource) *v1alpha1.ApplicationSource {
	f := src.DeepCopy()
	f.Plugin = &v1alpha1.ApplicationSourcePlugin{Name: floorPluginName}
	return f
}
