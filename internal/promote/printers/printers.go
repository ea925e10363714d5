// Package printers writes what the promoter's commands print: the status table, an outcome,
// a stage's history.
package printers

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Table writes the status table users read first when debugging.
func Table(w io.Writer, sts []stage.Status) { table(w, sts, false) }

// Wide is Table with the links a terminal cannot fit in a column: a stage's pull request's URL.
func Wide(w io.Writer, sts []stage.Status) { table(w, sts, true) }

// JSON writes the statuses as the API returns them (GET /api/v1/stages), for scripts.
func JSON(w io.Writer, sts []stage.Status) error {
	if sts == nil {
		sts = []stage.Status{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sts)
}

// Formats are the values of promoter status -o.
var Formats = []string{"table", "wide", "json"}

// Status writes sts in format ("" is table): one of Formats.
func Status(w io.Writer, sts []stage.Status, format string) error {
	switch format {
	case "", "table":
		Table(w, sts)
	case "wide":
		Wide(w, sts)
	case "json":
		return JSON(w, sts)
	default:
		return fmt.Errorf("unknown output format %q; use one of %s", format, strings.Join(Formats, ", "))
	}
	return nil
}

func table(w io.Writer, sts []stage.Status, wide bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// SYNC only when a deployment tool reports (the Argo CD mode): local mode has none.
	withSync := false
	for _, s := range sts {
		withSync = withSync || s.Sync != nil
	}
	header := "STAGE\tCURRENT\tCANDIDATE\tDECISION\tREASON\tLAST-COMMIT"
	if withSync {
		header += "\tSYNC"
	}
	fmt.Fprintln(tw, header)
	for _, s := range sts {
		cand := "-"
		if s.Candidate != nil {
			cand = s.Candidate.Tag
		}
		reason := s.Reason
		for _, w := range s.Warnings {
			reason += " (warning: " + w + ")"
		}
		for _, sk := range s.Skipped {
			reason += " (not signed as required: " + sk + ")"
		}
		for _, o := range s.Owed {
			reason += " (" + o.String() + ")"
		}
		current := s.CurrentTag
		if len(s.Members) > 0 {
			// A release group: its set is listed member by member below.
			current, cand = fmt.Sprintf("set of %d", len(s.Members)), "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s", s.Name, dash(current), cand, s.Decision, reason, dash(short(s.LastCommit)))
		if withSync {
			fmt.Fprintf(tw, "\t%s", syncCell(s.Sync))
		}
		fmt.Fprintln(tw)
		for _, m := range s.Members {
			fmt.Fprintf(tw, "  member %s\t%s\t%s\t\t\t", m.Stage, dash(m.Current), dash(m.Candidate))
			if withSync {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprintln(tw)
		}
		if pr := s.PullRequest; pr != nil {
			// A line of its own, without tabs, so it does not widen the columns.
			line := "  pull request " + pr.Summary()
			if wide && pr.URL != "" {
				line += "  " + pr.URL
			}
			fmt.Fprintln(tw, line)
		}
	}
	tw.Flush()
}

// syncCell says "Synced/Healthy at abc1234", or what operation is under way.
func syncCell(s *stage.SyncStatus) string {
	if s == nil {
		return "-"
	}
	cell := dash(s.Status) + "/" + dash(s.Health)
	if s.Revision != "" {
		cell += " at " + short(s.Revision)
	}
	if h := s.Hydration; h != nil {
		// The revision is a hydrated commit: name the dry commit it was rendered from.
		switch {
		case h.Phase == "Hydrating":
			cell += ", hydrating"
		case h.Phase == "Failed":
			cell += ", hydration of " + dash(short(h.DryCommit)) + " failed"
		case s.Revision != "" && s.Revision == h.HydratedCommit && h.DryCommit != "":
			cell += " (dry " + short(h.DryCommit) + ")"
		}
	}
	switch s.Operation {
	case "Requested", "Running", "Terminating":
		cell += ", sync " + strings.ToLower(s.Operation)
	case "Failed", "Error":
		cell += ", last sync " + strings.ToLower(s.Operation)
	}
	return cell
}

// Outcome writes one promotion or rollback.
func Outcome(w io.Writer, o stage.Outcome) {
	verb := "promoted"
	if o.Kind == "rollback" {
		verb = "rolled back"
	}
	if o.Skipped {
		fmt.Fprintf(w, "%s already holds %s: nothing committed\n", o.Stage, o.New)
		return
	}
	fmt.Fprintf(w, "%s %s: %s → %s in %s\n", verb, o.Stage, dash(o.Old), o.New, short(o.Commit))
}

// History writes a stage's promotions and rollbacks, newest first.
func History(w io.Writer, h api.History) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMMIT\tTIME\tKIND\tFROM\tTO\tREJECTED\tREQUESTED-BY\tPULL-REQUEST")
	for _, e := range h.Entries {
		pr := "-"
		if e.PullRequest != nil {
			pr = strings.TrimSpace(fmt.Sprintf("PR #%d %s", e.PullRequest.Number, e.PullRequest.URL))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(short(e.Commit)), e.Time.UTC().Format("2006-01-02 15:04:05Z"), e.Kind, dash(e.Previous), e.Value, dash(e.Rejected), dash(e.RequestedBy), pr)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}
