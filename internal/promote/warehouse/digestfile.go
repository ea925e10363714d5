package warehouse

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/renameio/v2"
)

// digestFileVersion is the format of WithDigestFile's file; another version is ignored.
const digestFileVersion = 1

type digestFileContent struct {
	Version int `json:"version"`
	// Digests is repository → tag → the sha256 of the manifest the tag pointed to.
	Digests map[string]map[string]string `json:"digests"`
}

// Done ends the pass: with WithDigestFile, the digests proven so far are written out
// when they changed. A failure is logged; it only costs manifest reads after a restart.
func (p *Pass) Done() {
	if err := p.w.saveDigests(); err != nil {
		p.w.log.Warn("keeping the proven digests for the next start failed", "file", p.w.digestFile, "err", err)
	}
}

// loadDigests reads WithDigestFile's file into the known digests and their proofs: each
// was hashed from manifest bytes this warehouse read in an earlier run.
func (w *Warehouse) loadDigests() {
	if w.digestFile == "" {
		return
	}
	b, err := os.ReadFile(w.digestFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var c digestFileContent
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Version != digestFileVersion {
		w.log.Warn("ignoring the proven digests kept from the last run; manifests are read again", "file", w.digestFile, "err", err, "version", c.Version)
		return
	}
	for repo, tags := range c.Digests {
		for tag, d := range tags {
			if validTag.MatchString(tag) && isDigest(d) {
				w.known.put(repo, tag, d)
				w.proofs.put(proofKey{repo, tag, d}, d)
			}
		}
	}
	w.known.mu.Lock()
	w.known.dirty = false
	w.known.mu.Unlock()
}

// saveDigests writes the known digests to WithDigestFile's file (atomically) when they
// changed since the last save.
func (w *Warehouse) saveDigests() error {
	if w.digestFile == "" {
		return nil
	}
	w.known.mu.Lock()
	if !w.known.dirty {
		w.known.mu.Unlock()
		return nil
	}
	c := digestFileContent{Version: digestFileVersion, Digests: make(map[string]map[string]string, len(w.known.m))}
	for repo, tags := range w.known.m {
		c.Digests[repo] = maps.Clone(tags)
	}
	w.known.dirty = false
	w.known.mu.Unlock()
	b, err := json.Marshal(c)
	if err == nil {
		err = renameio.WriteFile(w.digestFile, b, 0o600)
	}
	if err != nil {
		w.known.mu.Lock()
		w.known.dirty = true // try again after the next pass
		w.known.mu.Unlock()
	}
	return err
}

// isDigest reports whether d is a sha256 digest as the warehouse writes them.
func isDigest(d string) bool {
	h, err := v1.NewHash(d)
	return err == nil && h.Algorithm == "sha256"
}
