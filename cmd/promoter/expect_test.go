package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// A promoter that shows develop-frontend at 1.2.2 and drops the connection of every action:
// the command sends the value status showed, and says the outcome is unknown and how to act
// again only if nothing was done.
func TestCommands_ActionWithoutAnAnswerSaysHowToRetrySafely(t *testing.T) {
	// The client sees the connection close after the handler recorded the body, but the race
	// detector knows nothing of that ordering: the handler and the test share sent under mu.
	var (
		mu   sync.Mutex
		sent []string
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_ = json.NewEncoder(w).Encode(api.StageList{Stages: []stage.Status{{Name: "develop-frontend", CurrentTag: "1.2.2"}}})
			return
		}
		var body struct{ Expect string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		sent = append(sent, body.Expect)
		mu.Unlock()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // the answer is lost
		}
	}))
	defer ts.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"rollback", "develop-frontend"}, `promoter rollback develop-frontend --expect "1.2.2"`},
		{[]string{"promote", "develop-frontend", "1.2.3"}, `promoter promote develop-frontend --expect "1.2.2"`},
		{[]string{"approve", "develop-frontend", "1.2.3"}, `promoter approve develop-frontend --expect "1.2.2"`},
		{[]string{"rollback", "develop-frontend", "--expect", "1.2.3"}, `promoter rollback develop-frontend --expect "1.2.3"`},
	}
	for _, tt := range tests {
		mu.Lock()
		sent = nil
		mu.Unlock()
		_, err := run(t, append(tt.args, "--addr", strings.TrimPrefix(ts.URL, "http://"))...)
		if err == nil || !strings.Contains(err.Error(), "is not known") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v; want the unknown outcome and %s", tt.args, err, tt.want)
		}
		mu.Lock()
		got := append([]string(nil), sent...)
		mu.Unlock()
		if want := strings.TrimSuffix(strings.TrimPrefix(tt.want[strings.Index(tt.want, "--expect ")+len("--expect "):], `"`), `"`); len(got) != 1 || got[0] != want {
			t.Errorf("%v sent expect %q; want %q once", tt.args, got, want)
		}
	}
}
