package gitwrite

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

// push sends exactly the objects this batch created and asks the server to move
// branch from old to newHead.
//
// go-git's Remote.Push is not used: before every push it walks every object reachable
// from the remote's refs to decide what to send, which on a repository of 10,000
// files and 5,000 commits costs seconds, and we already know the handful of objects
// we wrote. The server's compare-and-swap on old keeps this as safe as a normal push:
// if the branch moved, the update is refused and Apply retries on the new head.
//
// The pack is thin (its first new version of a tree or file is a delta against the
// version the server has) unless the server advertises no-thin: receive-pack takes
// thin packs unless it says so (gitprotocol-capabilities), and fills in the bases.
func (r *Repo) push(ctx context.Context, branch string, old, newHead plumbing.Hash, ov *overlay) error {
	ep, err := transport.NewEndpoint(r.url)
	if err != nil {
		return err
	}
	ep.CaBundle = r.o.caBundle
	cli, err := client.NewClient(ep)
	if err != nil {
		return err
	}
	sess, err := cli.NewReceivePackSession(ep, r.auth)
	if err != nil {
		return err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	ref := plumbing.NewBranchReferenceName(branch)
	refs, err := ar.AllReferences()
	if err != nil {
		return err
	}
	cur, err := refs.Reference(ref)
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound) && old.IsZero():
		// Creating the branch (a pull request's head): nobody made it meanwhile.
	case err != nil || cur.Hash() != old:
		// Moved since our fetch: do not send the pack, go straight to the retry.
		return &pushError{retry: true, msg: "non-fast-forward: the branch moved since the last fetch"}
	}

	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	var progress bytes.Buffer
	req.Progress = &progress
	if ar.Capabilities.Supports(capability.Sideband64k) {
		_ = req.Capabilities.Set(capability.Sideband64k)
	} else if ar.Capabilities.Supports(capability.Sideband) {
		_ = req.Capabilities.Set(capability.Sideband)
	}
	req.Commands = []*packp.Command{{Name: ref, Old: old, New: newHead}}

	if newHead.IsZero() {
		// Deleting the branch: no objects to send.
		_ = req.Capabilities.Set(capability.DeleteRefs)
	} else {
		thin := !ar.Capabilities.Supports(capability.Capability("no-thin"))
		// go-git's http transport copies the request into a buffer of its own: write the
		// pack straight into it instead of into another copy first.
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			pw.CloseWithError(ov.pack.writeTo(pw, thin, ov, nil))
		}()
		defer func() { pr.Close(); <-done }()
		req.Packfile = pr
	}

	// go-git returns the report's first refusal as err, next to the report itself.
	rs, err := sess.ReceivePack(ctx, req)
	if rs != nil {
		if serr := rs.Error(); serr != nil {
			return classifyStatus(serr.Error(), progress.String())
		}
	}
	return err
}

// pushError is a refused ref update; retry says whether fetching and re-applying can
// make it succeed (the branch moved) or not (a hook or a policy said no).
type pushError struct {
	retry  bool
	msg    string
	remote string // what the server printed (hook output)
}

func (e *pushError) Error() string {
	if e.remote == "" {
		return e.msg
	}
	return e.msg + "; the server said: " + e.remote
}

func (e *pushError) Is(target error) bool { return target == ErrPushRejected && !e.retry }

// classifyStatus sorts receive-pack's per-ref status into "retry on the new head"
// (someone else's push won the race) and "give up" (hooks, protected branches).
func classifyStatus(status, progress string) error {
	remote := strings.TrimSpace(progress)
	lower := strings.ToLower(status)
	for _, s := range []string{"non-fast-forward", "fetch first", "failed to update ref", "failed to lock", "cannot lock ref", "stale info", "incorrect old value", "reference already exists"} {
		if strings.Contains(lower, s) {
			return &pushError{retry: true, msg: status, remote: remote}
		}
	}
	return &pushError{msg: status, remote: remote}
}

// retryable reports whether a push or fetch error is worth another attempt.
func retryable(err error) bool {
	var pe *pushError
	if errors.As(err, &pe) {
		return pe.retry
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return errors.Is(ae.err, ErrBranchMoved)
	}
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrRepositoryNotFound),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrBranchMissing):
		return false
	}
	// Network errors and 5xx answers: the server may come back.
	return true
}
