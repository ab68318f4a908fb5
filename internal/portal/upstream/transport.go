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

	"kafkasend.io/kafkasend/internal/portal/config"
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

// NewTransport builds the transport shared by every upstream call and (unless
// http2 is "always") the token endpoint: certificate verification always on
// (system roots plus the optional CA file), TLS 1.2 or later, the HTTP
// versions of upstream.http2 (see protocols), and an idle pool large enough
// that maxInFlight concurrent calls to one host reuse their connections.
// Tools that must call upstreams as the portal does use it too (the bench's
// HTTP relay).
func NewTransport(caFile string, maxInFlight int, http2 string) (*http.Transport, error) {
	pool, err := rootCAs(caFile)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
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
	}
	tr.Protocols = protocols(http2)
	return tr, nil
}

// protocols maps upstream.http2 to the transport's protocols:
//   - "auto" (or empty): HTTP/1.1, and HTTP/2 when a TLS server offers it
//     (ALPN); http:// upstreams get HTTP/1.1.
//   - "always": HTTP/2 only; to an http:// upstream without TLS, with prior
//     knowledge (h2c, RFC 9113 section 3.3). Calls to a server that does not
//     speak it fail as unreachable.
//   - "never": HTTP/1.1 only.
//
// With HTTP/1.1 each call in flight holds a connection of its own, with two
// transport goroutines and a read and a write buffer; HTTP/2 multiplexes up
// to the server's stream limit (often 100 to 250) on one connection.
func protocols(http2 string) *http.Protocols {
	p := new(http.Protocols)
	switch http2 {
	case config.HTTP2Always:
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
	case config.HTTP2Never:
		p.SetHTTP1(true)
	default:
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	}
	return p
}

// tokenTransport is the transport of the token endpoint: the upstream's,
// except that HTTP/2-only ("always") applies to the upstream alone; the
// token endpoint is another server.
func tokenTransport(tr *http.Transport, http2 string) *http.Transport {
	if http2 != config.HTTP2Always {
		return tr
	}
	t := tr.Clone()
	t.Protocols = protocols(config.HTTP2Auto)
	return t
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
