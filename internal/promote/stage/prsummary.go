package stage

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/forge"
)

// Summary says in one line where the pull request stands and who must act, for the status
// table, the page and Events: "#12 open, checks pending, waiting for a review and merge by
// a human", "#12 merged by alice", "#12 closed unmerged by bob", and the forge's last
// failure with the next attempt while one is retried. The URL is not in it: each surface
// shows it its own way (a link, a wide column).
func (p PullRequest) Summary() string {
	var parts []string
	if p.Number > 0 {
		parts = append(parts, fmt.Sprintf("#%d %s", p.Number, cmp.Or(string(p.State), "open")))
	} else {
		parts = append(parts, "not opened yet")
		if p.Head != "" {
			parts[0] = "from " + p.Head + " not opened yet"
		}
	}
	switch p.State {
	case forge.Merged:
		if p.MergedBy != "" {
			parts[0] += " by " + p.MergedBy
		}
	case forge.Closed:
		parts[0] += " unmerged"
		if p.ClosedBy != "" {
			parts[0] += " by " + p.ClosedBy
		}
	default:
		if p.Checks != "" && p.Checks != forge.ChecksNone {
			parts = append(parts, "checks "+string(p.Checks))
		}
		if p.Mergeable != nil && !*p.Mergeable {
			parts = append(parts, "the forge says it cannot be merged")
		}
	}
	if p.Action != "" {
		parts = append(parts, p.Action)
	}
	if p.LastError != "" {
		e := "the forge failed"
		if p.Attempts > 0 {
			e += fmt.Sprintf(" %d time(s)", p.Attempts)
		}
		e += ", the last: " + p.LastError
		if !p.NextAttempt.IsZero() {
			e += "; next attempt " + p.NextAttempt.UTC().Format("15:04:05Z")
		}
		parts = append(parts, e)
	}
	return strings.Join(parts, ", ")
}
