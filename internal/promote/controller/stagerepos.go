package controller

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// defaultBranchTTL is how long a repository's default branch is trusted before it is asked
// again.
const defaultBranchTTL = 10 * time.Minute

// stageRepos answers questions about the stages' Git repositories from the clones the engine
// keeps (open is the engine's Repo: one clone, one set of credentials per repository):
//
//   - for the health gate, whether a commit is the stage's newest promotion (only then may the
//     gate start a sync, which also covers a promoter killed between push and sync: after the
//     restart the commit is still the newest and gets its sync, and no second commit is made),
//     its subject (the sync operation's reason), whether a revision contains it, and which
//     commit brought it into the branch (a pull request's merge commit: what Argo CD syncs);
//   - for the annotations, which branch a targetRevision of HEAD means.
type stageRepos struct {
	open func(ctx context.Context, url string) (*gitwrite.Repo, error)
	log  *slog.Logger

	mu       sync.Mutex
	last     map[string]gitwrite.Record // newest record by stage, from the last lookup
	branches map[string]knownBranch     // default branch by repository URL
}

type knownBranch struct {
	name string
	at   time.Time
}

// newest is the stage's newest promotion or rollback. The gate asks from inside a pass, which
// has just fetched the branch: the history is read as fetched, with no second round trip.
func (p *stageRepos) newest(ctx context.Context, spec stage.Spec) (gitwrite.Record, bool) {
	repo, err := p.open(ctx, spec.RepoURL)
	if err == nil {
		var recs []gitwrite.Record
		recs, err = repo.FetchedHistory(ctx, spec.Branch, spec.Name)
		if err == nil && len(recs) > 0 {
			p.mu.Lock()
			if p.last == nil {
				p.last = map[string]gitwrite.Record{}
			}
			p.last[spec.Name] = recs[0]
			p.mu.Unlock()
			return recs[0], true
		}
	}
	if err != nil {
		p.log.Warn("reading the stage's Git history to decide on a sync", "stage", spec.Name, "error", gitwrite.Redact(err.Error()))
	}
	return gitwrite.Record{}, false
}

// contains reports whether descendant (the revision Argo CD synced the stage's Application
// to) holds ancestor (its promotion commit), from the clone the engine keeps fetched.
func (p *stageRepos) contains(ctx context.Context, spec stage.Spec, ancestor, descendant string) bool {
	repo, err := p.open(ctx, spec.RepoURL)
	if err == nil {
		var ok bool
		if ok, err = repo.Contains(ancestor, descendant); err == nil {
			return ok
		}
	}
	p.log.Warn("reading the stage's Git history to verify a sync", "stage", spec.Name, "error", gitwrite.Redact(err.Error()))
	return false
}

// landed is the commit that brought commit (a stage's promotion) into its branch as the pass
// fetched it: the merge commit of a pull request merged with one, else commit; "" when the
// clone cannot tell (the gate then syncs commit).
func (p *stageRepos) landed(ctx context.Context, spec stage.Spec, commit string) string {
	repo, err := p.open(ctx, spec.RepoURL)
	if err == nil {
		var l string
		if l, err = repo.LandedOn(ctx, spec.Branch, commit); err == nil {
			return l
		}
	}
	p.log.Warn("reading the stage's Git history to find the merge commit to sync", "stage", spec.Name, "error", gitwrite.Redact(err.Error()))
	return ""
}

func (p *stageRepos) isNewestPromotion(ctx context.Context, spec stage.Spec, commit string) bool {
	r, ok := p.newest(ctx, spec)
	return ok && r.Commit == commit
}

func (p *stageRepos) subject(ctx context.Context, spec stage.Spec, commit string) string {
	p.mu.Lock()
	r, ok := p.last[spec.Name]
	p.mu.Unlock()
	if !ok || r.Commit != commit {
		if r, ok = p.newest(ctx, spec); !ok || r.Commit != commit {
			return ""
		}
	}
	return r.Subject
}

// resolveHEAD gives the stages whose Application tracks HEAD the branch the remote's HEAD
// names, as Argo CD resolves it. A repository that cannot be asked keeps the branch it had,
// else gets stage.DefaultBranch, with a warning: its stage then fails on its own if that
// branch does not exist.
func (p *stageRepos) resolveHEAD(ctx context.Context, specs []stage.Spec) []stage.Spec {
	out := slices.Clone(specs)
	for i, s := range out {
		if s.Branch == argocd.RemoteHEAD {
			out[i].Branch = p.defaultBranch(ctx, s.RepoURL)
		}
	}
	return out
}

func (p *stageRepos) defaultBranch(ctx context.Context, url string) string {
	p.mu.Lock()
	known, ok := p.branches[url]
	p.mu.Unlock()
	if ok && time.Since(known.at) < defaultBranchTTL {
		return known.name
	}
	repo, err := p.open(ctx, url)
	var name string
	if err == nil {
		name, err = repo.DefaultBranch(ctx)
	}
	if err != nil {
		fallback := stage.DefaultBranch
		if ok {
			fallback = known.name
		}
		p.log.Warn("the repository's default branch is unknown; Applications with targetRevision HEAD are promoted on "+fallback, "repo", gitwrite.Redact(url), "error", gitwrite.Redact(err.Error()))
		return fallback
	}
	p.mu.Lock()
	if p.branches == nil {
		p.branches = map[string]knownBranch{}
	}
	p.branches[url] = knownBranch{name: name, at: time.Now()}
	p.mu.Unlock()
	return name
}

// ReadAt reads a stage's verification manifests at its promotion commit from the engine's
// clone (argocd.VerifySource).
func (p *stageRepos) ReadAt(ctx context.Context, spec stage.Spec, commit, path string) (map[string][]byte, error) {
	repo, err := p.open(ctx, spec.RepoURL)
	if err != nil {
		return nil, err
	}
	return repo.ReadAt(ctx, commit, path)
}

// Previous is the value the stage ran before commit, from the commit's own trailers
// (argocd.VerifySource).
func (p *stageRepos) Previous(ctx context.Context, spec stage.Spec, commit string) string {
	repo, err := p.open(ctx, spec.RepoURL)
	if err != nil {
		return ""
	}
	recs, err := repo.FetchedHistory(ctx, spec.Branch, spec.Name)
	if err != nil {
		return ""
	}
	for _, r := range recs {
		if r.Commit == commit {
			return r.Previous
		}
	}
	return ""
}
