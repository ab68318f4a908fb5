package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// rootCAs returns the system roots plus the PEM certificates of caFile.
func rootCAs(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading upstream.caFile: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream.caFile %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// newTransport builds the one transport shared by every upstream call and
// the token endpoint: certificate verification always on (system roots plus
// the optional CA file), TLS 1.2 or later, HTTP/2 when the server offers it,
// and an idle pool large enough that maxInFlight concurrent calls to one
// host reuse their connections.
func newTransport(caFile string, maxInFlight int) (*http.Transport, error) {
	pool, err := rootCAs(caFile)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          maxInFlight + 8,
		MaxIdleConnsPerHost:   maxInFlight,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The portal relays bytes: the requester's Accept-Encoding goes
		// upstream and the upstream's encoding comes back untouched.
		DisableCompression: true,
	}, nil
}

// isCertificateError reports a TLS verification failure, which retrying
// cannot fix.
func isCertificateError(err error) bool {
	var (
		verr  *tls.CertificateVerificationError
		uerr  x509.UnknownAuthorityError
		herr  x509.HostnameError
		cierr x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cierr)
}
