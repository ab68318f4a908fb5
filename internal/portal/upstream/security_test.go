package upstream_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"kafkasend.io/kafkasend/internal/portal/upstream"
	"kafkasend.io/kafkasend/pkg/wire"
)

func TestRefusedJobsNeverReachTheUpstream(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok)
	e := newExecutor(t, baseOptions(up.URL+"/api/v1"))

	get := func(path string) wire.Request { return wire.Request{ID: "j", Method: "GET", Path: path} }
	withQuery := func(q string) wire.Request { return wire.Request{ID: "j", Method: "GET", Path: "x", RawQuery: q} }
	withHeader := func(k, v string) wire.Request {
		return wire.Request{ID: "j", Method: "GET", Path: "x", Header: http.Header{k: {v}}}
	}
	withMethod := func(m string) wire.Request { return wire.Request{ID: "j", Method: m, Path: "x"} }

	cases := map[string]wire.Request{
		"dot-dot":                      get("../admin"),
		"dot-dot in the middle":        get("a/../../admin"),
		"dot-dot at the end":           get("a/.."),
		"single dot":                   get("./x"),
		"encoded dot-dot lower":        get("%2e%2e/admin"),
		"encoded dot-dot mixed case":   get("%2E%2e/admin"),
		"half-encoded dot-dot":         get(".%2e/admin"),
		"double-encoded dot-dot":       get("%252e%252e/admin"),
		"double-encoded upper, nested": get("a/%252E%252E/%252E%252E/admin"),
		"triple-encoded dot-dot":       get("%25252e%25252e/admin"),
		"dot-dot with path parameter":  get("..;/admin"),
		"protocol-relative host":       get("//evil.example/x"),
		"leading slash then //host":    get("///evil.example/x"),
		"empty segment":                get("a//b"),
		"userinfo trick":               get("@evil.example/x"),
		"at sign in segment":           get("x@evil.example"),
		"raw backslash":                get(`a\..\admin`),
		"encoded backslash":            get("a%5c..%5cadmin"),
		"encoded backslash upper":      get("a%5Cb"),
		"double-encoded backslash":     get("a%255cb"),
		"absolute http URL":            get("http://evil.example/x"),
		"absolute https URL":           get("https://evil.example/x"),
		"scheme only":                  get("javascript:alert(1)"),
		"raw NUL":                      get("a\x00b"),
		"encoded NUL":                  get("a%00b"),
		"raw CRLF":                     get("a\r\nX-Injected: y"),
		"encoded CRLF":                 get("a%0d%0aX-Injected:%20y"),
		"raw DEL":                      get("a\x7fb"),
		"fragment in path":             get("x#frag"),
		"query in path":                get("x?admin=1"),
		"invalid percent-encoding":     get("a%zzb"),
		"truncated percent-encoding":   get("a%2"),
		"query with CRLF":              withQuery("a=1\r\nX: y"),
		"query with NUL":               withQuery("a=\x00"),
		"query with fragment":          withQuery("a=1#frag"),
		"query that does not parse":    withQuery("a=%zz"),
		"Host header":                  withHeader("Host", "evil.example"),
		"Authorization header":         withHeader("Authorization", "Bearer stolen"),
		"lower-case authorization":     withHeader("authorization", "Bearer stolen"),
		"Proxy-Authorization header":   withHeader("Proxy-Authorization", "Basic eA=="),
		"Proxy-Other header":           withHeader("Proxy-Foo", "x"),
		"Cookie header":                withHeader("Cookie", "session=1"),
		"header value with CRLF":       withHeader("X-Note", "a\r\nX-Injected: y"),
		"header value with LF":         withHeader("X-Note", "a\nb"),
		"header value with NUL":        withHeader("X-Note", "a\x00b"),
		"header name with space":       withHeader("X Note", "a"),
		"header name with colon":       withHeader("X-Note:", "a"),
		"header name with CRLF":        withHeader("X-A\r\nX-B", "a"),
		"empty header name":            withHeader("", "a"),
		"CONNECT":                      withMethod("CONNECT"),
		"TRACE":                        withMethod("TRACE"),
		"unknown method":               withMethod("PROPFIND"),
		"lower-case method":            withMethod("get"),
		"method with space":            withMethod("GE T"),
		"method with CRLF":             withMethod("GET\r\n"),
		"job ID with CRLF":             {ID: "a\r\nX: y", Method: "GET", Path: "x"},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			resp := e.Do(context.Background(), &req)
			g.Expect(resp).NotTo(BeNil())
			g.Expect(resp.ErrorKind).To(Equal(wire.ErrorRejected), describe(resp))
			g.Expect(resp.Status).To(Equal(http.StatusForbidden))
			g.Expect(resp.ErrorMessage).NotTo(BeEmpty())
			g.Expect(resp.ID).To(Equal(req.ID))
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("the upstream was called %d times for refused jobs: %v", n, up.all())
	}
}

func TestAllowedPathsAreSentExactly(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok)
	e := newExecutor(t, baseOptions(up.URL+"/api/v1"))
	root := newUpstream(t, ok)
	eRoot := newExecutor(t, baseOptions(root.URL))
	slash := newUpstream(t, ok)
	eSlash := newExecutor(t, baseOptions(slash.URL+"/api/"))

	cases := []struct {
		name    string
		e       *upstream.Executor
		up      *fakeUpstream
		path    string
		query   string
		wantURI string
	}{
		{"empty path is the base path", e, up, "", "", "/api/v1"},
		{"slash", e, up, "/", "", "/api/v1/"},
		{"relative", e, up, "orders/42", "", "/api/v1/orders/42"},
		{"leading slash", e, up, "/orders/42", "", "/api/v1/orders/42"},
		{"encoded slash kept", e, up, "projects/group%2Fname", "", "/api/v1/projects/group%2Fname"},
		{"encoded at sign", e, up, "users/a%40b.example", "", "/api/v1/users/a%40b.example"},
		{"colon inside", e, up, "items/a:b", "", "/api/v1/items/a:b"},
		{"utf-8 encoded", e, up, "caf%C3%A9", "", "/api/v1/caf%C3%A9"},
		{"dots that are not segments", e, up, "a...b/.../.x/x.", "", "/api/v1/a...b/.../.x/x."},
		{"literal percent", e, up, "rate/100%25", "", "/api/v1/rate/100%25"},
		{"query as given", e, up, "search", "q=a%20b&tag=x&tag=y&flag", "/api/v1/search?q=a%20b&tag=x&tag=y&flag"},
		{"query with plus and encoded hash", e, up, "s", "q=1+2%23x", "/api/v1/s?q=1+2%23x"},
		{"root base URL", eRoot, root, "v2/things", "", "/v2/things"},
		{"root base URL, empty path", eRoot, root, "", "", "/"},
		{"base with trailing slash", eSlash, slash, "x", "", "/api/x"},
		{"base with trailing slash, empty path", eSlash, slash, "", "", "/api/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			before := c.up.hits.Load()
			resp := c.e.Do(context.Background(), &wire.Request{ID: "j1", Method: "GET", Path: c.path, RawQuery: c.query})
			g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
			g.Expect(resp.Status).To(Equal(http.StatusOK))
			g.Expect(c.up.hits.Load()).To(Equal(before + 1))
			g.Expect(c.up.last().RequestURI).To(Equal(c.wantURI))
		})
	}
}

func TestAllowedMethods(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok)
	e := newExecutor(t, baseOptions(up.URL))
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", ""} {
		g := NewWithT(t)
		resp := e.Do(context.Background(), &wire.Request{ID: "m", Method: m, Path: "x"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), m+": "+describe(resp))
		want := m
		if m == "" {
			want = "GET"
		}
		g.Expect(up.last().Method).To(Equal(want))
	}
}

func TestJobHeaders(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newUpstream(t, ok)
	opts := baseOptions(up.URL)
	opts.Upstream.Headers = map[string]string{"X-Api-Key": "static-key", "x-tenant": "t1"}
	e := newExecutor(t, opts)

	body := []byte(`{"a":1}`)
	resp := e.Do(context.Background(), &wire.Request{
		ID: "job-42", Method: "POST", Path: "x", Body: body,
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Header: http.Header{
			"Content-Type":      {"application/json"},
			"x-custom":          {"kept"},
			"X-Api-Key":         {"job-key"},
			"Connection":        {"X-Hop-Listed, keep-alive"},
			"X-Hop-Listed":      {"secret"},
			"Keep-Alive":        {"timeout=5"},
			"Proxy-Connection":  {"keep-alive"},
			"Te":                {"trailers"},
			"Trailer":           {"X-T"},
			"Transfer-Encoding": {"chunked"},
			"Upgrade":           {"websocket"},
			"Content-Length":    {"999"},
			"Idempotency-Key":   {"forged"},
			"User-Agent":        {"job-agent"},
			"Traceparent":       {"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"},
		},
	})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
	s := up.last()
	g.Expect(s.Body).To(Equal(string(body)))
	g.Expect(s.CL).To(Equal(int64(len(body))))
	g.Expect(s.TE).To(BeEmpty())
	g.Expect(s.Header.Get("Content-Type")).To(Equal("application/json"))
	g.Expect(s.Header.Get("X-Custom")).To(Equal("kept"))
	g.Expect(s.Header.Values("X-Api-Key")).To(Equal([]string{"static-key"}), "static headers win")
	g.Expect(s.Header.Get("X-Tenant")).To(Equal("t1"))
	g.Expect(s.Header.Values("Idempotency-Key")).To(Equal([]string{"job-42"}))
	g.Expect(s.Header.Get("User-Agent")).To(Equal("kafkasend-portal"))
	g.Expect(s.Header.Values("Traceparent")).To(Equal([]string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}))
	for _, h := range []string{"X-Hop-Listed", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Connection"} {
		g.Expect(s.Header).NotTo(HaveKey(h), h+" must be dropped")
	}
}

func TestInvalidTraceparentIsNotSent(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok)
	e := newExecutor(t, baseOptions(up.URL))
	for _, tp := range []string{
		"",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // unknown version
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace ID
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace ID
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent ID
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX: y",
	} {
		g := NewWithT(t)
		resp := e.Do(context.Background(), &wire.Request{ID: "t", Method: "GET", Path: "x", Traceparent: tp})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
		g.Expect(up.last().Header).NotTo(HaveKey("Traceparent"), tp)
	}
}

func TestStaticHeadersAreValidated(t *testing.T) {
	t.Parallel()
	for _, h := range []map[string]string{
		{"Host": "x"}, {"Connection": "close"}, {"Content-Length": "1"}, {"Idempotency-Key": "k"},
		{"X-Bad": "a\r\nb"}, {"Bad Name": "x"},
	} {
		opts := baseOptions("http://127.0.0.1:1")
		opts.Upstream.Headers = h
		if _, err := upstream.New(opts); err == nil {
			t.Errorf("New accepted static headers %v", h)
		}
	}
}

func TestResponseHopByHopHeadersAreDropped(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Keep", "2")
		w.Header().Add("Set-Cookie", "a=1")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte("accepted"))
	})
	e := newExecutor(t, baseOptions(up.URL))
	resp := e.Do(context.Background(), &wire.Request{ID: "r", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
	g.Expect(resp.Status).To(Equal(http.StatusAccepted))
	g.Expect(string(resp.Body)).To(Equal("accepted"))
	g.Expect(resp.Header.Get("X-Keep")).To(Equal("2"))
	g.Expect(resp.Header.Get("Set-Cookie")).To(Equal("a=1"))
	g.Expect(resp.Header).NotTo(HaveKey("X-Hop"))
	g.Expect(resp.Header).NotTo(HaveKey("Keep-Alive"))
	g.Expect(resp.Header).NotTo(HaveKey("Connection"))
}

func TestRedirects(t *testing.T) {
	t.Parallel()
	other := newUpstream(t, ok)
	var target string
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/start":
			http.Redirect(w, r, target, http.StatusFound)
		case "/api/post":
			http.Redirect(w, r, "/api/done", http.StatusTemporaryRedirect)
		case "/api/loop":
			http.Redirect(w, r, "/api/loop", http.StatusFound)
		default:
			_, _ = w.Write([]byte("reached " + r.URL.Path))
		}
	})
	follow := baseOptions(up.URL + "/api")
	follow.Upstream.FollowRedirects = true
	eFollow := newExecutor(t, follow)
	eDefault := newExecutor(t, baseOptions(up.URL+"/api"))

	t.Run("not followed by default", func(t *testing.T) {
		g := NewWithT(t)
		target = "/api/done"
		before := up.hits.Load()
		resp := eDefault.Do(context.Background(), &wire.Request{ID: "r", Method: "GET", Path: "start"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorNone), describe(resp))
		g.Expect(resp.Status).To(Equal(http.StatusFound))
		g.Expect(resp.Header.Get("Location")).To(Equal("/api/done"))
		g.Expect(up.hits.Load() - before).To(Equal(int64(1)))
	})
	t.Run("same origin followed", func(t *testing.T) {
		g := NewWithT(t)
		target = "/api/done"
		resp := eFollow.Do(context.Background(), &wire.Request{ID: "r", Method: "GET", Path: "start"})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(string(resp.Body)).To(Equal("reached /api/done"))
		g.Expect(up.last().Header.Get("Idempotency-Key")).To(Equal("r"))
	})
	t.Run("307 re-sends the body", func(t *testing.T) {
		g := NewWithT(t)
		resp := eFollow.Do(context.Background(), &wire.Request{ID: "p", Method: "POST", Path: "post", Body: []byte("payload")})
		g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
		g.Expect(up.last().Body).To(Equal("payload"))
		g.Expect(up.last().Method).To(Equal("POST"))
	})
	for name, loc := range map[string]string{
		"other origin":             other.URL + "/api/done",
		"other scheme":             strings.Replace(up.URL, "http://", "https://", 1) + "/api/done",
		"outside the base path":    "/admin",
		"encoded dot-dot":          "/api/%2e%2e/admin",
		"protocol-relative":        "//" + strings.TrimPrefix(other.URL, "http://") + "/api/done",
		"userinfo to other origin": "http://user@" + strings.TrimPrefix(other.URL, "http://") + "/api",
	} {
		t.Run("refused: "+name, func(t *testing.T) {
			g := NewWithT(t)
			target = loc
			otherBefore := other.hits.Load()
			resp := eFollow.Do(context.Background(), &wire.Request{ID: "r", Method: "GET", Path: "start"})
			g.Expect(resp.ErrorKind).To(Equal(wire.ErrorRejected), describe(resp))
			g.Expect(other.hits.Load()).To(Equal(otherBefore), "the other origin must not be called")
			g.Expect(up.last().RequestURI).To(Equal("/api/start"), "the target must not be called")
		})
	}
	t.Run("at most 5 redirects", func(t *testing.T) {
		g := NewWithT(t)
		before := up.hits.Load()
		resp := eFollow.Do(context.Background(), &wire.Request{ID: "r", Method: "GET", Path: "loop"})
		g.Expect(resp.ErrorKind).To(Equal(wire.ErrorRejected), describe(resp))
		g.Expect(up.hits.Load() - before).To(Equal(int64(6)))
	})
}

func TestTLSIsVerified(t *testing.T) {
	t.Parallel()
	up := newTLSUpstream(t, ok)
	opts := baseOptions(up.URL)
	opts.Upstream.AllowInsecureHTTP = false
	e := newExecutor(t, opts) // system roots only: the test CA is unknown
	g := NewWithT(t)
	resp := e.Do(context.Background(), &wire.Request{ID: "t", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorUnreachable), describe(resp))
	g.Expect(resp.ErrorMessage).To(ContainSubstring("TLS"))
	g.Expect(up.hits.Load()).To(BeZero())
}

func TestHTTPBaseURLNeedsOptIn(t *testing.T) {
	t.Parallel()
	opts := baseOptions("http://127.0.0.1:1")
	opts.Upstream.AllowInsecureHTTP = false
	if _, err := upstream.New(opts); err == nil {
		t.Fatal("New accepted an http base URL without allowInsecureHTTP")
	}
}
