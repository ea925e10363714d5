// Package gitwrite writes promotions into a GitOps repository: one persistent bare
// clone per repository URL, one commit per change, one push per batch, retried on top
// of whoever pushed first, never forced.
//
// The clone lives under a data directory and is fetched before every write, so a
// promotion costs a fetch of what is new plus a push of a few objects, whatever the
// size of the repository. Edits go through yamledit, so only the scalar changes.
package gitwrite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/kropipe/kropipe/internal/promote/crashpoint"
	"github.com/kropipe/kropipe/internal/promote/signing"
	"github.com/kropipe/kropipe/internal/promote/yamledit"
)

// Option configures Open.
type Option func(*options)

type options struct {
	auth        transport.AuthMethod
	creds       Credentials
	authorName  string
	authorEmail string
	logger      *slog.Logger
	retry       wait.Backoff
	clock       clock.Clock
	caBundle    []byte
	pushRetried func(repo string)
	fetchReuse  time.Duration
	maxPack     int64
	signer      signing.Signer
}

// WithAuth uses a ready go-git AuthMethod.
func WithAuth(a transport.AuthMethod) Option { return func(o *options) { o.auth = a } }

// WithCredentials authenticates with a username/password, a token or an SSH key.
func WithCredentials(c Credentials) Option { return func(o *options) { o.creds = c } }

// WithAuthor sets the author and committer of every commit (default kropipe
// <kropipe@localhost>).
func WithAuthor(name, email string) Option {
	return func(o *options) { o.authorName, o.authorEmail = name, email }
}

// WithSigner signs every commit Apply and ApplySet write (promotions, rollbacks, sets),
// so a branch that requires signed commits takes them; nil leaves them unsigned. Forges
// show a commit Verified only when WithAuthor's email belongs to the key's owner.
func WithSigner(s signing.Signer) Option { return func(o *options) { o.signer = s } }

// WithLogger logs fetches, commits, pushes and retries. URLs are redacted.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// DefaultRetry is how a push refused because the branch moved (or a fetch that failed on
// the way) is retried: 10 tries, waiting 100ms doubling to at most 2s, jittered so writers
// that collided do not collide again. The branch moving means another writer made progress,
// so waiting long buys nothing.
var DefaultRetry = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 10, Cap: 2 * time.Second}

// WithRetry replaces DefaultRetry: b.Steps is the number of tries (at least one).
func WithRetry(b wait.Backoff) Option { return func(o *options) { o.retry = b } }

// WithPushRetries calls count with the repository (redacted) each time a push refused
// because the branch moved is re-applied on the new head; metrics.Metrics.PushRetry fits.
func WithPushRetries(count func(repo string)) Option {
	return func(o *options) { o.pushRetried = count }
}

// WithCABundle trusts these PEM certificates for https, in addition to the system's
// (a private Git server's CA).
func WithCABundle(pem []byte) Option { return func(o *options) { o.caBundle = pem } }

// DefaultFetchReuse is how old a branch's last fetch (or push) may be for Apply to build
// on it without fetching again: a pass reads the branch and writes moments later. The
// push still finds out if the branch moved meanwhile (the server advertises its head
// before any pack is sent) and Apply then fetches and builds again at once.
const DefaultFetchReuse = 10 * time.Second

// WithFetchReuse replaces DefaultFetchReuse; 0 fetches before every Apply.
func WithFetchReuse(d time.Duration) Option { return func(o *options) { o.fetchReuse = max(d, 0) } }

// DefaultMaxPack is the size of the pack past which Apply pushes what it built so far
// and builds the rest on top, in another push: a batch of 10,000 promotions is held in
// memory a part at a time (the pack, and go-git's copy of it in the request). The pack
// holds each new tree and file as a delta against its previous version: 1,000
// promotions make ~1 MB whether the apps sit in folders of 100 or 1,000 side by side;
// 10,000 side by side make ~55 MB, as every 50th version of their folder's 340 KB tree
// is whole again (maxDeltaDepth).
const DefaultMaxPack = 16 << 20

// WithMaxPack replaces DefaultMaxPack; 0 or less: one push per Apply, however large.
func WithMaxPack(bytes int64) Option { return func(o *options) { o.maxPack = max(bytes, 0) } }

// WithClock replaces the wall clock of commit timestamps and retry waits, for tests.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// Repo is the persistent clone of one repository URL. It is safe for concurrent use;
// writes to the same clone are serialised, also across Repo values opened on the
// same URL and data dir in one process. Two processes must not share a data dir.
type Repo struct {
	url     string // without credentials
	display string // redacted, for messages
	dir     string
	auth    transport.AuthMethod
	secrets []string
	o       options
	log     *slog.Logger

	mu   *sync.Mutex
	repo *git.Repository
	// histories is what History learnt per branch (held under mu): a few branches per
	// repository in practice, at most maxHistories.
	histories map[string]*branchHistory
	// fetched is when each branch's remote-tracking ref was last brought up to date, by a
	// fetch or by our own push (held under mu).
	fetched map[string]time.Time
	// trees are the trees reads decoded (held under mu): a pass reads every stage's file,
	// and with 10,000 apps side by side each read would decode the same 10,000-entry
	// folder again. At most maxReadTrees.
	trees map[plumbing.Hash]*object.Tree

	// beforePush, when set by tests, runs between building the commits and pushing
	// them: the window in which another writer can move the branch.
	beforePush func(attempt int)
}

var (
	locksMu sync.Mutex
	locks   = map[string]*sync.Mutex{}
)

func dirLock(dir string) *sync.Mutex {
	locksMu.Lock()
	defer locksMu.Unlock()
	if locks[dir] == nil {
		locks[dir] = &sync.Mutex{}
	}
	return locks[dir]
}

// Open returns the persistent clone of url under dataDir, creating it on first use.
// URLs may be https, http, ssh (ssh:// or user@host:path) or file. Credentials in an
// http(s) URL (https://user:token@host/…) are used and then removed from the URL.
func Open(ctx context.Context, dataDir, rawURL string, opts ...Option) (*Repo, error) {
	o := options{
		authorName: "kropipe", authorEmail: "kropipe@localhost",
		retry: DefaultRetry, clock: clock.RealClock{}, fetchReuse: DefaultFetchReuse, maxPack: DefaultMaxPack,
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.retry.Steps = max(o.retry.Steps, 1)
	clean, fromURL := splitUserinfo(rawURL)
	creds := o.creds
	if creds.empty() {
		creds = fromURL
	}
	secrets := append(creds.secrets(), fromURL.secrets()...)
	r := &Repo{
		url: clean, display: Redact(rawURL), secrets: secrets, o: o,
		dir:     filepath.Join(dataDir, CloneDirName(rawURL)),
		fetched: map[string]time.Time{},
	}
	r.log = o.logger
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r.log = r.log.With("repo", r.display)
	r.auth = o.auth
	if r.auth == nil {
		a, err := creds.authMethod(clean)
		if err != nil {
			return nil, r.wrap(err)
		}
		r.auth = a
	}
	r.mu = dirLock(r.dir)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.openOrInit(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// CloneDirName is the directory name of a URL's clone: readable host and path plus a
// hash of the credential-free URL, so two URLs never share a clone and no secret ever
// reaches the file system.
func CloneDirName(rawURL string) string {
	clean, _ := splitUserinfo(rawURL)
	sum := sha256.Sum256([]byte(clean))
	name := clean
	if i := strings.Index(name, "://"); i >= 0 {
		name = name[i+3:]
	}
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Trim(unsafeChars.ReplaceAllString(name, "_"), "_.")
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	return name + "-" + hex.EncodeToString(sum[:])[:12]
}

// Dir is the clone's directory.
func (r *Repo) Dir() string { return r.dir }

func (r *Repo) openOrInit(ctx context.Context) error {
	repo, err := git.PlainOpen(r.dir)
	if err == nil {
		if derr := intact(repo); derr != nil {
			// A process killed while go-git rewrote a ref leaves it empty, and every
			// later fetch fails on it. The clone holds nothing the server lacks: clone again.
			r.log.Warn("the clone is damaged (the promoter was killed while writing it?); cloning again", "dir", r.dir, "err", derr)
			if err := os.RemoveAll(r.dir); err != nil {
				return fmt.Errorf("removing the damaged clone %s: %w", r.dir, err)
			}
			err = git.ErrRepositoryNotExists
		}
	}
	if errors.Is(err, git.ErrRepositoryNotExists) {
		// Build the clone beside its final place and rename it, so a crash never
		// leaves a half-made clone where the next start would trust it.
		if err := os.MkdirAll(filepath.Dir(r.dir), 0o755); err != nil {
			return err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(r.dir), ".clone-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		repo, err = git.PlainInit(tmp, true)
		if err != nil {
			return err
		}
		if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{r.url}}); err != nil {
			return err
		}
		r.repo = repo
		if err := r.fetchAll(ctx); err != nil {
			return err
		}
		if err := os.Rename(tmp, r.dir); err != nil {
			return err
		}
		repo, err = git.PlainOpen(r.dir)
		if err != nil {
			return err
		}
		r.repo = repo
		r.log.Info("cloned", "dir", r.dir)
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening the clone in %s: %w", r.dir, err)
	}
	r.repo = repo
	return nil
}

// intact reads every ref of the clone and the commit each names.
func intact(repo *git.Repository) error {
	refs, err := repo.References()
	if err != nil {
		return err
	}
	return refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference {
			return nil
		}
		_, err := repo.CommitObject(ref.Hash())
		return err
	})
}

func (r *Repo) fetchAll(ctx context.Context) error {
	err := r.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RemoteURL:  r.url,
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
		Auth:       r.auth,
		Tags:       git.NoTags,
		CABundle:   r.o.caBundle,
	})
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) || errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return nil
	}
	return r.wrap(fmt.Errorf("fetching %s: %w", r.display, err))
}

// fetch brings refs/remotes/origin/<branch> up to date and returns it.
func (r *Repo) fetch(ctx context.Context, branch string) (plumbing.Hash, error) {
	remoteRef := plumbing.NewRemoteReferenceName("origin", branch)
	err := r.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RemoteURL:  r.url,
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(branch).String() + ":" + remoteRef.String())},
		Auth:       r.auth,
		Tags:       git.NoTags,
		CABundle:   r.o.caBundle,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, transport.ErrEmptyRemoteRepository), isNoMatchingRef(err):
		return plumbing.ZeroHash, r.wrap(fmt.Errorf("%w: %s has no branch %q", ErrBranchMissing, r.display, branch))
	default:
		return plumbing.ZeroHash, r.wrap(fmt.Errorf("fetching %s from %s: %w", branch, r.display, err))
	}
	ref, err := r.repo.Storer.Reference(remoteRef)
	if err != nil {
		return plumbing.ZeroHash, r.wrap(fmt.Errorf("%w: %s has no branch %q", ErrBranchMissing, r.display, branch))
	}
	r.fetched[branch] = r.o.clock.Now()
	return ref.Hash(), nil
}

// maxReadTrees bounds Repo.trees: a pass reads the trees on the paths of its stages'
// files, at one or two commits.
const maxReadTrees = 256

// reader is the clone's store with the decoded trees kept between reads. The caller
// holds r.mu.
func (r *Repo) reader() *overlay {
	if len(r.trees) >= maxReadTrees || r.trees == nil {
		r.trees = map[plumbing.Hash]*object.Tree{}
	}
	return &overlay{EncodedObjectStorer: r.repo.Storer, trees: r.trees}
}

// recentHead is the branch's head as fetched (or pushed) less than fetchReuse ago, so
// Apply need not ask the server again; ok is false when it must.
func (r *Repo) recentHead(branch string) (head plumbing.Hash, ok bool) {
	at, seen := r.fetched[branch]
	if !seen || r.o.fetchReuse <= 0 || r.o.clock.Since(at) >= r.o.fetchReuse {
		return plumbing.ZeroHash, false
	}
	ref, err := r.repo.Storer.Reference(plumbing.NewRemoteReferenceName("origin", branch))
	if err != nil {
		return plumbing.ZeroHash, false
	}
	return ref.Hash(), true
}

func isNoMatchingRef(err error) bool {
	var nm git.NoMatchingRefSpecError
	return errors.As(err, &nm)
}

// wrap scrubs URLs with credentials and known secrets out of an error's text while
// keeping errors.Is working.
func (r *Repo) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{msg: scrubString(err.Error(), r.secrets), err: err}
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

// Is delegates without exposing the unscrubbed error through Unwrap.
func (e *scrubbedError) Is(target error) bool { return errors.Is(e.err, target) }

// As lets callers reach typed errors such as *ChangeError; their text is built from
// the user's own nouns, never from URLs.
func (e *scrubbedError) As(target any) bool { return errors.As(e.err, target) }

// Apply writes the changes to branch: fetch (unless the branch was fetched moments ago,
// see WithFetchReuse), one commit per change, one push — several pushes, one after the
// other, when the commits' objects outgrow WithMaxPack. When the branch moved meanwhile,
// it fetches, re-applies the same edits on the new head and pushes again, with jittered
// back-off, up to the configured tries; it never force-pushes.
//
// A change that cannot be applied (bad path, missing key, invalid YAML, …) gets its
// Result.Err and is left out; the others still land. Two changes may edit the same
// file: they are applied in order, one commit each. Two different stages writing the
// same key of the same file is a configuration error: the second gets ErrConflict.
//
// The error is non-nil when any change failed or the push failed; Results say which
// changes landed (Commit is set) and which were already in place (Skipped). A push lands
// whole or not at all; when one of several fails, the changes of the pushes before it
// have landed and say so, the others have not. The clone's refs stay at the remote's
// last known state.
func (r *Repo) Apply(ctx context.Context, branch string, changes ...Change) ([]Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	results, static := prepare(changes)

	// A large batch goes out in several pushes, each pack at most about maxPack bytes of
	// objects: what the clone holds in memory until the push lands stays bounded.
	for done := 0; done < len(results); {
		n, err := r.applyFrom(ctx, branch, results[done:], static[done:])
		if err != nil {
			failAll(results[done:], err)
			return results, err
		}
		done += n
	}
	return results, joinErrs(results)
}

// prepare starts the results of changes. static marks changes refused before looking at the
// repository; no retry on a newer head can fix them, unlike a missing key, which someone may
// have just added.
func prepare(changes []Change) ([]Result, []bool) {
	results := make([]Result, len(changes))
	static := make([]bool, len(changes))
	owner := map[string]string{} // file+key → stage, to catch two stages on one key
	for i, c := range changes {
		results[i] = Result{Change: c, New: c.newValue()}
		if err := c.validate(); err != nil {
			results[i].Err = changeErr(c, err)
			static[i] = true
			continue
		}
		results[i].Change.File, _ = cleanPath(c.File)
		k := results[i].File + "\x00" + c.Key
		if s, ok := owner[k]; ok && s != c.Stage {
			results[i].Err = changeErr(c, fmt.Errorf("%w: stages %q and %q both write this key; give each stage its own file or key", ErrConflict, s, c.Stage))
			static[i] = true
			continue
		}
		owner[k] = c.Stage
	}
	return results, static
}

// applyFrom builds the changes of results from the start, as many as fit one pack of
// maxPack bytes, and pushes them, re-applying on a moved branch; it returns how many of
// results it took. The caller holds r.mu.
func (r *Repo) applyFrom(ctx context.Context, branch string, results []Result, static []bool) (int, error) {
	var lastErr error
	backoff := r.o.retry
	// reused: this attempt builds on the head fetched moments ago (or our previous push)
	// instead of fetching. When that head turns out stale, the next attempt fetches at
	// once, without waiting: nobody raced us, we only did not look.
	base, reused := r.recentHead(branch)
	for attempt := 0; attempt < r.o.retry.Steps; attempt++ {
		if attempt > 0 && !reused {
			if err := r.sleep(ctx, backoff.Step()); err != nil {
				return 0, err
			}
		}
		var err error
		if attempt > 0 || !reused {
			reused = false
			base, err = r.fetch(ctx, branch)
		}
		if err != nil {
			lastErr = err
			if retryable(err) {
				r.log.Warn("fetch failed, will retry", "branch", branch, "attempt", attempt+1, "err", err)
				continue
			}
			return 0, err
		}
		ov := newPackingOverlay(r.repo.Storer)
		head, n, err := r.build(ov, base, results, static, r.o.maxPack)
		if err != nil {
			return 0, err
		}
		if head == base {
			return n, nil
		}
		crashpoint.Hit(crashpoint.AfterCommit)
		if r.beforePush != nil {
			r.beforePush(attempt)
		}
		crashpoint.Hit(crashpoint.BeforePush)
		err = r.push(ctx, branch, base, head, ov)
		if err == nil {
			crashpoint.Hit(crashpoint.AfterPush)
			r.landed(branch, head, ov, results[:n])
			if n < len(results) {
				r.log.Info("pushed part of a large batch", "branch", branch, "changes", n, "left", len(results)-n, "pack_bytes", ov.packed())
			}
			return n, nil
		}
		err = r.wrap(fmt.Errorf("pushing %s to %s: %w", branch, r.display, err))
		lastErr = err
		if !retryable(err) {
			return 0, err
		}
		r.log.Info("push refused because the branch moved; re-applying on the new head", "branch", branch, "attempt", attempt+1, "err", err)
		if r.o.pushRetried != nil && attempt+1 < r.o.retry.Steps {
			r.o.pushRetried(r.display)
		}
	}
	return 0, fmt.Errorf("giving up after %d tries: %w", r.o.retry.Steps, lastErr)
}

// build makes one commit per applicable change on top of base, its objects into s. It
// fills Old, Skipped and Err in results (clearing what a previous attempt wrote) and
// returns the new head and how many of results it took: it stops before a change once
// s's pack reaches maxPack bytes (0: no limit), never inside a release group's set.
func (r *Repo) build(s *overlay, base plumbing.Hash, results []Result, static []bool, maxPack int64) (plumbing.Hash, int, error) {
	head := base
	commit, err := object.GetCommit(s, base)
	if err != nil {
		return base, 0, err
	}
	tree := commit.TreeHash
	for i := 0; i < len(results); i++ {
		if maxPack > 0 && s.packed() >= maxPack && head != base {
			// Full: the rest goes in the next push, built on this one's head.
			return head, i, nil
		}
		res := &results[i]
		if res.Group != "" {
			// A release group's members: one commit for the set (set.go).
			j := setEnd(results, i)
			h, t, err := r.buildSet(s, head, tree, results[i:j], static[i:j])
			if err != nil {
				return base, 0, err
			}
			head, tree, i = h, t, j-1
			continue
		}
		if static[i] {
			continue
		}
		res.Err, res.Old, res.Skipped, res.Commit = nil, "", false, ""
		c := res.Change
		data, err := readFile(s, tree, c.File)
		if err != nil {
			res.Err = changeErr(c, err)
			continue
		}
		old, err := yamledit.Get(data, c.Key)
		if err != nil {
			res.Err = changeErr(c, err)
			continue
		}
		res.Old = old
		if old == c.newValue() {
			res.Skipped = true
			continue
		}
		if c.Expect != "" && old != c.Expect {
			res.Err = changeErr(c, fmt.Errorf("%w: expected %q but the file holds %q", ErrConflict, c.Expect, old))
			continue
		}
		out, err := yamledit.Set(data, c.Key, c.newValue())
		if err != nil {
			res.Err = changeErr(c, err)
			continue
		}
		msg, err := c.message(old)
		if err != nil {
			res.Err = changeErr(c, err)
			continue
		}
		newTree, err := replaceFile(s, tree, strings.Split(c.File, "/"), out)
		if err != nil {
			return base, 0, err
		}
		h, err := writeCommit(s, head, newTree, msg, signature(r.o.authorName, r.o.authorEmail, r.o.clock.Now()), r.o.signer)
		if err != nil {
			return base, 0, err
		}
		head, tree = h, newTree
		res.Commit = h.String() // provisional until the push lands
	}
	return head, len(results), nil
}

// landed records a successful push in the clone: the remote-tracking ref and the local
// branch both point at the pushed head.
func (r *Repo) landed(branch string, head plumbing.Hash, ov *overlay, results []Result) {
	if err := ov.persist(r.dir, r.repo.Storer); err != nil {
		// The refs must not point at objects the clone lacks; the next fetch brings
		// them back from the server instead.
		r.log.Warn("keeping the pushed objects in the clone", "err", err)
		return
	}
	fresh := true
	for _, name := range []plumbing.ReferenceName{plumbing.NewRemoteReferenceName("origin", branch), plumbing.NewBranchReferenceName(branch)} {
		if err := r.repo.Storer.SetReference(plumbing.NewHashReference(name, head)); err != nil {
			r.log.Warn("updating the clone's ref after a push", "ref", name, "err", err)
			fresh = false
		}
	}
	// The server took head just now: as good as a fetch.
	if fresh {
		r.fetched[branch] = r.o.clock.Now()
	} else {
		delete(r.fetched, branch)
	}
	for _, res := range results {
		if res.Commit != "" {
			msg := "promoted"
			if res.Kind == Rollback {
				msg = "rolled back"
			}
			r.log.Info(msg, "stage", res.Stage, "file", res.File, "old", res.Old, "new", res.New, "commit", res.Commit[:12], "kind", res.Kind)
		}
	}
}

func failAll(results []Result, err error) []Result {
	for i := range results {
		if results[i].Commit != "" {
			results[i].Commit = ""
			results[i].Err = err
		}
	}
	return results
}

func joinErrs(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

func (r *Repo) sleep(ctx context.Context, d time.Duration) error {
	t := r.o.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// Read fetches branch and returns the value at key in file and the commit read.
func (r *Repo) Read(ctx context.Context, branch, file, key string) (value, commit string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := cleanPath(file)
	if err != nil {
		return "", "", err
	}
	head, err := r.fetch(ctx, branch)
	if err != nil {
		return "", "", err
	}
	return r.readKey(head, p, key)
}

// ReadFetched is Read as of the branch's last fetch, without asking the remote: for a pass
// that has just fetched the branch (History) and reads every stage's file from there. A
// branch never fetched is fetched first.
func (r *Repo) ReadFetched(ctx context.Context, branch, file, key string) (value, commit string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := cleanPath(file)
	if err != nil {
		return "", "", err
	}
	head, err := r.fetchedHead(ctx, branch)
	if err != nil {
		return "", "", err
	}
	return r.readKey(head, p, key)
}

// readKey reads key from file p at commit head; a missing key names the file.
func (r *Repo) readKey(head plumbing.Hash, p, key string) (value, commit string, err error) {
	c, err := object.GetCommit(r.repo.Storer, head)
	if err != nil {
		return "", "", r.wrap(err)
	}
	data, err := readFile(r.reader(), c.TreeHash, p)
	if err != nil {
		return "", "", err // readFile names p
	}
	v, err := yamledit.Get(data, key)
	if err != nil {
		var ke *yamledit.KeyError
		if errors.As(err, &ke) {
			ke.File = p
		}
		return "", "", err
	}
	return v, head.String(), nil
}

// fetchedHead is the branch's head as last fetched, fetching a branch never fetched. The
// caller holds r.mu.
func (r *Repo) fetchedHead(ctx context.Context, branch string) (plumbing.Hash, error) {
	if ref, err := r.repo.Storer.Reference(plumbing.NewRemoteReferenceName("origin", branch)); err == nil {
		return ref.Hash(), nil
	}
	return r.fetch(ctx, branch)
}

// DefaultBranch asks the remote which branch its HEAD points at: what Argo CD
// syncs for a targetRevision of HEAD (or none).
func (r *Repo) DefaultBranch(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rem, err := r.repo.Remote("origin")
	if err != nil {
		return "", r.wrap(err)
	}
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: r.auth, CABundle: r.o.caBundle})
	if err != nil {
		return "", r.wrap(fmt.Errorf("asking %s for its default branch: %w", r.display, err))
	}
	for _, ref := range refs {
		if ref.Name() == plumbing.HEAD && ref.Type() == plumbing.SymbolicReference && ref.Target().IsBranch() {
			return ref.Target().Short(), nil
		}
	}
	return "", r.wrap(fmt.Errorf("%s does not say which branch its HEAD is; set the Application's targetRevision to the branch", r.display))
}

// Contains reports whether commit descendant is ancestor or has it in its
// history, from what the clone holds: a descendant not fetched yet reports false,
// and the caller asks again after the next pass fetched it.
func (r *Repo) Contains(ancestor, descendant string) (bool, error) {
	if ancestor == descendant {
		return true, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	a, err := object.GetCommit(r.repo.Storer, plumbing.NewHash(ancestor))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d, err := object.GetCommit(r.repo.Storer, plumbing.NewHash(descendant))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return a.IsAncestor(d)
}

// PackCount is the number of pack files in the clone. Every fetch that brings
// something and every push adds one.
func (r *Repo) PackCount() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packCount()
}

func (r *Repo) packCount() (int, error) {
	pos, ok := r.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return 0, git.ErrPackedObjectsNotSupported
	}
	packs, err := pos.ObjectPacks()
	return len(packs), err
}

// Compact replaces the clone with a fresh one holding a single pack. go-git looks an
// object up pack by pack and has no gc (its RepackObjects fails on ordinary
// repositories), so a long-running promoter should call this when idle once PackCount
// has grown (say past 100). It costs one full clone; the old clone stays in place
// until the new one is complete.
func (r *Repo) Compact(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	before, _ := r.packCount()
	start := time.Now()
	old := r.dir + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(r.dir, old); err != nil {
		return err
	}
	if err := r.openOrInit(ctx); err != nil {
		// Put the working clone back.
		_ = os.RemoveAll(r.dir)
		if rerr := os.Rename(old, r.dir); rerr == nil {
			r.repo, _ = git.PlainOpen(r.dir)
		}
		return err
	}
	_ = os.RemoveAll(old)
	after, _ := r.packCount()
	r.log.Info("compacted the clone", "packs_before", before, "packs_after", after, "took", time.Since(start))
	return nil
}
