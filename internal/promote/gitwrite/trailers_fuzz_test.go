package gitwrite

import (
	"testing"
	"time"
)

// FuzzTrailers: a commit message this package writes either reads back as the same
// record (stage, values, image) or is refused when written — a value that cannot be
// a trailer must never be committed and then misread by History. Arbitrary messages
// (a human's commits) must not panic the reader.
func FuzzTrailers(f *testing.F) {
	f.Add("develop-frontend", "1.2.1", "1.2.2", "registry.example.com/team/frontend", "sha256:abc", false)
	f.Add("prod", "1.2.2", "1.2.1", "r/x", "", true)
	f.Add("s", "1.0\n\nKropipe-Stage: prod", "2.0", "r/x", "", false)
	f.Add("s", " 1.0 ", "2.0", "r/x", "", false)
	f.Fuzz(func(t *testing.T, stage, old, value, image, digest string, rollback bool) {
		c := Change{Stage: stage, File: "a.yaml", Key: "spec.tag", Image: image, Tag: value, Digest: digest}
		if rollback {
			c.Kind = Rollback
		}
		// As the write path does (gitwrite.go): every change is validated before its message is
		// made, so an empty stage name is refused there, not by message.
		if err := c.validate(); err != nil {
			return
		}
		msg, err := c.message(old)
		if err != nil {
			return
		}
		r, ok, err := recordFrom("abc", time.Time{}, msg)
		if err != nil || !ok || r.Stage != stage || r.Value != value || r.Previous != old || r.Image != c.ImageRef() {
			t.Fatalf("wrote stage %q %q → %q (%s), read back %+v (ok %v, %v)\n%s", stage, old, value, c.ImageRef(), r, ok, err, msg)
		}
		if rollback != (r.Kind == Rollback) || (rollback && r.Rejected != old) {
			t.Fatalf("rollback %v read back as %+v\n%s", rollback, r, msg)
		}
		// A human's message: anything at all.
		_, _, _ = recordFrom("abc", time.Time{}, stage+"\n\n"+old+"\n\n"+value)
	})
}
