package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// ForgePath is where forges' pull request webhooks are received (GitHub, GitLab, Gitea,
// Forgejo, Bitbucket: each signs with the shared secret its own way, forge.ParseEvent checks it).
// An event only wakes the stage whose pull request branch it names: the pass asks the forge what
// became of the pull request, so nothing in the body is trusted.
const ForgePath = "/webhook/forge"

// NotifyPullRequest is told an authenticated forge event and returns the stages it wakes.
// delivery is the request as it came, for passing it on to another replica (ForwardForge).
type NotifyPullRequest func(ctx context.Context, ev forge.Event, delivery Delivery) (stages []string, err error)

// Delivery is a forge webhook request as received: forwarded byte for byte, its signature still
// holds.
type Delivery struct {
	Header http.Header
	Body   []byte
}

// ForgeHandler serves POST ForgePath.
type ForgeHandler struct {
	secret string
	notify NotifyPullRequest
	log    *slog.Logger
	result func(string)
}

// NewForgeHandler returns the handler; secret must not be empty (forges sign with it).
func NewForgeHandler(secret string, notify NotifyPullRequest, log *slog.Logger, opts ...Option) (*ForgeHandler, error) {
	if strings.TrimSpace(secret) == "" {
		return nil, errors.New("the webhook secret is empty: forge webhooks must be signed with a secret")
	}
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{result: func(string) {}}
	for _, o := range opts {
		o(h)
	}
	return &ForgeHandler{secret: strings.TrimSpace(secret), notify: notify, log: log, result: h.result}, nil
}

// Register adds the handler's route to mux.
func (h *ForgeHandler) Register(mux *http.ServeMux) { mux.Handle("POST "+ForgePath, h) }

// ForgeAnswer is the body of a handled forge event.
type ForgeAnswer struct {
	Event  *forge.Event `json:"event,omitempty"`
	Stages []string     `json:"stages"`
}

func (h *ForgeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		h.result(ResultInvalid)
		reply(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "the event is unreadable or larger than 1 MiB"})
		return
	}
	ev, err := forge.ParseEvent(r.Header, body, h.secret)
	switch {
	case errors.Is(err, forge.ErrNotPullRequestEvent):
		h.result(ResultIgnored)
		reply(w, http.StatusAccepted, ForgeAnswer{Stages: []string{}})
		return
	case err != nil:
		h.log.Warn("forge webhook refused", "remote", r.RemoteAddr, "err", err)
		h.result(ResultRefused)
		reply(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	ctx := r.Context()
	if r.Header.Get(ForwardedHeader) != "" {
		ctx = context.WithValue(ctx, forwardedKey{}, true)
	}
	due, err := h.notify(ctx, ev, Delivery{Header: r.Header.Clone(), Body: body})
	stages, ok := notified(w, h.result, due, err)
	if !ok {
		return
	}
	h.log.Info("forge webhook", "forge", ev.Forge, "repo", ev.Repo, "number", ev.Number, "action", ev.Action, "stages", stages)
	reply(w, http.StatusAccepted, ForgeAnswer{Event: &ev, Stages: stages})
}

// ForwardForge passes a forge event on, as it came, to the promoter whose forge listener is url
// (its ForgePath), and returns the stages it wakes: how a replica hands an event to the one
// running the stage.
func ForwardForge(ctx context.Context, client *http.Client, url string, d Delivery) ([]string, error) {
	return forward(ctx, client, url, d.Header, d.Body, "forge event")
}
