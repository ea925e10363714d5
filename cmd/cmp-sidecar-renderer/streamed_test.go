package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// argoStreamedTree lays out what argocd-cmp-server extracts when argocd-repo-server runs with
// reposerver.plugin.use.manifest.generate.paths: "true" (Argo CD v2.14 and v3.6 alike): only
// the common root of the application path and its argocd.argoproj.io/manifest-generate-paths
// entries (getApplicationRootPath), extracted into a fresh folder under the cmp-server's
// work directory; the plugin runs in the application folder inside it (AppRelPath, relative
// to the common root), while ARGOCD_APP_SOURCE_PATH stays the repository-relative path. It
// returns that working directory and the streamed root's repository path.
func argoStreamedTree(t *testing.T, files map[string]string, appPath, generatePaths string) (wd, streamed string) {
	t.Helper()
	repo := writeRepo(t, files)
	appAbs := filepath.Join(repo, appPath)
	rootAbs := argoApplicationRootPath(repo, appAbs, generatePaths)
	workDir := filepath.Join(t.TempDir(), "_cmp_server", "5f0c7a3e-9d51-4f7e-b1a2-6c3d8e9f0a1b")
	err := filepath.WalkDir(rootAbs, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(rootAbs, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(workDir, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(workDir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	appRel, _ := filepath.Rel(rootAbs, appAbs)
	streamed, _ = filepath.Rel(repo, rootAbs)
	return filepath.Join(workDir, appRel), filepath.ToSlash(streamed)
}

// argoApplicationRootPath is Argo CD's getApplicationRootPath and getPaths
// (reposerver/repository/utils.go, v2.14.21 and v3.6.2), copied rule for rule: annotation
// entries are relative to the application path unless absolute (then to the repository
// root), and the common root is never below the application path.
func argoApplicationRootPath(repoPath, appPath, annotation string) string {
	var paths []string
	for _, p := range strings.Split(annotation, ";") {
		if p == "" {
			continue
		}
		unsafe := filepath.Clean(p)
		if !filepath.IsAbs(p) {
			appRel, _ := filepath.Rel(repoPath, appPath)
			unsafe = filepath.Clean(filepath.Join(appRel, p))
		}
		paths = append(paths, filepath.Join(repoPath, unsafe))
	}
	if len(paths) == 0 {
		return repoPath
	}
	common := strings.Split(appPath, string(filepath.Separator))
	var disjoint bool
	for _, p := range paths {
		parts := strings.Split(p, string(filepath.Separator))
		minLen := min(len(common), len(parts))
		for i := range minLen {
			if common[i] != parts[i] {
				common = common[:i]
				disjoint = true
				break
			}
		}
		if !disjoint && minLen < len(common) {
			common = common[:minLen]
		}
	}
	return string(filepath.Separator) + filepath.Join(common...)
}

// TestGenerate_ManifestGeneratePathsStreamsOnlyACommonFolder runs generate in the tree Argo CD
// streams with reposerver.plugin.use.manifest.generate.paths: rgd-paths and crd-paths stay
// repository paths, messages name files by their repository path, and an RGD folder Argo CD
// did not stream is an error naming rgd-paths and the annotation to add it to.
func TestGenerate_ManifestGeneratePathsStreamsOnlyACommonFolder(t *testing.T) {
	broken := strings.Replace(nslessInstance, "image: registry.example.com/team/frontend", "replicas: 2", 1)
	tests := []struct {
		name          string
		files         map[string]string
		appPath       string
		generatePaths string
		env           []string
		wantStreamed  string // the repository folder Argo CD streams (a check of the fixture)
		want          []string
		wantErr       []string
	}{
		{
			name:          "RGDs beside the application, annotation names them relatively",
			appPath:       "teams/shop/frontend",
			generatePaths: ".;../rgds",
			env:           []string{"PARAM_RGD_PATHS=teams/shop/rgds"},
			wantStreamed:  "teams/shop",
			want:          []string{"kind: Deployment", "image: registry.example.com/team/frontend:1.2.1", "namespace: develop"},
		},
		{
			name:          "RGDs beside the application, annotation names them from the repository root",
			appPath:       "teams/shop/frontend",
			generatePaths: "/teams/shop/rgds;.",
			env:           []string{`ARGOCD_APP_PARAMETERS=[{"name":"rgd-paths","string":"teams/shop/rgds"}]`},
			wantStreamed:  "teams/shop",
			want:          []string{"kind: Service"},
		},
		{
			name:          "without rgd-paths the streamed folder is scanned",
			appPath:       "teams/shop/frontend",
			generatePaths: ".;../rgds",
			wantStreamed:  "teams/shop",
			want:          []string{"kind: Deployment"},
		},
		{
			name:          "RGDs at the repository root: Argo CD streams the whole repository",
			appPath:       "teams/shop/frontend",
			generatePaths: ".;/rgds",
			env:           []string{"PARAM_RGD_PATHS=rgds"},
			wantStreamed:  ".",
			want:          []string{"kind: Deployment"},
		},
		{
			name:          "an error names the instance by its repository path",
			files:         map[string]string{"teams/shop/frontend/instance.yaml": broken},
			appPath:       "teams/shop/frontend",
			generatePaths: ".;../rgds",
			env:           []string{"PARAM_RGD_PATHS=teams/shop/rgds"},
			wantStreamed:  "teams/shop",
			wantErr:       []string{"teams/shop/frontend/instance.yaml", "spec.values.deployment.image"},
		},
		{
			name:          "rgd-paths outside what Argo CD streamed",
			appPath:       "teams/shop/frontend",
			generatePaths: ".",
			env:           []string{"PARAM_RGD_PATHS=teams/shop/rgds"},
			wantStreamed:  "teams/shop/frontend",
			wantErr: []string{`rgd-paths "teams/shop/rgds"`, "teams/shop/frontend", "argocd.argoproj.io/manifest-generate-paths",
				"add teams/shop/rgds"},
		},
		{
			name:          "no rgd-paths and no RGD in what Argo CD streamed",
			appPath:       "teams/shop/frontend",
			generatePaths: ".",
			wantStreamed:  "teams/shop/frontend",
			wantErr:       []string{"no ResourceGraphDefinition defines kind WebApp", "teams/shop/frontend", "argocd.argoproj.io/manifest-generate-paths"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"rgds/webapp.yaml": "@webapp", "teams/shop/rgds/webapp.yaml": "@webapp",
				"teams/shop/frontend/instance.yaml": nslessInstance, "docs/notes.md": "# other teams' files\n"}
			for p, c := range tt.files {
				files[p] = c
			}
			wd, streamed := argoStreamedTree(t, files, tt.appPath, tt.generatePaths)
			if streamed != tt.wantStreamed {
				t.Fatalf("fixture: Argo CD streams %q, want %q", streamed, tt.wantStreamed)
			}
			env := append([]string{"ARGOCD_APP_NAME=shop-frontend", "ARGOCD_APP_NAMESPACE=develop",
				"ARGOCD_APP_SOURCE_PATH=" + tt.appPath, "ARGOCD_APP_REVISION=abc123"}, tt.env...)
			res := run(t, wd, env, "generate")
			if tt.wantErr != nil {
				if res.code == 0 || res.stdout != "" {
					t.Fatalf("exit %d, stdout %q: want a failure with nothing on stdout", res.code, res.stdout)
				}
				wantAll(t, res.stderr, tt.wantErr...)
				return
			}
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			wantAll(t, res.stdout, tt.want...)
			if strings.Contains(res.stderr, "warning") {
				t.Errorf("stderr warns: %s", res.stderr)
			}
		})
	}
}
