package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/wait"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/internal/portal/upstream/oauth"
	"kafkasend.io/kafkasend/pkg/wire"
)

// UserAgent is sent on every upstream call unless upstream.headers sets one.
const UserAgent = "kafkasend-portal"

// maxRedirects is how many same-origin redirects are followed.
const maxRedirects = 5

// DefaultMaxRetryAfter caps the Retry-After wait when retries.maxRetryAfter
// is zero.
const DefaultMaxRetryAfter = 60 * time.Second

// Causes of a call's context ending, told apart in error messages.
var (
	errRequestTimeout = errors.New("request timeout")
	errJobDeadline    = errors.New("job deadline")
)

// Observer receives the executor's events; the portal wires it to metrics.
// Implementations must be safe for concurrent use and fast.
type Observer interface {
	// UpstreamDone is called once per Do with the final outcome. method is
	// one of the allowed methods or "OTHER"; status is the response's status.
	UpstreamDone(method string, status int, kind wire.ErrorKind, d time.Duration)
	// UpstreamRetry is called before each repeated attempt; reason is
	// "status", "connection" or "unauthorized".
	UpstreamRetry(method, reason string)
	// TokenRefreshed is called after each request to the token endpoint.
	TokenRefreshed(ok bool)
}

// NopObserver ignores every event.
type NopObserver struct{}

// UpstreamDone implements Observer.
func (NopObserver) UpstreamDone(string, int, wire.ErrorKind, time.Duration) {}

// UpstreamRetry implements Observer.
func (NopObserver) UpstreamRetry(string, string) {}

// TokenRefreshed implements Observer.
func (NopObserver) TokenRefreshed(bool) {}

// TokenSource supplies the shared OAuth2 token. *oauth.Source implements it.
type TokenSource interface {
	// Token returns the current token, fetching one if needed.
	Token(ctx context.Context) (*oauth2.Token, error)
	// Invalidate discards tok if it is still the cached token.
	Invalidate(tok *oauth2.Token)
}

// Options configure an Executor.
type Options struct {
	Upstream config.Upstream
	Retries  config.Retries
	Timeouts config.Timeouts
	// OAuth, when set, authenticates every call with a client-credentials token.
	OAuth *config.OAuth
	// MaxInFlight is the portal's concurrency limit; it sizes the connection
	// pool. Zero means 100.
	MaxInFlight int
	// Observer receives events; nil means NopObserver.
	Observer Observer
	// Log receives diagnostics (never secrets, tokens or bodies).
	Log logr.Logger
	// Transport replaces the transport built from Upstream (tests only: it
	// is used as given, TLS settings included).
	Transport *http.Transport
	// Tokens replaces the token source built from OAuth (tests).
	Tokens TokenSource
	// OAuthTuning holds the token source tunables (EarlyExpiry,
	// RecheckInterval, FailureHoldoff, FetchTimeout); its other fields are
	// ignored. The zero value means the oauth package's defaults.
	OAuthTuning oauth.Options
	// HeaderRecheckInterval is how often upstream.headerFiles are re-read
	// (default DefaultHeaderRecheckInterval; negative: on every attempt).
	HeaderRecheckInterval time.Duration
}

// Executor calls the upstream for jobs. It is safe for concurrent use; one
// Executor serves the whole portal.
type Executor struct {
	base        *base
	up          config.Upstream
	retries     config.Retries
	timeout     time.Duration
	static      http.Header
	files       *fileHeaders
	forward     map[string]bool
	limiter     *rate.Limiter
	maxAfter    time.Duration
	retryStatus map[int]bool
	attempts    int
	transport   *http.Transport
	tokenTr     *http.Transport // the token endpoint's, when not transport
	client      *http.Client
	tokens      TokenSource
	obs         Observer
	log         logr.Logger
}

// New builds an Executor. It fails on configuration errors (base URL, CA
// file, static headers, OAuth settings or credential files).
func New(opts Options) (*Executor, error) {
	b, err := parseBase(opts.Upstream.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("creating upstream executor: %w", err)
	}
	if b.scheme == "http" && !opts.Upstream.AllowInsecureHTTP {
		return nil, errors.New("creating upstream executor: http base URL refused unless allowInsecureHTTP is set")
	}
	if opts.Upstream.MaxRequestBytes <= 0 || opts.Upstream.MaxResponseBytes <= 0 {
		return nil, errors.New("creating upstream executor: maxRequestBytes and maxResponseBytes must be positive")
	}
	oauthOn := opts.OAuth != nil || opts.Tokens != nil
	static, err := staticHeaders(opts.Upstream.Headers, oauthOn)
	if err != nil {
		return nil, fmt.Errorf("creating upstream executor: %w", err)
	}
	forward, err := forwardSet(opts.Upstream.ForwardHeaders)
	if err != nil {
		return nil, fmt.Errorf("creating upstream executor: %w", err)
	}
	files, err := newFileHeaders(opts.Upstream.HeaderFiles, oauthOn, opts.HeaderRecheckInterval, opts.Log.WithName("header-files"))
	if err != nil {
		return nil, fmt.Errorf("creating upstream executor: %w", err)
	}
	limiter, err := newLimiter(opts.Upstream.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("creating upstream executor: %w", err)
	}
	maxAfter := opts.Retries.MaxRetryAfter.Duration
	if maxAfter == 0 {
		maxAfter = DefaultMaxRetryAfter
	}
	maxInFlight := opts.MaxInFlight
	if maxInFlight <= 0 {
		maxInFlight = 100
	}
	tr := opts.Transport
	if tr == nil {
		if tr, err = NewTransport(opts.Upstream.CAFile, maxInFlight, opts.Upstream.HTTP2); err != nil {
			return nil, fmt.Errorf("creating upstream executor: %w", err)
		}
	}
	e := &Executor{
		base:        b,
		up:          opts.Upstream,
		retries:     opts.Retries,
		timeout:     opts.Timeouts.Request.Duration,
		static:      static,
		files:       files,
		forward:     forward,
		limiter:     limiter,
		maxAfter:    maxAfter,
		retryStatus: map[int]bool{},
		attempts:    max(opts.Retries.Attempts, 1),
		transport:   tr,
		tokens:      opts.Tokens,
		obs:         opts.Observer,
		log:         opts.Log,
	}
	if e.obs == nil {
		e.obs = NopObserver{}
	}
	for _, s := range opts.Retries.OnStatuses {
		e.retryStatus[s] = true
	}
	e.client = &http.Client{Transport: tr, CheckRedirect: e.checkRedirect}
	if e.tokens == nil && opts.OAuth != nil {
		o := opts.OAuthTuning
		o.Config = *opts.OAuth
		o.Log = opts.Log.WithName("oauth")
		o.OnFetch = e.obs.TokenRefreshed
		// The token endpoint shares the transport (and so the CA setup) but
		// never follows redirects: a 307 would re-send the client secret.
		tokTr := tr
		if opts.Transport == nil {
			tokTr = tokenTransport(tr, opts.Upstream.HTTP2)
		}
		if tokTr != tr {
			e.tokenTr = tokTr
		}
		o.HTTPClient = &http.Client{
			Transport:     tokTr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		src, err := oauth.New(o)
		if err != nil {
			return nil, fmt.Errorf("creating upstream executor: %w", err)
		}
		e.tokens = src
	}
	return e, nil
}

// staticHeaders validates upstream.headers: they may not set what the portal
// computes or what is hop-by-hop, nor Authorization when OAuth is on.
func staticHeaders(h map[string]string, oauthOn bool) (http.Header, error) {
	out := http.Header{}
	for k, v := range h {
		if err := checkConfiguredHeaderName("upstream.headers", k, oauthOn); err != nil {
			return nil, err
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fmt.Errorf("upstream.headers: invalid value for %q", truncate(k, 64))
		}
		out.Set(k, v)
	}
	return out, nil
}

// checkConfiguredHeaderName applies the rules of upstream.headers and
// upstream.headerFiles names (field names the setting in errors).
func checkConfiguredHeaderName(field, k string, oauthOn bool) error {
	if !httpguts.ValidHeaderFieldName(k) {
		return fmt.Errorf("%s: invalid header %q", field, truncate(k, 64))
	}
	ck := http.CanonicalHeaderKey(k)
	switch {
	case ck == "Host" || droppedHeaders[ck] || ck == "Idempotency-Key" || ck == "Traceparent":
		return fmt.Errorf("%s: %s is set by the portal and may not be configured", field, ck)
	case ck == "Authorization" && oauthOn:
		return fmt.Errorf("%s: Authorization conflicts with oauth", field)
	}
	return nil
}

// newLimiter builds the worker's one limiter of upstream calls; nil when
// there is no rate limit.
func newLimiter(rl *config.RateLimit) (*rate.Limiter, error) {
	if rl == nil {
		return nil, nil
	}
	if rl.RequestsPerSecond <= 0 || rl.Burst < 0 {
		return nil, errors.New("upstream.rateLimit: requestsPerSecond must be positive and burst not negative")
	}
	burst := rl.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(rl.RequestsPerSecond)))
	}
	return rate.NewLimiter(rate.Limit(rl.RequestsPerSecond), burst), nil
}

// Close releases idle connections.
func (e *Executor) Close() {
	e.transport.CloseIdleConnections()
	if e.tokenTr != nil {
		e.tokenTr.CloseIdleConnections()
	}
}

// call is a validated job, ready to send.
type call struct {
	id     string
	method string
	// url is shared by the attempts' requests (net/http does not change it).
	url    *url.URL
	header http.Header
	body   *requestBody
	// replayable: the method may be repeated after a failure whose effect
	// is unknown (idempotent, or retries.nonIdempotent).
	replayable bool
}

// Do executes one job against the upstream and always returns a response:
// the upstream's answer, or an error response whose ErrorKind says why there
// is none. It never panics and never returns nil.
//
// Do takes r.Body: it sets r.Body to nil and drops its own reference as soon
// as no further attempt can send it (see requestBody), so that a large
// request payload can be freed while the response is read. Callers must not
// keep other references to the body (or the payload it aliases) during the
// call if they want that memory back early.
func (e *Executor) Do(ctx context.Context, r *wire.Request) (resp *wire.Response) {
	start := time.Now()
	var id, method string
	if r != nil {
		id, method = r.ID, r.Method
	}
	defer e.observe(&resp, id, method, start)
	if r == nil {
		return errorResponse("", wire.ErrorInternal, http.StatusInternalServerError, "no request to execute")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	c, early := e.begin(r)
	if early != nil {
		return early
	}
	if !r.Deadline.IsZero() {
		if !time.Now().Before(r.Deadline) {
			return errorResponse(id, wire.ErrorTimeout, http.StatusGatewayTimeout, "the job deadline had passed before the call")
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, r.Deadline, errJobDeadline)
		defer cancel()
	}
	if ctx.Err() != nil {
		return contextResponse(id, ctx, e.timeout)
	}
	return e.execute(ctx, c)
}

// observe is Do's deferred end: it turns a panic into an internal error
// and reports the outcome.
func (e *Executor) observe(resp **wire.Response, id, method string, start time.Time) {
	if p := recover(); p != nil {
		e.log.Error(fmt.Errorf("panic: %v", p), "Upstream call failed unexpectedly", "job", id)
		*resp = errorResponse(id, wire.ErrorInternal, http.StatusInternalServerError, "internal error while calling the upstream")
	}
	e.obs.UpstreamDone(metricMethod(method), (*resp).Status, (*resp).ErrorKind, time.Since(start))
}

// begin applies the policy and the size limit: it returns the call, or the
// job's answer when there is to be no call. From here on the call holds the
// body, not r.
func (e *Executor) begin(r *wire.Request) (*call, *wire.Response) {
	c, refusal := e.prepare(r)
	if refusal != nil {
		e.log.V(1).Info("Refused a job", "job", r.ID, "reason", refusal.Reason)
		return nil, errorResponse(r.ID, wire.ErrorRejected, http.StatusForbidden, refusal.Error())
	}
	r.Body = nil
	if c.body.size > e.up.MaxRequestBytes {
		return nil, errorResponse(r.ID, wire.ErrorTooLarge, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", c.body.size, e.up.MaxRequestBytes))
	}
	return c, nil
}

// prepare applies the security policy and builds the call.
func (e *Executor) prepare(r *wire.Request) (*call, *Refusal) {
	method, refusal := checkMethod(r.Method)
	if refusal != nil {
		return nil, refusal
	}
	u, refusal := e.base.resolve(r.Path, r.RawQuery)
	if refusal != nil {
		return nil, refusal
	}
	h, refusal := checkHeaders(r.Header, e.forward)
	if refusal != nil {
		return nil, refusal
	}
	h.Set("User-Agent", UserAgent)
	if r.ID != "" {
		if !httpguts.ValidHeaderFieldValue(r.ID) {
			return nil, refuse("job ID is not a valid header value")
		}
		h.Set("Idempotency-Key", r.ID)
	}
	if validTraceparent(r.Traceparent) {
		h.Set("Traceparent", r.Traceparent)
	}
	for k, v := range e.static {
		h[k] = append([]string(nil), v...)
	}
	return &call{
		id: r.ID, method: method, url: u, header: h, body: newRequestBody(r.Body),
		replayable: e.retries.NonIdempotent || idempotentMethods[method],
	}, nil
}

// outcome is the result of one attempt.
type outcome struct {
	resp *wire.Response
	// retry is why the attempt may be repeated ("status", "connection"),
	// empty when it may not.
	retry      string
	retryAfter time.Duration
	// unauthorized marks a 401 answered to token.
	unauthorized bool
	token        *oauth2.Token
}

// execute runs attempts until one is final, the attempts are used up or the
// next backoff would end after the deadline. Its frame, attempt's and Do's
// are on the stack of every call in flight while it waits for the
// upstream, so the work around the wait is done in helpers (next,
// finishAttempt), whose frames are not.
func (e *Executor) execute(ctx context.Context, c *call) *wire.Response {
	st := attemptState{attempt: 1, backoff: wait.Backoff{
		Duration: e.retries.Backoff.Duration,
		Factor:   2,
		Jitter:   0.2,
		Steps:    e.attempts,
		Cap:      e.retries.MaxBackoff.Duration,
	}}
	for {
		out := e.attempt(ctx, c, &st)
		if resp := e.next(ctx, c, &st, &out); resp != nil {
			return resp
		}
	}
}

// next decides after an attempt: it returns the call's answer, or nil once
// it has waited for the next attempt.
func (e *Executor) next(ctx context.Context, c *call, st *attemptState, out *outcome) *wire.Response {
	if out.unauthorized && e.tokens != nil {
		// A 401 means the upstream did not act on the call, so it is
		// repeated once with a fresh token whatever the method.
		if !st.authRetried && ctx.Err() == nil {
			st.authRetried = true
			e.tokens.Invalidate(out.token)
			e.obs.UpstreamRetry(metricMethod(c.method), "unauthorized")
			return nil
		}
		out.resp.ErrorKind = wire.ErrorAuth
		out.resp.ErrorMessage = "the upstream refused the OAuth2 token twice (401), also after a refresh"
		return out.resp
	}
	// A 429 says the upstream did not act on the call: repeated
	// whatever the method, like a 401.
	if out.retry == "" || !(c.replayable || out.resp.Status == http.StatusTooManyRequests) || st.attempt >= e.attempts {
		return out.resp
	}
	delay := st.backoff.Step()
	if mb := e.retries.MaxBackoff.Duration; mb > 0 && delay > mb {
		delay = mb
	}
	if out.retryAfter > 0 {
		// The server's delay, not the backoff; longer than the cap:
		// its answer is the job's.
		if out.retryAfter > e.maxAfter {
			e.log.V(1).Info("Not retrying: Retry-After over retries.maxRetryAfter", "job", c.id,
				"status", out.resp.Status, "retryAfter", out.retryAfter, "maxRetryAfter", e.maxAfter)
			return out.resp
		}
		delay = out.retryAfter
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
		return out.resp
	}
	t := time.NewTimer(delay)
	select {
	case <-ctx.Done():
		t.Stop()
		return out.resp
	case <-t.C:
	}
	st.attempt++
	e.obs.UpstreamRetry(metricMethod(c.method), out.retry)
	e.log.V(1).Info("Retrying an upstream call", "job", c.id, "attempt", st.attempt, "reason", out.retry, "status", out.resp.Status)
	return nil
}

// attemptState is where execute is in its loop of attempts.
type attemptState struct {
	attempt     int  // 1 for the first
	authRetried bool // the call was repeated after a 401 already
	backoff     wait.Backoff
}

// mayRepeat reports whether an attempt whose response has status may be
// followed by another one, which would send the body again: execute's rules,
// decided from the status alone, before the response body is read. A
// failure reading that body counts as a connection error.
func (e *Executor) mayRepeat(c *call, st *attemptState, status int, unauthorized bool) bool {
	if unauthorized && e.tokens != nil {
		return !st.authRetried
	}
	if st.attempt >= e.attempts {
		return false
	}
	if e.retryStatus[status] && (c.replayable || status == http.StatusTooManyRequests) {
		return true
	}
	return e.retries.OnConnectionErrors && c.replayable
}

// attempt sends the call once. Its frame is on the stack while the call
// waits for the upstream: the work before and after is in helpers.
func (e *Executor) attempt(ctx context.Context, c *call, st *attemptState) outcome {
	if e.limiter != nil {
		if out, ok := e.waitLimiter(ctx, c); !ok {
			return out
		}
	}
	if e.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, e.timeout, errRequestTimeout)
		defer cancel()
	}
	req, tok, failed := e.startAttempt(ctx, c)
	if failed != nil {
		return outcome{resp: failed}
	}
	res, err := e.roundTrip(req)
	if err != nil {
		return e.transportFailure(ctx, c.id, err)
	}
	defer func() { _ = res.Body.Close() }()
	return e.finishAttempt(ctx, c, st, res, tok)
}

// waitLimiter waits for the rate limiter; ok is false when the call may not
// be made, with its answer.
func (e *Executor) waitLimiter(ctx context.Context, c *call) (out outcome, ok bool) {
	// Within the job's context (its deadline), not the request timeout:
	// waiting for the limiter is not the upstream's time.
	if err := e.limiter.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return outcome{resp: contextResponse(c.id, ctx, e.timeout)}, false
		}
		return outcome{resp: errorResponse(c.id, wire.ErrorTimeout, http.StatusGatewayTimeout,
			fmt.Sprintf("the upstream rate limit (%g requests/s) leaves no room for the call before the job deadline", float64(e.limiter.Limit())))}, false
	}
	return outcome{}, true
}

// startAttempt builds the attempt's request with its token; failed is the
// call's answer when that is not possible.
func (e *Executor) startAttempt(ctx context.Context, c *call) (req *http.Request, tok *oauth2.Token, failed *wire.Response) {
	req, err := e.newRequest(ctx, c)
	if err != nil {
		return nil, nil, errorResponse(c.id, wire.ErrorInternal, http.StatusInternalServerError,
			fmt.Sprintf("building the upstream request: %v", err))
	}
	if e.tokens != nil {
		tok, err = e.tokens.Token(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, contextResponse(c.id, ctx, e.timeout)
			}
			return nil, nil, errorResponse(c.id, wire.ErrorAuth, http.StatusBadGateway,
				fmt.Sprintf("no OAuth2 token for the upstream: %v", err))
		}
		tok.SetAuthHeader(req)
	}
	return req, tok, nil
}

// finishAttempt reads the upstream's answer to an attempt.
func (e *Executor) finishAttempt(ctx context.Context, c *call, st *attemptState, res *http.Response, tok *oauth2.Token) outcome {
	unauthorized := res.StatusCode == http.StatusUnauthorized && tok != nil
	if !e.mayRepeat(c, st, res.StatusCode, unauthorized) {
		// No later attempt needs the body: let it go before the response
		// is read, so that request and response are not held together.
		c.body.release()
	}
	limit := e.up.MaxResponseBytes
	if res.ContentLength > limit {
		return outcome{resp: responseTooLarge(c.id, limit)}
	}
	body, err := readBody(res, limit)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{resp: contextResponse(c.id, ctx, e.timeout)}
		}
		return e.connectionFailure(c.id, fmt.Sprintf("reading the upstream response body: %v", unwrapURLError(err)))
	}
	if int64(len(body)) > limit {
		return outcome{resp: responseTooLarge(c.id, limit)}
	}
	out := outcome{
		resp: &wire.Response{
			ID:     c.id,
			Status: res.StatusCode,
			Header: responseHeaders(res.Header),
			Body:   body,
		},
		token:        tok,
		unauthorized: unauthorized,
	}
	if e.retryStatus[res.StatusCode] {
		out.retry = "status"
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable {
			out.retryAfter = parseRetryAfter(res.Header.Get("Retry-After"))
		}
	}
	return out
}

// newRequest builds one attempt's request: the call's URL (parsed and
// checked by prepare, not parsed again) and body (not copied), and its
// headers. An attempt that adds headers of its own (header files; the token
// is added by attempt) gets a copy of the call's headers; otherwise the
// attempts share them, as net/http only reads them. Calls in flight hold
// their requests, so every byte here is multiplied by them.
func (e *Executor) newRequest(ctx context.Context, c *call) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, c.method, "", nil)
	if err != nil {
		return nil, err
	}
	req.URL, req.Host = c.url, c.url.Host
	if err := c.body.attach(req); err != nil {
		return nil, err
	}
	req.Header = c.header
	if e.files != nil || e.tokens != nil {
		req.Header = c.header.Clone()
	}
	if e.files != nil {
		for k, v := range e.files.current() {
			req.Header[k] = append([]string(nil), v...)
		}
	}
	return req, nil
}

// transportFailure classifies an error from http.Client.Do.
func (e *Executor) transportFailure(ctx context.Context, id string, err error) outcome {
	var refusal *Refusal
	switch {
	case ctx.Err() != nil:
		return outcome{resp: contextResponse(id, ctx, e.timeout)}
	case errors.As(err, &refusal):
		e.log.V(1).Info("Refused an upstream redirect", "job", id, "reason", refusal.Reason)
		return outcome{resp: errorResponse(id, wire.ErrorRejected, http.StatusForbidden, refusal.Error())}
	case isCertificateError(err):
		return outcome{resp: errorResponse(id, wire.ErrorUnreachable, http.StatusBadGateway,
			fmt.Sprintf("TLS verification of the upstream failed: %v", unwrapURLError(err)))}
	default:
		return e.connectionFailure(id, fmt.Sprintf("calling the upstream: %v", unwrapURLError(err)))
	}
}

func (e *Executor) connectionFailure(id, msg string) outcome {
	out := outcome{resp: errorResponse(id, wire.ErrorUnreachable, http.StatusBadGateway, msg)}
	if e.retries.OnConnectionErrors {
		out.retry = "connection"
	}
	return out
}

// checkRedirect is the client's redirect policy: by default the 3xx is the
// answer; with followRedirects, up to maxRedirects same-origin redirects
// under the base path are followed and any other is refused.
func (e *Executor) checkRedirect(req *http.Request, via []*http.Request) error {
	if !e.up.FollowRedirects {
		return http.ErrUseLastResponse
	}
	if len(via) > maxRedirects {
		return refuse("more than %d redirects", maxRedirects)
	}
	if r := e.base.checkRedirectTarget(req.URL); r != nil {
		return r
	}
	return nil
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or invalid.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// unwrapURLError drops url.Error's method and URL (the job's path and query
// need not be repeated in messages).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// errorResponse is a response without the upstream's answer. Status is a
// gateway-style status for requesters that only look at the status:
// rejected 403, request too large 413, timeout 504, unreachable, response
// too large and auth 502, internal 500.
func errorResponse(id string, kind wire.ErrorKind, status int, msg string) *wire.Response {
	return &wire.Response{ID: id, Status: status, Header: http.Header{}, ErrorKind: kind, ErrorMessage: msg}
}

func responseTooLarge(id string, limit int64) *wire.Response {
	return errorResponse(id, wire.ErrorTooLarge, http.StatusBadGateway,
		fmt.Sprintf("the upstream response body is over the limit of %d bytes", limit))
}

// contextResponse answers a call whose context ended.
func contextResponse(id string, ctx context.Context, requestTimeout time.Duration) *wire.Response {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errRequestTimeout):
		return errorResponse(id, wire.ErrorTimeout, http.StatusGatewayTimeout,
			fmt.Sprintf("no complete upstream answer within the request timeout of %s", requestTimeout))
	case errors.Is(cause, errJobDeadline):
		return errorResponse(id, wire.ErrorTimeout, http.StatusGatewayTimeout, "the job deadline passed during the call")
	case errors.Is(cause, context.DeadlineExceeded):
		return errorResponse(id, wire.ErrorTimeout, http.StatusGatewayTimeout, "the call's deadline passed")
	default:
		return errorResponse(id, wire.ErrorInternal, http.StatusInternalServerError,
			fmt.Sprintf("the call was cancelled: %v", cause))
	}
}

// readBody reads at most limit+1 bytes of a response body. A declared
// Content-Length is read into a buffer of exactly that size (one allocation,
// no doubling while looking for the end); a body longer than declared is
// reported by length, so that the caller refuses it as too large.
func readBody(res *http.Response, limit int64) ([]byte, error) {
	if res.Body == http.NoBody || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified ||
		(res.Request != nil && res.Request.Method == http.MethodHead) {
		return nil, nil // Content-Length, if any, describes no body here
	}
	if n := res.ContentLength; n >= 0 && n <= limit {
		body := make([]byte, n)
		if _, err := io.ReadFull(res.Body, body); err != nil {
			return nil, err
		}
		var extra [1]byte
		if m, _ := res.Body.Read(extra[:]); m > 0 {
			return append(body, extra[0]), nil
		}
		return body, nil
	}
	// Unknown length (chunked encoding): read blocks of growing size and
	// join them once, so that the peak is about twice the body rather than
	// the three times of a doubling buffer.
	lr := io.LimitReader(res.Body, limit+1)
	var blocks [][]byte
	total, size := 0, 64<<10
	for {
		b := make([]byte, size)
		n, err := io.ReadFull(lr, b)
		if n > 0 {
			blocks = append(blocks, b[:n])
			total += n
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
		size = min(size*2, 4<<20)
	}
	if len(blocks) == 1 {
		return blocks[0], nil
	}
	body := make([]byte, 0, total)
	for _, b := range blocks {
		body = append(body, b...)
	}
	if total >= returnMemoryAbove {
		// The blocks are garbage now (nothing uses them after the join):
		// collect them before the answer is produced, as for a released
		// request body.
		returnMemory()
	}
	return body, nil
}

// roundTrip sends req: through the client, which follows redirects, when
// upstream.followRedirects is set, else straight to the transport (the
// client would only return the 3xx as it is).
func (e *Executor) roundTrip(req *http.Request) (*http.Response, error) {
	if e.up.FollowRedirects {
		return e.client.Do(req)
	}
	return e.transport.RoundTrip(req)
}
