// Package upstream executes jobs against the portal's one upstream API: it
// applies the security policy, calls the upstream with a shared HTTP client
// and an OAuth2 client-credentials token, retries what may be retried, and
// turns every outcome into exactly one wire.Response.
//
// # Security policy
//
// A refused job is answered with ErrorKind "rejected" (status 403) and the
// upstream is never called.
//
// Target: scheme, host and port come only from upstream.baseURL. The job's
// path is relative to the base path and may not leave it. Refused: dot
// segments ("..", "."), also percent-encoded in any case and up to three
// levels deep (%2e%2e, %2E%2e, %252e%252e) or followed by ";" (..;);
// backslashes, raw or encoded (%5c, %255c); control characters and NUL, raw
// or encoded; "//" anywhere (protocol-relative "//host" and empty segments);
// a leading scheme ("http://...", "javascript:"); a raw "@"; "?" and "#" in
// the path (the query has its own field; fragments are never sent); invalid
// percent-encoding. An empty path means the base path. The query is sent as
// given when it parses and has no control character or "#".
//
// Methods: GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS (case
// sensitive; an empty method means GET). TRACE (the upstream would echo the
// request with the portal's bearer token and API keys), CONNECT and any
// other method are refused.
//
// Job headers:
//   - refused (the job tried to take over the portal's identity or target):
//     Host, Authorization, Cookie, every Proxy-* header except
//     Proxy-Connection, names that are not valid tokens and values with
//     CR, LF, NUL or other control characters;
//   - silently dropped (hop-by-hop or computed by the transport): Connection,
//     Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
//     Content-Length, and every header named in Connection;
//   - silently dropped unless upstream.forwardHeaders lists them: override
//     headers that make proxies and frameworks rewrite the URL or method or
//     trust a made-up client address or host (X-Original-URL,
//     X-Rewrite-URL, X-HTTP-Method-Override, X-HTTP-Method,
//     X-Method-Override, Forwarded, every X-Forwarded-*, X-Real-IP,
//     X-Client-IP, True-Client-IP, ...: overrideHeaders in policy.go);
//   - replaced by the portal: User-Agent (kafkasend-portal), Idempotency-Key
//     (the job ID) and traceparent (the job's Traceparent field, sent only
//     when it is a valid W3C version-00 value).
//
// Static upstream.headers are set after the job's and win over them; they
// may not name Host, hop-by-hop headers, Content-Length, Idempotency-Key or
// traceparent, nor Authorization when OAuth is configured. Header values
// read from files (upstream.headerFiles, mounted Secrets such as API keys)
// follow the same rules and win over both; the files are re-read every 2s
// on a call, a broken update keeps the last good value, and values are never
// logged. The OAuth2 bearer token is set last.
//
// Redirects: not followed by default; the 3xx is returned as the upstream's
// answer. With upstream.followRedirects, at most 5 redirects are followed,
// each only to the base origin (scheme, host and port) and below the base
// path, with the same path rules as a job's; any other redirect makes the
// job rejected.
//
// TLS: certificates are always verified, against the system roots plus
// upstream.caFile; TLS 1.2 or later. The token endpoint uses the same roots.
// HTTP versions (upstream.http2): "auto" uses HTTP/2 when a TLS upstream
// offers it, "always" HTTP/2 only (h2c with prior knowledge to an http://
// upstream), "never" HTTP/1.1; the token endpoint always uses "auto".
//
// Sizes: a request body over upstream.maxRequestBytes is answered
// "too_large" (413) without a call; a response body over
// upstream.maxResponseBytes is answered "too_large" (502) and at most the
// limit plus one byte is held. The request body is sent without a copy and
// dropped once the response status shows that no retry can resend it,
// before the response body is read (requestBody); the response is read
// into a buffer of its Content-Length.
//
// # Timeouts and retries
//
// Each attempt is bounded by timeouts.request and the whole call by the
// job's deadline; a deadline already past is answered "timeout" without a
// call. Attempts are repeated (up to retries.attempts in total, with
// exponential backoff and jitter capped at retries.maxBackoff) for
// connection errors when retries.onConnectionErrors is set and for the
// retries.onStatuses statuses, only for idempotent methods unless
// retries.nonIdempotent is set (429 whatever the method: the upstream did
// not act on the call), and never when the wait would end after the
// deadline. On 429 and 503 a Retry-After (seconds or HTTP date) replaces
// the backoff; a Retry-After over retries.maxRetryAfter (default 60s) is not
// waited for: the answer is returned as it is. Timeouts and certificate
// errors are not retried.
//
// Rate limit: upstream.rateLimit is one token bucket
// (golang.org/x/time/rate) per worker, taken by every attempt, retries
// included. A call waits for it within the job's deadline; when the wait
// would pass the deadline the job is answered "timeout" at once.
//
// A 401 from the upstream discards the token it refused (unless another
// call already replaced it, and at most once per second portal-wide) and
// repeats the call once with the current token, whatever the method (the
// upstream did not act on it). A second 401 is answered with ErrorKind "auth", keeping the
// upstream's status, headers and body for diagnosis. No token at all (token
// endpoint down or refusing the credentials) is answered "auth" (502).
package upstream
