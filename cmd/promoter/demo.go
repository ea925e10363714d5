//go:build !nodemo

// The demo starts its own registry and Git server in the process. The image's binary is built
// with -tags nodemo (Dockerfile.promoter), so those servers stay out of the product.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/kropipe/kropipe/internal/promote/gitserver"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/warehouse"
	"github.com/kropipe/kropipe/internal/render"
)

func init() { newDemoCommand = demoCommand }

func demoCommand(g *globals) *cobra.Command {
	var examples string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Promote frontend 1.2.1 and 1.2.2 through develop and staging, then roll back — all in-process",
		Long: "demo needs nothing installed but git: it starts a registry and a Git server on 127.0.0.1,\n" +
			"seeds the repository from examples/gitops, pushes frontend images, lets the engine promote\n" +
			"them through develop-frontend → staging-frontend (soak 10m on a demo clock), renders the\n" +
			"app, rolls develop back and cleans up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if examples == "" {
				var err error
				if examples, err = findExamples(); err != nil {
					return err
				}
			}
			_, err := runDemo(cmd.Context(), g.stdout, examples)
			return err
		},
	}
	cmd.Flags().StringVar(&examples, "examples", "", "the example GitOps repository (default: examples/gitops in this or a parent directory)")
	return cmd
}

// findExamples looks for examples/gitops from the working directory upwards, so the
// demo runs from the repository root (make demo) and from cmd/promoter (go test).
func findExamples() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "examples", "gitops")
		if st, err := os.Stat(filepath.Join(p, "rgds")); err == nil && st.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("examples/gitops not found here or in a parent directory: run the demo from the kropipe repository, or pass --examples DIR")
		}
		dir = parent
	}
}

// demoResult is what the demo did, for its test.
type demoResult struct {
	Subjects     []string // newest first
	ImageBefore  string   // develop/frontend's Deployment image after the promotions
	ImageAfter   string   // and after the rollback
	StagingImage string
	Took         time.Duration
}

const demoSoak = 10 * time.Minute

func runDemo(ctx context.Context, out io.Writer, examples string) (res demoResult, err error) {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "kropipe-demo-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", args...) }

	// A registry on 127.0.0.1, in this process.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	regSrv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 5 * time.Second}
	go regSrv.Serve(ln)
	defer regSrv.Close()
	host := ln.Addr().String()
	image := host + "/team/frontend"

	// A Git server on 127.0.0.1 holding a copy of examples/gitops.
	gs, err := gitserver.Start(ctx, filepath.Join(tmp, "git"))
	if err != nil {
		return res, err
	}
	defer gs.Close()
	bare, err := gs.NewBareRepo(ctx, "gitops.git", examples)
	if err != nil {
		return res, fmt.Errorf("seeding the demo repository from %s: %w", examples, err)
	}
	url := gs.URL("gitops.git")
	step("registry %s, Git repository %s (seeded from %s)", host, url, examples)

	push := func(tag string) error {
		img, err := random.Image(256, 1)
		if err != nil {
			return err
		}
		ref, err := name.NewTag(image+":"+tag, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
			return err
		}
		fmt.Fprintf(out, "    pushed %s\n", ref)
		return nil
	}

	// The engine's clock in the demo: the 10-minute soak passes when the demo says so.
	clock := clocktesting.NewFakeClock(time.Now())
	wh, err := warehouse.New(warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true, RateLimit: -1}), warehouse.WithLogger(quiet))
	if err != nil {
		return res, err
	}
	specs := []stage.Spec{
		{Name: "develop-frontend", Image: image, Strategy: "semver", Constraint: "^1.2", RepoURL: url, Branch: "main", File: "develop/frontend/instance.yaml", AutoPromote: true},
		{Name: "staging-frontend", Image: image, RepoURL: url, Branch: "main", File: "staging/frontend/instance.yaml", AutoPromote: true, Upstream: "develop-frontend", Soak: demoSoak},
	}
	e, err := stage.New(specs,
		stage.WithWarehouse(wh),
		stage.WithGit(filepath.Join(tmp, "data", "git"), gitwrite.WithAuthor("kropipe", "kropipe@example.com"), gitwrite.WithLogger(quiet)),
		stage.WithStore(stage.NewFileStore(filepath.Join(tmp, "data", "state.json"))),
		stage.WithClock(clock), stage.WithLogger(quiet))
	if err != nil {
		return res, err
	}
	pass := func(what string) error {
		step("%s", what)
		err := e.Reconcile(ctx)
		printTable(out, e.Status())
		return err
	}

	step("CI pushes frontend 1.2.1")
	if err := push("1.2.1"); err != nil {
		return res, err
	}
	if err := pass("pass 1: develop already runs 1.2.1 (verified now); staging starts its 10m soak"); err != nil {
		return res, err
	}
	clock.Step(demoSoak)
	if err := pass("10 minutes later (demo clock): staging takes 1.2.1"); err != nil {
		return res, err
	}
	step("CI pushes frontend 1.2.2")
	if err := push("1.2.2"); err != nil {
		return res, err
	}
	if err := pass("pass 3: develop takes 1.2.2; staging soaks it"); err != nil {
		return res, err
	}
	clock.Step(demoSoak)
	if err := pass("10 minutes later: staging takes 1.2.2"); err != nil {
		return res, err
	}

	step("the commits (git log main)")
	if err := printLog(out, bare, 3); err != nil {
		return res, err
	}

	work := filepath.Join(tmp, "work")
	repo, err := git.PlainCloneContext(ctx, work, false, &git.CloneOptions{URL: url, ReferenceName: plumbing.NewBranchReferenceName("main")})
	if err != nil {
		return res, fmt.Errorf("cloning the demo repository: %w", err)
	}
	if res.ImageBefore, err = renderImage(ctx, work, "develop", "develop/frontend"); err != nil {
		return res, err
	}
	if res.StagingImage, err = renderImage(ctx, work, "staging", "staging/frontend"); err != nil {
		return res, err
	}
	step("develop/frontend rendered with the RGD: the Deployment runs %s (staging: %s)", res.ImageBefore, res.StagingImage)

	step("promoter rollback develop-frontend")
	o, err := e.Rollback(ctx, "develop-frontend", "")
	if err != nil {
		return res, err
	}
	printOutcome(out, o)
	if err := printLog(out, bare, 1); err != nil {
		return res, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return res, err
	}
	if err := wt.PullContext(ctx, &git.PullOptions{ReferenceName: plumbing.NewBranchReferenceName("main")}); err != nil {
		return res, fmt.Errorf("pulling the rollback: %w", err)
	}
	if res.ImageAfter, err = renderImage(ctx, work, "develop", "develop/frontend"); err != nil {
		return res, err
	}
	step("develop/frontend rendered again: the Deployment runs %s", res.ImageAfter)
	if err := pass("next pass: 1.2.2 stays rejected in develop"); err != nil {
		return res, err
	}

	res.Subjects, err = subjects(bare)
	if err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	step("done in %s; everything was in %s, now removed", res.Took.Round(10*time.Millisecond), tmp)
	return res, nil
}

// renderImage renders an app folder and returns its Deployment's image.
func renderImage(ctx context.Context, root, ns, app string) (string, error) {
	eng, err := render.New(root, render.WithNamespace(ns), render.WithWorkDir(root), render.WithWarnings(io.Discard))
	if err != nil {
		return "", err
	}
	out, err := eng.Render(ctx, app)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		if v, ok := strings.CutPrefix(t, "image: "); ok {
			return strings.Trim(v, `"'`), nil
		}
	}
	return "", fmt.Errorf("rendering %s: no container image in the output", app)
}

// printLog prints the newest n commits of main like `git log`, with their trailers.
func printLog(out io.Writer, bare string, n int) error {
	r, err := git.PlainOpen(bare)
	if err != nil {
		return err
	}
	ref, err := r.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		return err
	}
	it, err := r.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		return err
	}
	defer it.Close()
	for i := 0; i < n; i++ {
		c, err := it.Next()
		if err != nil {
			break
		}
		printCommit(out, c)
	}
	return nil
}

func printCommit(out io.Writer, c *object.Commit) {
	fmt.Fprintf(out, "commit %s\nAuthor: %s <%s>\n\n", c.Hash, c.Author.Name, c.Author.Email)
	lines := strings.Split(strings.TrimRight(c.Message, "\n"), "\n")
	fmt.Fprintf(out, "    %s\n", lines[0])
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "Kropipe-") {
			fmt.Fprintf(out, "    %s\n", l)
		}
	}
	fmt.Fprintln(out)
}

// subjects returns the subjects on main, newest first, without the seed commit.
func subjects(bare string) ([]string, error) {
	r, err := git.PlainOpen(bare)
	if err != nil {
		return nil, err
	}
	ref, err := r.Reference(plumbing.NewBranchReferenceName("main"), true)
	if err != nil {
		return nil, err
	}
	it, err := r.Log(&git.LogOptions{From: ref.Hash()})
	if err != nil {
		return nil, err
	}
	var out []string
	err = it.ForEach(func(c *object.Commit) error {
		if len(c.ParentHashes) > 0 {
			out = append(out, strings.SplitN(c.Message, "\n", 2)[0])
		}
		return nil
	})
	return out, err
}
