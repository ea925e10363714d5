package render

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestNew_RepoFolderKeepsRepositoryPaths: when the root holds only one folder of the repository
// (Argo CD's manifest-generate-paths streaming), rgd-paths and crd-paths are still repository
// paths, one outside the folder is ErrNotInFolder, and messages name files by repository path.
func TestNew_RepoFolderKeepsRepositoryPaths(t *testing.T) {
	tests := []struct {
		name     string
		folder   string
		rgdPaths []string
		crdPaths []string
		wantErr  error
		wantMsg  []string
	}{
		{name: "a folder inside it", folder: "teams/shop", rgdPaths: []string{"teams/shop/rgds"}, crdPaths: []string{"teams/shop/crds"}},
		{name: "written loosely", folder: "./teams/shop/", rgdPaths: []string{"./teams/shop/rgds/"}},
		{name: "the folder itself", folder: "teams/shop", rgdPaths: []string{"teams/shop"}},
		{name: "the whole repository", folder: "", rgdPaths: []string{"rgds"}},
		{name: "a folder outside it", folder: "teams/shop", rgdPaths: []string{"rgds"},
			wantErr: ErrNotInFolder, wantMsg: []string{`rgd-paths "rgds"`, "(teams/shop)"}},
		{name: "a sibling sharing its prefix", folder: "teams/shop", rgdPaths: []string{"teams/shopping/rgds"},
			wantErr: ErrNotInFolder, wantMsg: []string{`rgd-paths "teams/shopping/rgds"`}},
		{name: "a crd-paths entry outside it", folder: "teams/shop", rgdPaths: []string{"teams/shop/rgds"}, crdPaths: []string{"crds"},
			wantErr: ErrNotInFolder, wantMsg: []string{`crd-paths "crds"`}},
		{name: "a missing folder is named by its repository path", folder: "teams/shop", rgdPaths: []string{"teams/shop/nothing"},
			wantMsg: []string{"teams/shop/nothing: no such file or directory"}},
		{name: "a folder leaving the repository", folder: "../elsewhere", rgdPaths: []string{"rgds"},
			wantErr: ErrOutsideRoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(testRepo, WithRepoFolder(tt.folder), WithRGDPaths(tt.rgdPaths...), WithCRDPaths(tt.crdPaths...))
			if tt.wantErr != nil || tt.wantMsg != nil {
				if err == nil {
					t.Fatal("New: no error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("New: %v, want %v", err, tt.wantErr)
				}
				for _, m := range tt.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("New: %q does not mention %q", err, m)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if _, err := e.Render(context.Background(), "apps/frontend"); err != nil {
				t.Fatalf("Render: %v", err)
			}
			if _, err := e.Render(context.Background(), "apps/none"); tt.folder != "" && !strings.Contains(err.Error(), "teams/shop/apps/none") {
				t.Errorf("Render of a missing folder: %v, want it named teams/shop/apps/none", err)
			}
		})
	}
}
