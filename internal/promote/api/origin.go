package api

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"
)

// WithAllowedHosts adds host names (without port) a state-changing request may
// address in its Host header, besides localhost, loopback addresses and the address
// the connection came in on: e.g. a Service's DNS name when the API is reached
// through it.
func WithAllowedHosts(hosts ...string) Option {
	return func(s *Server) {
		for _, h := range hosts {
			s.allowedHosts[strings.ToLower(h)] = true
		}
	}
}

var crossOrigin = http.NewCrossOriginProtection()

// sameSite refuses a state-changing request a web page could have made: from
// another origin (Origin, Sec-Fetch-Site) or through a name that is not this
// server's (Host; DNS rebinding points a foreign name at 127.0.0.1). A browser on
// the operator's machine reaches a loopback or port-forwarded API without a token,
// so this holds whatever the token setting. The promoter command sends neither
// Origin nor Sec-Fetch-Site and addresses the server by the address it was given.
func (s *Server) sameSite(r *http.Request) error {
	if err := s.checkHost(r); err != nil {
		return err
	}
	// net/http's CrossOriginProtection is the browsers' contract (Sec-Fetch-Site, else
	// Origin against Host); it lets through requests without either, as the CLI sends.
	if err := crossOrigin.Check(r); err != nil {
		return fmt.Errorf("the request came from another origin (Sec-Fetch-Site: %s, Origin: %s, this server: %s): %w",
			r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin"), r.Host, err)
	}
	return nil
}

func (s *Server) checkHost(r *http.Request) error {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return errors.New("the request names no Host")
	}
	if host == "localhost" || s.allowedHosts[host] {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("the request addresses this server as %q, which is neither localhost, an address of it, nor an allowed name (a page using DNS rebinding does this)", r.Host)
	}
	if ip.IsLoopback() {
		return nil
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if tcp, ok := la.(*net.TCPAddr); ok && tcp.IP.Equal(ip) {
			return nil
		}
	}
	return fmt.Errorf("the request addresses this server as %s, which is not the address it listens on", r.Host)
}

// notAForm refuses the content types an HTML form of any site can send without the
// browser asking first (the CORS "simple" ones): the API reads JSON, and a browser old
// enough to send neither Origin nor Sec-Fetch-Site would otherwise let a foreign page's
// form through. The promoter command sends JSON, or no body and no type.
func notAForm(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("refused: Content-Type %q: %w; send application/json", ct, err)
	}
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return fmt.Errorf("refused: Content-Type %s is what a web form sends; the API takes application/json (the pipeline page at / has forms of its own)", mt)
	}
	return nil
}
