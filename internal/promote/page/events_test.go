package page_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

// readEvents delivers the stream's events until it ends.
func readEvents(t *testing.T, resp *http.Response) <-chan sseEvent {
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
	return sseEvent{}
}

// TestEvents_SendTheCardsThatChanged is the live update without a browser: a page opened
// on an older state gets every card at once, then only the cards an action changed.
func TestEvents_SendTheCardsThatChanged(t *testing.T) {
	p := startPromoter(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/events?v=older", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET /events: %d %s", resp.StatusCode, ct)
	}
	events := readEvents(t, resp)
	cards := func(ev sseEvent) map[string]string {
		t.Helper()
		var m map[string]string
		if ev.name != "cards" || json.Unmarshal([]byte(ev.data), &m) != nil {
			t.Fatalf("event %q %.200s, want cards", ev.name, ev.data)
		}
		return m
	}
	if all := cards(next(t, events)); len(all) != 5 || currentValue.FindStringSubmatch(all["stage-develop-frontend"]) == nil {
		t.Fatalf("first event: %d cards %v", len(all), all)
	}
	if err := p.engine.Pause(ctx, "staging-backend"); err != nil {
		t.Fatal(err)
	}
	// A pass may still be settling the backend lane; the frontend cards stay as they were
	// and are never sent again.
	for {
		changed := cards(next(t, events))
		if _, ok := changed["stage-develop-frontend"]; ok {
			t.Fatalf("an unchanged card was sent again: %v", changed)
		}
		if strings.Contains(changed["stage-staging-backend"], `<span class="badge paused">paused</span>`) {
			return
		}
	}
}
