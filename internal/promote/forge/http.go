package forge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
)

// httpClient is c.HTTPClient, or one that trusts c.CABundle beside the system's roots and
// gives up on a request after c.Timeout.
func (c Config) httpClient() (*http.Client, error) {
	if c.HTTPClient != nil {
		return c.HTTPClient, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(c.CABundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(c.CABundle) {
			return nil, errors.New("forge CA bundle holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: c.Timeout}, nil
}
