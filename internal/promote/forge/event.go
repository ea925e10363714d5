package forge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"code.gitea.io/sdk/gitea"
	"github.com/google/go-github/v89/github"
)

// Event is what a forge's webhook says about a pull request: enough to wake the stage
// whose branch it is. Nothing in it is trusted to act: the pass asks the forge (Get).
type Event struct {
	Forge Kind
	// Repo is the repository's path on the forge (owner/name).
	Repo   string
	Number int
	Head   string // the request's head branch
	Base   string
	// Action is what happened in the forge's words (closed, merged, synchronize, …).
	Action string
}

// ErrNotPullRequestEvent is a webhook request about something else than a pull request
// (a push, a ping, an issue), or from no forge kropipe knows: nothing to wake.
var ErrNotPullRequestEvent = errors.New("not a pull request event")

// ParseEvent reads a forge's webhook request. Each forge's parser looks at its own
// headers; the first that recognises the request answers. With a secret set, a request
// whose signature is missing or wrong is an error: anybody can post to the endpoint.
func ParseEvent(h http.Header, body []byte, secret string) (Event, error) {
	parsers := []func(http.Header, []byte, string) (Event, bool, error){
		parseGitHubEvent, parseGiteaEvent, parseGitLabEvent, parseBitbucketEvent,
	}
	for _, parse := range parsers {
		ev, ok, err := parse(h, body, secret)
		if ok || err != nil {
			return ev, err
		}
	}
	return Event{}, fmt.Errorf("%w: the request carries no GitHub, GitLab, Gitea, Forgejo or Bitbucket event header", ErrNotPullRequestEvent)
}

// parseGitHubEvent reads X-GitHub-Event: pull_request, signed in X-Hub-Signature-256.
func parseGitHubEvent(h http.Header, body []byte, secret string) (Event, bool, error) {
	kind := h.Get(github.EventTypeHeader)
	if kind == "" {
		return Event{}, false, nil
	}
	if secret != "" {
		sig := h.Get(github.SHA256SignatureHeader)
		if sig == "" {
			return Event{}, true, fmt.Errorf("github webhook: no %s header, and a webhook secret is set: set the same secret on the GitHub webhook", github.SHA256SignatureHeader)
		}
		if err := github.ValidateSignature(sig, body, []byte(secret)); err != nil {
			return Event{}, true, fmt.Errorf("github webhook: the signature does not match the webhook secret (%w): set the same secret on the GitHub webhook", err)
		}
	}
	if kind != "pull_request" {
		return Event{}, true, fmt.Errorf("%w: github %s", ErrNotPullRequestEvent, kind)
	}
	raw, err := github.ParseWebHook(kind, body)
	if err != nil {
		return Event{}, true, fmt.Errorf("github webhook: %w", err)
	}
	e, ok := raw.(*github.PullRequestEvent)
	if !ok {
		return Event{}, true, fmt.Errorf("%w: github %s", ErrNotPullRequestEvent, kind)
	}
	pr := e.GetPullRequest()
	ev := Event{
		Forge:  GitHub,
		Repo:   e.GetRepo().GetFullName(),
		Number: e.GetNumber(),
		Head:   pr.GetHead().GetRef(),
		Base:   pr.GetBase().GetRef(),
		Action: e.GetAction(),
	}
	if ev.Number == 0 {
		ev.Number = pr.GetNumber()
	}
	if ev.Action == "closed" && pr.GetMerged() {
		ev.Action = "merged"
	}
	return ev, true, nil
}

// giteaHook is the part of Gitea's and Forgejo's pull_request payload kropipe reads.
type giteaHook struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		Number int  `json:"number"`
		Merged bool `json:"merged"`
		Head   struct {
			Ref string `json:"ref"`
		} `json:"head"`
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
	} `json:"pull_request"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

// parseGiteaEvent reads X-Forgejo-Event or X-Gitea-Event: pull_request, signed with a
// hex HMAC-SHA256 in X-Forgejo-Signature or X-Gitea-Signature. Forgejo sends both
// header families; its own names it first.
func parseGiteaEvent(h http.Header, body []byte, secret string) (Event, bool, error) {
	kind, prefix := Forgejo, "X-Forgejo-"
	if h.Get(prefix+"Event") == "" {
		kind, prefix = Gitea, "X-Gitea-"
	}
	event := h.Get(prefix + "Event")
	if event == "" {
		return Event{}, false, nil
	}
	if secret != "" {
		sig := h.Get(prefix + "Signature")
		if sig == "" {
			return Event{}, true, fmt.Errorf("%s webhook: no %sSignature header, and a webhook secret is set: set the same secret on the %s webhook", kind, prefix, kind)
		}
		if ok, err := gitea.VerifyWebhookSignature(secret, sig, body); err != nil || !ok {
			return Event{}, true, fmt.Errorf("%s webhook: the signature does not match the webhook secret: set the same secret on the %s webhook", kind, kind)
		}
	}
	if event != "pull_request" {
		return Event{}, true, fmt.Errorf("%w: %s %s", ErrNotPullRequestEvent, kind, event)
	}
	var p giteaHook
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, true, fmt.Errorf("%s webhook: the pull_request payload does not parse: %w", kind, err)
	}
	ev := Event{
		Forge:  kind,
		Repo:   p.Repository.FullName,
		Number: p.Number,
		Head:   p.PullRequest.Head.Ref,
		Base:   p.PullRequest.Base.Ref,
		Action: p.Action,
	}
	if ev.Number == 0 {
		ev.Number = p.PullRequest.Number
	}
	if ev.Action == "closed" && p.PullRequest.Merged {
		ev.Action = "merged"
	}
	return ev, true, nil
}
