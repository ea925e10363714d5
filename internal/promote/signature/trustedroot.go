package signature

import (
	_ "embed" // the public-good trusted root
	"sync"

	"github.com/sigstore/sigstore-go/pkg/root"
)

// publicGoodRoot is the public-good Sigstore trusted_root.json (Fulcio, Rekor, CT log and
// timestamp authority keys) as sigstore-go v1.3.0 ships it (its licence:
// trusted_root_public_good.LICENSE). It is the last fallback of PublicGoodRoot (TUF off,
// unreachable with nothing cached) and the root of a Cosign built without one: it lacks keys
// added since (Rekor v2's log), which the TUF repository's current trusted_root.json has.
//
//go:embed trusted_root_public_good.json
var publicGoodRoot []byte

var publicGood = sync.OnceValues(func() (*root.TrustedRoot, error) {
	return root.NewTrustedRootFromJSON(publicGoodRoot)
})

// trustedRoot parses a trusted_root.json, or returns the public-good root for none.
func trustedRoot(js []byte) (*root.TrustedRoot, error) {
	if len(js) == 0 {
		return publicGood()
	}
	return root.NewTrustedRootFromJSON(js)
}
