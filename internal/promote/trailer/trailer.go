// Package trailer reads and writes the trailers of kropipe's commit messages (Kropipe-Stage,
// Kropipe-Value, ...), the record History reads back, by the rules of git interpret-trailers.
package trailer

import (
	"fmt"
	"strings"
)

// The keys kropipe writes into every promotion or rollback commit.
const (
	Prefix = "Kropipe-" // of every key below

	Stage    = "Kropipe-Stage"
	Image    = "Kropipe-Image"
	Value    = "Kropipe-Value"
	Previous = "Kropipe-Previous"
	Freight  = "Kropipe-Freight"
	Rejected = "Kropipe-Rejected" // rollbacks only: the value never auto-promoted again
	// Group names the release group of a commit that changes a set of stages at once; its
	// Stage, Image, Value, Previous (and Rejected) trailers then repeat once per member,
	// in member order, and Freight, given once, is the set's.
	Group = "Kropipe-Group"
	// SignedBy names who signed the promoted image's digest, as the stage's signature policy
	// verified it (a key's id, a certificate's identity and issuer, a Notation signer's
	// subject): one per policy, in policy order. In a group's commit they follow the
	// member's Kropipe-Previous.
	SignedBy = "Kropipe-Signed-By"
	// Provenance is the SLSA provenance a policy checked: "builder=<id> source=<repository>
	// digest=<digest>", one per policy that checked one, after the Kropipe-Signed-By lines.
	Provenance = "Kropipe-Provenance"
	// RequestedBy names who asked for a manual promotion or rollback: the API token's
	// name, the pipeline page's login, or the command's $USER@host in local mode. Automatic
	// promotions have none. Given once per commit, a group's after Kropipe-Freight.
	RequestedBy = "Kropipe-Requested-By"
)

// Repeatable reports whether a kropipe key may be given more than once in one commit (or,
// in a group's commit, once per member): one per signature policy.
func Repeatable(key string) bool { return key == SignedBy || key == Provenance }

// Trailer is one "Key: value" line of a message's trailer block.
type Trailer struct {
	Key, Value string
}

// gitGenerated are the prefixes Git itself writes; a block holding one counts as trailers
// when a quarter of its lines are (trailer.c's git_generated_prefixes).
var gitGenerated = []string{"Signed-off-by: ", "(cherry picked from commit "}

// Parse returns the trailers of a commit message in order, as `git interpret-trailers
// --parse` prints them: only the last paragraph after the subject counts, and only when
// every line of it is a trailer or a continuation (or, with a Signed-off-by or a "cherry
// picked from" line, a quarter of them are); a line "Key: value" has a key of letters,
// digits and hyphens; a line starting with white space continues the previous value;
// lines from a "---" line on and comment lines ("#") are not part of the message.
func Parse(msg string) []Trailer {
	lines := messageLines(msg)
	start := blockStart(lines)
	var out []Trailer
	continues := false // whether a continuation line belongs to the last trailer
	for _, l := range lines[start:] {
		switch {
		case l != "" && isSpace(l[0]) && continues:
			t := &out[len(out)-1]
			t.Value = strings.TrimSpace(t.Value + " " + strings.TrimSpace(l))
		case strings.HasPrefix(l, "#"):
			continues = false
		default:
			i := separator(l)
			continues = i >= 1
			if continues {
				out = append(out, Trailer{Key: strings.TrimSpace(l[:i]), Value: strings.TrimSpace(l[i+1:])})
			}
		}
	}
	return out
}

// Map is Parse as a map. A kropipe key (Kropipe-*) given twice is an error, since which value
// a reader should trust cannot be known (Kropipe-Rejected decides what is never
// auto-promoted again), unless it is Repeatable (read those with Parse); of other keys given
// twice (Co-authored-by), the last is kept. Keys are matched as written.
func Map(msg string) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range Parse(msg) {
		if _, ok := out[t.Key]; ok && strings.HasPrefix(t.Key, Prefix) && !Repeatable(t.Key) {
			return nil, fmt.Errorf("trailer %s appears twice", t.Key)
		}
		out[t.Key] = t.Value
	}
	return out, nil
}

// messageLines are the message's lines up to a "---" divider, without trailing blank and
// comment lines.
func messageLines(msg string) []string {
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(l, "---"); ok && (rest == "" || isSpace(rest[0])) {
			lines = lines[:i]
			break
		}
	}
	for len(lines) > 0 {
		l := lines[len(lines)-1]
		if !isBlank(l) && !strings.HasPrefix(l, "#") {
			break
		}
		lines = lines[:len(lines)-1]
	}
	return lines
}

// blockStart is the index of the trailer block's first line, len(lines) when there is none
// (trailer.c's find_trailer_block_start).
func blockStart(lines []string) int {
	// The first paragraph is the subject and never trailers.
	title := 0
	for title < len(lines) && (strings.HasPrefix(lines[title], "#") || !isBlank(lines[title])) {
		title++
	}
	var trailers, others, continuations int
	recognized, onlySpaces := false, true
	for i := len(lines) - 1; i >= title; i-- {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "#"):
			others += continuations
			continuations = 0
		case isBlank(l):
			if onlySpaces {
				continue
			}
			others += continuations
			if (recognized && trailers*3 >= others) || (trailers > 0 && others == 0) {
				return i + 1
			}
			return len(lines)
		default:
			onlySpaces = false
			switch {
			case hasGitPrefix(l):
				trailers++
				continuations = 0
				recognized = true
			case separator(l) >= 1 && !isSpace(l[0]):
				trailers++
				continuations = 0
			case isSpace(l[0]):
				continuations++
			default:
				others += 1 + continuations
				continuations = 0
			}
		}
	}
	return len(lines)
}

// separator is the index of the ':' ending a line's key, -1 when the line is no trailer: the
// key is letters, digits and hyphens, optionally followed by white space (trailer.c's
// find_separator).
func separator(l string) int {
	space := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c == ':':
			return i
		case !space && (isAlnum(c) || c == '-'):
		case i > 0 && (c == ' ' || c == '\t'):
			space = true
		default:
			return -1
		}
	}
	return -1
}

func hasGitPrefix(l string) bool {
	for _, p := range gitGenerated {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

func isBlank(l string) bool { return strings.TrimSpace(l) == "" }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
