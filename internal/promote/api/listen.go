package api

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// ReadToken is the content of the API's token file: the contents of file when one is named,
// else the environment variable KROPIPE_TOKEN (getenv reads it); "" when neither is set. It
// holds one token or "name: token" lines (ParseTokens).
func ReadToken(file string, getenv func(string) string) (string, error) {
	if file == "" {
		return strings.TrimSpace(getenv("KROPIPE_TOKEN")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--token-file %s is empty", file)
	}
	return t, nil
}

// IsLoopback tells whether addr (host:port, the --addr flag) listens only on this machine:
// localhost or a loopback address. Anything else is reachable by others and needs a token.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--addr %q: %w; write host:port such as 127.0.0.1:8080", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}
