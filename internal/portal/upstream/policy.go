package upstream

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Refusal is a job refused by the portal's security policy. The upstream is
// never called for a refused job; the job is answered with wire.ErrorRejected.
type Refusal struct {
	// Reason says in one line what was refused and why.
	Reason string
}

// Error implements error.
func (r *Refusal) Error() string { return "refused by policy: " + r.Reason }

func refuse(format string, args ...any) *Refusal {
	return &Refusal{Reason: fmt.Sprintf(format, args...)}
}

// allowedMethods are the methods a job may use. TRACE, CONNECT and
// extension methods are refused.
var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// idempotentMethods are retried without retries.nonIdempotent (RFC 9110 9.2.2).
var idempotentMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true,
	http.MethodPut: true, http.MethodDelete: true,
}

// checkMethod returns the method to send. An empty method means GET, as in
// net/http; anything outside allowedMethods (methods are case-sensitive) is
// refused.
func checkMethod(m string) (string, *Refusal) {
	if m == "" {
		return http.MethodGet, nil
	}
	if !allowedMethods[m] {
		switch {
		case len(m) > 32 || !httpguts.ValidHeaderFieldName(m):
			return "", refuse("method is not a valid token")
		case m == http.MethodTrace:
			// RFC 9110 9.3.8: the upstream echoes the request it received,
			// which carries the portal's bearer token and API key headers.
			return "", refuse("method TRACE is not allowed: the upstream would echo the portal's credentials")
		case m == http.MethodConnect:
			return "", refuse("method CONNECT is not allowed: the portal calls its upstream, it does not tunnel")
		}
		return "", refuse("method %s is not allowed", m)
	}
	return m, nil
}

// metricMethod bounds the method label's cardinality.
func metricMethod(m string) string {
	if m == "" {
		return http.MethodGet
	}
	if allowedMethods[m] {
		return m
	}
	return "OTHER"
}

// schemePrefix matches a URI scheme at the start of a path ("http:", "javascript:").
var schemePrefix = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*:`)

// maxDecodeRounds is how many times a path is percent-decoded while looking
// for hidden dot segments, backslashes and control characters (catches
// double and triple encoding such as %252e).
const maxDecodeRounds = 3

// checkPathSyntax refuses a job path (relative to the base path, with or
// without a leading slash) that could leave the base path or reinterpret the
// URL. It works on the escaped form as received.
func checkPathSyntax(p string) *Refusal {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return refuse("path contains a control character")
		case c == '\\':
			return refuse("path contains a backslash")
		case c == '#':
			return refuse("path contains a fragment")
		case c == '?':
			return refuse("path contains '?': the query goes in the query field")
		case c == '@':
			return refuse("path contains '@'")
		}
	}
	if strings.Contains(p, "//") {
		return refuse("path contains an empty segment ('//')")
	}
	if schemePrefix.MatchString(p) {
		return refuse("path is an absolute URL or starts with a scheme")
	}
	cur := p
	for round := 0; round < maxDecodeRounds; round++ {
		if r := checkSegments(cur); r != nil {
			return r
		}
		dec, err := url.PathUnescape(cur)
		if err != nil {
			if round == 0 {
				return refuse("path has an invalid percent-encoding")
			}
			// A literal '%' decoded from %25 that does not start an
			// escape is data, not an encoding trick.
			return nil
		}
		if dec == cur {
			return nil
		}
		for i := 0; i < len(dec); i++ {
			c := dec[i]
			switch {
			case c < 0x20 || c == 0x7f:
				return refuse("path contains an encoded control character")
			case c == '\\':
				return refuse("path contains an encoded backslash")
			}
		}
		cur = dec
	}
	return checkSegments(cur)
}

// checkSegments refuses dot segments ("." and "..", also with a ';'
// parameter as some servers strip it).
func checkSegments(p string) *Refusal {
	for _, seg := range strings.Split(p, "/") {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		if seg == "." || seg == ".." {
			return refuse("path contains a dot segment (plain or encoded)")
		}
	}
	return nil
}

// checkQuery refuses a raw query that has control characters, a fragment or
// does not parse; an accepted query is sent exactly as given.
func checkQuery(q string) *Refusal {
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return refuse("query contains a control character")
		case c == '#':
			return refuse("query contains a fragment")
		}
	}
	if _, err := url.ParseQuery(q); err != nil {
		return refuse("query does not parse: %v", err)
	}
	return nil
}

// base is the parsed upstream base URL.
type base struct {
	scheme, host string // host includes a non-default port as configured
	hostname     string // lower case
	port         string // explicit or the scheme's default
	// rawPath is the escaped base path without a trailing slash ("" for root).
	rawPath string
	// path is the decoded base path without a trailing slash.
	path string
	// configured is the escaped base path exactly as configured ("" → "/").
	configured string
}

func parseBase(raw string) (*base, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing upstream.baseURL: %w", err)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("upstream.baseURL must be an absolute http(s) URL, got %q", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("upstream.baseURL must not carry user info, query or fragment")
	}
	b := &base{
		scheme:     strings.ToLower(u.Scheme),
		host:       u.Host,
		hostname:   strings.ToLower(u.Hostname()),
		port:       portOrDefault(u),
		rawPath:    strings.TrimRight(u.EscapedPath(), "/"),
		path:       strings.TrimRight(u.Path, "/"),
		configured: u.EscapedPath(),
	}
	if b.configured == "" {
		b.configured = "/"
	}
	return b, nil
}

func portOrDefault(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// sameOrigin reports whether u has the base's scheme, host and port.
func (b *base) sameOrigin(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, b.scheme) &&
		strings.EqualFold(u.Hostname(), b.hostname) &&
		portOrDefault(u) == b.port
}

// underBase reports whether a decoded path is the base path or below it.
func (b *base) underBase(p string) bool {
	if b.path == "" {
		return strings.HasPrefix(p, "/")
	}
	return p == b.path || strings.HasPrefix(p, b.path+"/")
}

// resolve builds the upstream URL of a job path and query, or refuses it.
func (b *base) resolve(jobPath, rawQuery string) (*url.URL, *Refusal) {
	if r := checkPathSyntax(jobPath); r != nil {
		return nil, r
	}
	if r := checkQuery(rawQuery); r != nil {
		return nil, r
	}
	rawPath := b.configured
	if jobPath != "" {
		rawPath = b.rawPath + "/" + strings.TrimPrefix(jobPath, "/")
	}
	u, err := url.Parse(b.scheme + "://" + b.host + rawPath)
	if err != nil {
		return nil, refuse("path does not form a valid URL")
	}
	// Defence in depth: whatever the checks above missed, the parsed URL
	// must still point at the base origin and below the base path.
	if u.User != nil || u.Host != b.host || !b.sameOrigin(u) || u.RawQuery != "" || u.Fragment != "" {
		return nil, refuse("path changes the target of the call")
	}
	if !b.underBase(u.Path) {
		return nil, refuse("path leaves the base path")
	}
	u.RawQuery = rawQuery
	return u, nil
}

// checkRedirectTarget allows a redirect only to the base origin and below
// the base path.
func (b *base) checkRedirectTarget(u *url.URL) *Refusal {
	if !b.sameOrigin(u) || u.User != nil {
		return refuse("redirect to another origin (%s://%s)", u.Scheme, u.Host)
	}
	if r := checkPathSyntax(u.EscapedPath()); r != nil {
		return refuse("redirect target: %s", r.Reason)
	}
	if !b.underBase(u.Path) {
		return refuse("redirect target leaves the base path")
	}
	return nil
}

// Header names handled by the policy (canonical form).
var (
	// refusedHeaders would let a job take over the portal's identity or
	// target: the job is refused.
	refusedHeaders = map[string]bool{
		"Host": true, "Authorization": true, "Cookie": true,
	}
	// droppedHeaders are hop-by-hop or computed by the portal: silently
	// removed from the job's headers.
	droppedHeaders = map[string]bool{
		"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
		"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	}
	// portalHeaders are set by the portal; a job's value is replaced.
	portalHeaders = map[string]bool{
		"Idempotency-Key": true, "Traceparent": true, "User-Agent": true,
	}
	// overrideHeaders make proxies, gateways and frameworks behind the
	// upstream's address reinterpret a request: rewrite its URL or method,
	// or trust a client address or original host the job made up. They are
	// dropped unless upstream.forwardHeaders lists them; so is every header
	// starting with overridePrefix (X-Forwarded-For, -Host, -Proto, -Port,
	// -Prefix, -Server, -Uri, -Path, ...).
	overrideHeaders = map[string]bool{
		// URL and path rewriting
		"X-Original-Url": true, "X-Rewrite-Url": true, "X-Override-Url": true, "X-Original-Uri": true,
		"X-Envoy-Original-Path": true,
		// method overriding
		"X-Http-Method-Override": true, "X-Http-Method": true, "X-Method-Override": true,
		// forwarding and original host
		"Forwarded": true, "X-Forwarded": true, "X-Host": true, "X-Original-Host": true,
		"X-Original-Forwarded-For": true,
		// client address
		"X-Real-Ip": true, "X-Client-Ip": true, "True-Client-Ip": true, "X-Proxyuser-Ip": true,
		"X-Originating-Ip": true, "X-Remote-Ip": true, "X-Remote-Addr": true, "X-Cluster-Client-Ip": true,
		"Client-Ip": true, "Cf-Connecting-Ip": true, "Fastly-Client-Ip": true,
	}
)

// overridePrefix starts a family of override headers (canonical form).
const overridePrefix = "X-Forwarded-"

// isOverrideHeader reports whether a canonical header name is an override
// header.
func isOverrideHeader(ck string) bool {
	return overrideHeaders[ck] || strings.HasPrefix(ck, overridePrefix)
}

// forwardSet is the canonical form of upstream.forwardHeaders.
func forwardSet(names []string) (map[string]bool, error) {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		if !httpguts.ValidHeaderFieldName(n) {
			return nil, fmt.Errorf("upstream.forwardHeaders: %q is not a valid header name", truncate(n, 64))
		}
		out[http.CanonicalHeaderKey(n)] = true
	}
	return out, nil
}

// checkHeaders validates a job's headers and returns the ones to forward.
// It refuses invalid names or values (CR, LF, NUL...), Host, Authorization,
// Cookie and Proxy-* (except the hop-by-hop Proxy-Connection); it drops
// hop-by-hop headers, Content-Length, every header named in Connection and
// the override headers that forward (canonical names) does not list.
func checkHeaders(h http.Header, forward map[string]bool) (http.Header, *Refusal) {
	out := make(http.Header, len(h))
	listed := map[string]bool{}
	for k, vs := range h {
		if http.CanonicalHeaderKey(k) != "Connection" {
			continue
		}
		for _, v := range vs {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					listed[http.CanonicalHeaderKey(name)] = true
				}
			}
		}
	}
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, refuse("header name %q is not a valid token", truncate(k, 64))
		}
		ck := http.CanonicalHeaderKey(k)
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, refuse("header %s has a value with a control character (CR, LF, NUL...)", ck)
			}
		}
		if refusedHeaders[ck] || (strings.HasPrefix(ck, "Proxy-") && ck != "Proxy-Connection") {
			return nil, refuse("header %s may not be set by a job", ck)
		}
		if droppedHeaders[ck] || portalHeaders[ck] || listed[ck] || (isOverrideHeader(ck) && !forward[ck]) {
			continue
		}
		out[ck] = append(out[ck], vs...)
	}
	return out, nil
}

// hopByHop lists the response headers that are not copied back to the requester.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te",
	"Trailer", "Transfer-Encoding", "Upgrade",
}

// responseHeaders copies an upstream response's headers minus hop-by-hop
// ones and those named in its Connection header.
func responseHeaders(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		return http.Header{}
	}
	for _, v := range out.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				out.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		out.Del(name)
	}
	return out
}

// traceparentRE is the W3C trace-context version 00 traceparent.
var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// validTraceparent reports whether tp is a syntactically valid version-00
// traceparent with non-zero trace and parent IDs.
func validTraceparent(tp string) bool {
	if !traceparentRE.MatchString(tp) {
		return false
	}
	return tp[3:35] != strings.Repeat("0", 32) && tp[36:52] != strings.Repeat("0", 16)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
