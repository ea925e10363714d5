package page

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// keepAlive is how often an idle event stream sends a comment, so proxies and
// port-forwards do not close it as dead.
const keepAlive = 30 * time.Second

// version fingerprints what cards show, so a stream can tell whether the page that
// opened it is already current.
func version(cs []card) string {
	h := fnv.New64a()
	// JSON, not %v: the cards hold pointers, whose addresses %v would print.
	_ = json.NewEncoder(h).Encode(cs)
	return fmt.Sprintf("%016x", h.Sum64())
}

// events is the page's Server-Sent Events stream. After each change the engine announces
// it sends the cards whose content changed, rendered as on the page ("cards": a JSON
// object of element id to HTML); "layout" when stages came or went, and on a stage's own
// page "stage" when its card changed: the script then fetches the page again.
func (p *Page) events(w http.ResponseWriter, r *http.Request) {
	sub, ok := p.c.(Subscriber)
	rc := http.NewResponseController(w)
	if !ok {
		// 204 tells EventSource not to reconnect: this promoter has no live updates.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	changed, cancel, err := sub.Subscribe()
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, stage.ErrTooManySubscribers) {
			code = http.StatusTooManyRequests
		}
		http.Error(w, err.Error(), code)
		return
	}
	defer cancel()
	only := r.URL.Query().Get("stage")
	view, err := stagefilter.Parse(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	canAct := p.canAct(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// retry: a dropped stream (a restart, a new leader) reconnects after 3 s.
	fmt.Fprint(w, "retry: 3000\n\n")
	if err := rc.Flush(); err != nil {
		p.log.Error("the event stream cannot be flushed", "err", err)
		return
	}

	sent := map[string]string{} // card id → HTML last sent (or rendered in the page)
	var names []string          // the stages last seen, in order
	first, opened := true, r.URL.Query().Get("v")
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		var cs []card
		if only != "" {
			if c, ok := findCard(cards(p.c.Status(), p.specs(), canAct), only); ok {
				cs = []card{c}
			}
		} else {
			// As the page shows them: groups folded, and only what its filter keeps, so a
			// stage entering or leaving the filtered view changes the layout.
			cs = filterCards(units(cards(p.c.Status(), p.specs(), canAct)), view)
		}
		current := make([]string, len(cs))
		for i, c := range cs {
			current[i] = c.Name
		}
		upToDate := first && opened == version(cs)
		diff := map[string]string{}
		for _, c := range cs {
			html, err := p.renderCard(c)
			if err != nil {
				p.log.Error("rendering a card for the event stream failed", "stage", c.Name, "err", err)
				return
			}
			id := cardID(c.Name)
			if sent[id] != html && !upToDate {
				diff[id] = html
			}
			sent[id] = html
		}
		var writeErr error
		switch {
		case !first && strings.Join(names, "\x00") != strings.Join(current, "\x00"):
			writeErr = event(w, "layout", "{}")
		case len(diff) > 0 && only != "":
			writeErr = event(w, "stage", "{}")
		case len(diff) > 0:
			data, _ := json.Marshal(diff)
			writeErr = event(w, "cards", string(data))
		}
		if writeErr != nil || rc.Flush() != nil {
			return
		}
		names, first = current, false
		if !p.wait(w, r, rc, changed, tick.C) {
			return
		}
	}
}

// minGap is the least time between two renders of one stream: a sync's burst of Argo CD
// updates then costs each open page a few renders a second, not one per update.
const minGap = 300 * time.Millisecond

// wait returns true when the stages changed, false when the stream should end; meanwhile
// it sends a keep-alive comment now and then. It returns no sooner than minGap after it
// was called: changes arriving meanwhile make one render.
func (p *Page) wait(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, changed <-chan struct{}, tick <-chan time.Time) bool {
	gap := time.After(minGap)
	dirty, gapped := false, false
	for {
		select {
		case <-changed:
			dirty = true
		case <-gap:
			gapped, gap = true, nil
		case <-tick:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return false
			}
		case <-r.Context().Done():
			return false
		case <-p.stop:
			return false
		}
		if dirty && gapped {
			return true
		}
	}
}

// event writes one event; data must be one line (JSON is).
func event(w http.ResponseWriter, name, data string) error {
	_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
	return err
}

func cardID(name string) string { return "stage-" + name }

func (p *Page) renderCard(c card) (string, error) {
	var b strings.Builder
	err := p.tmpl.ExecuteTemplate(&b, "card", c)
	return b.String(), err
}
