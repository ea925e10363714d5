// Package freight holds the record of one image version the warehouse found:
// image, tag, digest and when it was discovered, with an id derived from the content.
package freight

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// StrategyDigest is the selection strategy whose freight is written to Git as its
// digest rather than its tag (see Value).
const StrategyDigest = "digest"

// Freight is what discovery found: one image version, identified by content.
// It is a value: copies are independent and nothing in it changes after discovery.
type Freight struct {
	// Image is the repository without tag or digest, e.g. 127.0.0.1:5000/team/frontend.
	Image string `json:"image"`
	// Tag is the tag the version was found under, e.g. 1.2.2 (or latest for the digest strategy).
	Tag string `json:"tag"`
	// Digest is the manifest (or index) digest the tag pointed to, e.g. sha256:9f86…
	Digest string `json:"digest,omitempty"`
	// DiscoveredAt is when the warehouse saw it. It is not part of ID: finding the
	// same version twice is the same freight.
	DiscoveredAt time.Time `json:"discoveredAt,omitzero"`
}

// ID is a short hex id derived from Image, Tag and Digest (the first 12 hex
// digits of their SHA-256), stable across discoveries and processes, so it can
// be written to Git trailers and compared later.
func (f Freight) ID() string {
	h := sha256.New()
	// Separators keep ("a","bc") and ("ab","c") apart; NUL cannot occur in references.
	h.Write([]byte(f.Image))
	h.Write([]byte{0})
	h.Write([]byte(f.Tag))
	h.Write([]byte{0})
	h.Write([]byte(f.Digest))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Ref is the full reference image:tag@digest; the parts that are empty are left out.
func (f Freight) Ref() string {
	ref := f.Image
	if f.Tag != "" {
		ref += ":" + f.Tag
	}
	if f.Digest != "" {
		ref += "@" + f.Digest
	}
	return ref
}

// Value is the string a promotion writes into Git for this freight: the digest
// for the digest strategy (a mutable tag such as latest says nothing about what
// runs), the tag for every other strategy.
func (f Freight) Value(strategy string) string {
	if strategy == StrategyDigest {
		return f.Digest
	}
	return f.Tag
}

// IsZero reports whether f is the zero Freight, i.e. nothing was found.
func (f Freight) IsZero() bool {
	return f.Image == "" && f.Tag == "" && f.Digest == ""
}

// String returns Ref, so freight reads well in logs.
func (f Freight) String() string { return f.Ref() }
