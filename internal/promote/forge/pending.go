package forge

import (
	"errors"
	"net/http"
)

// The clients are being written in parallel branches; each replaces its function here.

func newGitLab(r Repo, c Config, hc *http.Client) (Forge, error) {
	return nil, errors.New("gitlab: not built yet")
}
func newBitbucket(r Repo, c Config, hc *http.Client) (Forge, error) {
	return nil, errors.New("bitbucket: not built yet")
}

// parseGitLabEvent and parseBitbucketEvent read a webhook request from that forge; ok is
// false when the request is not one (its headers say another forge).
func parseGitLabEvent(h http.Header, body []byte, secret string) (ev Event, ok bool, err error) {
	return Event{}, false, nil
}
func parseBitbucketEvent(h http.Header, body []byte, secret string) (ev Event, ok bool, err error) {
	return Event{}, false, nil
}
