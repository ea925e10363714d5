package main

import (
	"strings"
	"unicode"
)

// anchor is the id GitHub gives a heading written as Markdown text: its text (code spans'
// content kept, their backticks dropped) lower-cased, every character that is not a letter,
// digit, space, hyphen or underscore removed, spaces turned into hyphens. A second heading
// with the same id gets "-1" appended, a third "-2" (see anchors in the tests).
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
