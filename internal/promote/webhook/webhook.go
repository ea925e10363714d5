// Package webhook receives registry push notifications, so that the promoter looks at a
// registry as soon as CI pushed instead of at its next poll.
//
// A notification only says where to look. The pass it starts reads the tags from the registry
// itself, exactly as a scheduled one does; nothing in the body is trusted to promote. A forged
// or replayed notification can therefore at most cause an early poll, and the shared secret
// keeps even that to the registries that know it.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Path is where the handler listens; a registry that cannot send a header posts to
// Path + "/" + secret instead.
const Path = "/webhook/registry"

// maxBody bounds a notification: registries send a few KB.
const maxBody = 1 << 20

// Push is one image a notification says was pushed.
type Push struct {
	// Repository is the image repository, registry included, as go-containerregistry
	// names it (index.docker.io/library/nginx, ghcr.io/team/frontend).
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
}

// ErrNoPush is returned by Parse for a notification that names no pushed image (a delete, a
// ping, a format it does not know).
var ErrNoPush = errors.New("the notification names no pushed image")

// Repositories are the repositories of the pushes that may have moved a tag, in order, as
// stage.Engine.Notify takes them. A push naming a digest and no tag (a layer blob, or a
// manifest pushed by digest) moved none: the CNCF distribution registry sends one such
// notification per blob before the manifest's, and a pass for each would look before
// the tag exists. A push naming neither (a CI job's {"image": "host/repo"}) counts.
func Repositories(pushes []Push) []string {
	repos := make([]string, 0, len(pushes))
	for _, p := range pushes {
		if p.Tag == "" && p.Digest != "" {
			continue
		}
		repos = append(repos, p.Repository)
	}
	return repos
}

// payload is the union of the formats Parse reads; each registry fills its own fields.
type payload struct {
	// CNCF distribution (docker-registry, GitLab, Harbor 1.x): notifications endpoints.
	Events []struct {
		Action string `json:"action"`
		Target struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
			Digest     string `json:"digest"`
		} `json:"target"`
		Request struct {
			Host string `json:"host"`
		} `json:"request"`
	} `json:"events"`

	// Docker Hub: push_data.tag + repository.repo_name. Harbor 2: event_data. Quay:
	// repository is a string, docker_url + updated_tags.
	PushData *struct {
		Tag string `json:"tag"`
	} `json:"push_data"`
	Repository json.RawMessage `json:"repository"`
	Type       string          `json:"type"`
	EventData  *struct {
		Resources []struct {
			Tag         string `json:"tag"`
			Digest      string `json:"digest"`
			ResourceURL string `json:"resource_url"`
		} `json:"resources"`
	} `json:"event_data"`
	DockerURL   string   `json:"docker_url"`
	UpdatedTags []string `json:"updated_tags"`

	// GitHub (ghcr.io) package and registry_package events.
	Package         *githubPackage `json:"package"`
	RegistryPackage *githubPackage `json:"registry_package"`

	// Anything else, e.g. a CI job after its push: {"image": "registry.example.com/team/app:1.2.2"}.
	Image  string   `json:"image"`
	Images []string `json:"images"`
}

type githubPackage struct {
	PackageVersion struct {
		PackageURL        string `json:"package_url"`
		ContainerMetadata struct {
			Tag struct {
				Name   string `json:"name"`
				Digest string `json:"digest"`
			} `json:"tag"`
		} `json:"container_metadata"`
	} `json:"package_version"`
}

// Parse reads the pushed images from a notification of the CNCF distribution registry
// (docker-registry, GitLab), Harbor, Docker Hub, Quay, GitHub packages, or a plain
// {"image": "repo:tag"} / {"images": [...]}.
func Parse(body []byte) ([]Push, error) {
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("the notification is not JSON: %w", err)
	}
	var out []Push
	add := func(host, repo, tag, digest string) error {
		ref := strings.TrimSuffix(repo, ":")
		if host != "" {
			ref = host + "/" + ref
		}
		r, err := name.NewRepository(ref, name.WeakValidation)
		if err != nil {
			return fmt.Errorf("repository %q: %w", ref, err)
		}
		out = append(out, Push{Repository: r.Name(), Tag: tag, Digest: digest})
		return nil
	}
	addRef := func(s string) error {
		s = strings.TrimSuffix(strings.TrimSpace(s), ":")
		ref, err := name.ParseReference(s, name.WeakValidation)
		if err != nil {
			return fmt.Errorf("image %q: %w", s, err)
		}
		push := Push{Repository: ref.Context().Name()}
		switch r := ref.(type) {
		case name.Tag:
			if strings.Contains(s[strings.LastIndex(s, "/")+1:], ":") {
				push.Tag = r.TagStr()
			}
		case name.Digest:
			push.Digest = r.DigestStr()
		}
		out = append(out, push)
		return nil
	}
	var errs []error
	for _, e := range p.Events {
		if e.Action == "push" && e.Target.Repository != "" {
			errs = append(errs, add(e.Request.Host, e.Target.Repository, e.Target.Tag, e.Target.Digest))
		}
	}
	if p.PushData != nil {
		var repo struct {
			RepoName string `json:"repo_name"`
		}
		if json.Unmarshal(p.Repository, &repo) == nil && repo.RepoName != "" {
			errs = append(errs, add("", repo.RepoName, p.PushData.Tag, ""))
		}
	}
	if p.EventData != nil && (p.Type == "PUSH_ARTIFACT" || p.Type == "pushImage") {
		for _, r := range p.EventData.Resources {
			if r.ResourceURL != "" {
				errs = append(errs, addRef(r.ResourceURL))
			}
		}
	}
	if p.DockerURL != "" {
		for _, tag := range p.UpdatedTags {
			errs = append(errs, add("", p.DockerURL, tag, ""))
		}
	}
	for _, gp := range []*githubPackage{p.Package, p.RegistryPackage} {
		if gp != nil && gp.PackageVersion.PackageURL != "" {
			errs = append(errs, addRef(gp.PackageVersion.PackageURL))
		}
	}
	for _, img := range append([]string{p.Image}, p.Images...) {
		if img != "" {
			errs = append(errs, addRef(img))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNoPush
	}
	return out, nil
}

// Notify is told the pushes of an authenticated notification and returns the stages that
// watch one of their repositories (a pass for them is then due). An error wrapping
// ErrUnavailable makes the handler answer 503, so the registry retries.
type Notify func(ctx context.Context, pushes []Push) (stages []string, err error)

// ErrUnavailable is wrapped by Notify's error when this process cannot act on a notification
// now (a standby replica); registries that retry on 5xx deliver it again.
var ErrUnavailable = errors.New("unavailable")

// Handler serves POST Path. It accepts a notification carrying the secret in one of the ways
// registries can send it: "Authorization: Bearer <secret>" or "Authorization: <secret>"
// (distribution's headers, Harbor's auth header), an HMAC-SHA256 of the body in
// X-Hub-Signature-256 (GitHub), or the secret as the last path segment (Docker Hub, Quay).
type Handler struct {
	secret []byte
	notify Notify
	log    *slog.Logger
	result func(string)
}

// What became of a notification, for WithResults.
const (
	ResultDue         = "due"         // stages read the pushed repositories: a pass runs now
	ResultIgnored     = "ignored"     // no stage reads them, or no push (ping, delete)
	ResultRefused     = "refused"     // no valid secret
	ResultInvalid     = "invalid"     // not a notification it can read
	ResultUnavailable = "unavailable" // a standby that could not pass it on
	ResultError       = "error"
)

// Option configures a Handler.
type Option func(*Handler)

// WithResults is told what became of each notification (a metric).
func WithResults(fn func(result string)) Option { return func(h *Handler) { h.result = fn } }

// NewHandler returns the handler; secret must not be empty.
func NewHandler(secret string, notify Notify, log *slog.Logger, opts ...Option) (*Handler, error) {
	if strings.TrimSpace(secret) == "" {
		return nil, errors.New("the webhook secret is empty: registries' notifications must carry a secret")
	}
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{secret: []byte(strings.TrimSpace(secret)), notify: notify, log: log, result: func(string) {}}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// Register adds the handler's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("POST "+Path, h)
	mux.Handle("POST "+Path+"/{token}", h)
}

// Answer is the body of a successful notification.
type Answer struct {
	Pushes []Push   `json:"pushes"`
	Stages []string `json:"stages"` // the stages a pass now checks at once
}

// ForwardedHeader marks a notification one promoter passed on to another.
const ForwardedHeader = "X-Kropipe-Forwarded"

type forwardedKey struct{}

// Forwarded reports whether the notification being handled was passed on by another promoter
// (Notify must not pass it on again).
func Forwarded(ctx context.Context) bool { return ctx.Value(forwardedKey{}) != nil }

// Forward passes pushes on to the promoter whose listener is url (its Path), signed with the
// shared secret (X-Hub-Signature-256), and returns the stages it checks: how a standby replica
// hands a notification to the leader.
func Forward(ctx context.Context, client *http.Client, url, secret string, pushes []Push) ([]string, error) {
	images := make([]string, len(pushes))
	for i, p := range pushes {
		images[i] = p.Repository
		switch {
		case p.Tag != "":
			images[i] += ":" + p.Tag
		case p.Digest != "":
			images[i] += "@" + p.Digest
		}
	}
	body, _ := json.Marshal(map[string]any{"images": images})
	// Signed, not sent: whoever the address leads to never learns the secret.
	mac := hmac.New(sha256.New, []byte(strings.TrimSpace(secret)))
	mac.Write(body)
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return forward(ctx, client, url, header, body, "notification")
}

// forward posts body with header to another promoter's listener at url, marked as passed on,
// and returns the stages its answer names.
func forward(ctx context.Context, client *http.Client, url string, header http.Header, body []byte, what string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set(ForwardedHeader, "1")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("passing the %s on to %s: %w", what, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("passing the %s on to %s: %s: %s", what, url, resp.Status, strings.TrimSpace(string(b)))
	}
	var a struct {
		Stages []string `json:"stages"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("passing the %s on to %s: %w", what, url, err)
	}
	return a.Stages, nil
}

// notified answers what notify said: an error (503 when this process cannot act now, so the
// sender retries), or the stages due. ok is false when the reply is written already.
func notified(w http.ResponseWriter, result func(string), stages []string, err error) ([]string, bool) {
	if err != nil {
		code, r := http.StatusInternalServerError, ResultError
		if errors.Is(err, ErrUnavailable) {
			code, r = http.StatusServiceUnavailable, ResultUnavailable
		}
		result(r)
		reply(w, code, map[string]string{"error": err.Error()})
		return nil, false
	}
	if len(stages) == 0 {
		result(ResultIgnored)
		return []string{}, true
	}
	result(ResultDue)
	return stages, true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		h.result(ResultInvalid)
		reply(w, http.StatusBadRequest, map[string]string{"error": "reading the notification: " + err.Error()})
		return
	}
	if len(body) > maxBody {
		h.result(ResultInvalid)
		reply(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "the notification is larger than 1 MiB"})
		return
	}
	if !h.authentic(r, body) {
		// Said without detail: a caller without the secret learns nothing about it.
		h.log.Warn("registry notification refused: no valid secret", "remote", r.RemoteAddr)
		h.result(ResultRefused)
		reply(w, http.StatusUnauthorized, map[string]string{"error": "the notification carries no valid secret: send Authorization: Bearer <secret>, an X-Hub-Signature-256, or post to " + Path + "/<secret>"})
		return
	}
	pushes, err := Parse(body)
	if errors.Is(err, ErrNoPush) {
		// Pings, deletes and pulls are normal traffic for a notification endpoint.
		h.result(ResultIgnored)
		reply(w, http.StatusAccepted, Answer{Pushes: []Push{}, Stages: []string{}})
		return
	}
	if err != nil {
		h.result(ResultInvalid)
		reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx := r.Context()
	if r.Header.Get(ForwardedHeader) != "" {
		ctx = context.WithValue(ctx, forwardedKey{}, true)
	}
	due, err := h.notify(ctx, pushes)
	stages, ok := notified(w, h.result, due, err)
	if !ok {
		return
	}
	h.log.Info("registry notification", "pushes", len(pushes), "first", pushes[0].Repository+":"+pushes[0].Tag, "stages", stages)
	reply(w, http.StatusAccepted, Answer{Pushes: pushes, Stages: stages})
}

func (h *Handler) authentic(r *http.Request, body []byte) bool {
	if tok := r.PathValue("token"); tok != "" {
		return subtle.ConstantTimeCompare([]byte(tok), h.secret) == 1
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		auth = strings.TrimSpace(strings.TrimPrefix(auth, "Bearer "))
		return subtle.ConstantTimeCompare([]byte(auth), h.secret) == 1
	}
	if sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256="); ok {
		want, err := hex.DecodeString(sig)
		if err != nil {
			return false
		}
		mac := hmac.New(sha256.New, h.secret)
		mac.Write(body)
		return hmac.Equal(mac.Sum(nil), want)
	}
	return false
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
