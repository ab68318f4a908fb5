package upstream

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// FuzzPathPolicy checks that whatever job path and query the policy
// accepts, the URL it builds targets the base origin, stays under the base
// path (also once percent-decoded, as a server behind the upstream's
// address may decode it) and carries no dot segment, backslash or control
// character.
func FuzzPathPolicy(f *testing.F) {
	for _, s := range []struct{ path, query string }{
		{"v1/items/7", "a=1&b=2"}, {"/v1/x", ""}, {"", ""}, {"../admin", ""}, {"%2e%2e/admin", ""},
		{"%252e%252e/x", ""}, {"..;/x", ""}, {"a%5cb", ""}, {"a%00b", ""}, {"//evil/x", ""}, {"http://evil/x", ""},
		{"@evil/x", ""}, {"x?y=1", ""}, {"a%zzb", ""}, {"a", "q=%zz"}, {"a", "q=1#f"}, {"%2F..%2Fadmin", ""},
		{"a/%2e/b", ""}, {"%u002e%u002e/x", ""}, {"a/./b", ""}, {"\u2025/x", ""},
	} {
		f.Add(s.path, s.query)
	}
	b, err := parseBase("https://api.example:8443/base/v2")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p, q string) {
		u, refusal := b.resolve(p, q)
		if refusal != nil {
			if u != nil {
				t.Fatalf("refused %q with a URL %v", p, u)
			}
			return
		}
		if u.Scheme != "https" || u.Host != "api.example:8443" || u.User != nil || u.Fragment != "" {
			t.Fatalf("path %q query %q: URL %v leaves the base origin", p, q, u)
		}
		if u.RawQuery != q {
			t.Fatalf("query %q sent as %q", q, u.RawQuery)
		}
		// Decode as often as a chain of servers might and check each form.
		cur := u.EscapedPath()
		for range 4 {
			if cur != "/base/v2" && !strings.HasPrefix(cur, "/base/v2/") {
				t.Fatalf("path %q: %q is not under the base path", p, cur)
			}
			for _, seg := range strings.Split(cur, "/") {
				if seg == ".." || seg == "." {
					t.Fatalf("path %q: dot segment in %q", p, cur)
				}
			}
			if strings.ContainsAny(cur, "\\\x00\r\n") {
				t.Fatalf("path %q: backslash or control character in %q", p, cur)
			}
			dec, err := url.PathUnescape(cur)
			if err != nil || dec == cur {
				break
			}
			cur = dec
		}
	})
}

// FuzzHeaderPolicy checks that whatever job headers the policy accepts,
// what goes upstream holds no header that would take over the portal's
// identity or target, no hop-by-hop or override header, and only valid
// names and values.
func FuzzHeaderPolicy(f *testing.F) {
	f.Add("Content-Type", "application/json", "X-Custom", "v")
	f.Add("Host", "evil", "X-A", "b")
	f.Add("authorization", "Bearer x", "cookie", "a=b")
	f.Add("Connection", "X-Secret, keep-alive", "X-Secret", "s")
	f.Add("x-forwarded-for", "10.0.0.1", "X-HTTP-Method-Override", "DELETE")
	f.Add("Proxy-Authorization", "Basic x", "Proxy-Connection", "keep-alive")
	f.Add("X-A", "a\r\nHost: evil", "Transfer-Encoding", "chunked")
	f.Add("X-Original-URL", "/admin", "Forwarded", "for=1")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := http.Header{}
		in[k1] = append(in[k1], v1)
		in[k2] = append(in[k2], v2)
		out, refusal := checkHeaders(in, nil)
		if refusal != nil {
			return
		}
		listed := map[string]bool{}
		for _, v := range in.Values("Connection") {
			for _, n := range strings.Split(v, ",") {
				listed[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
			}
		}
		for k, vs := range out {
			ck := http.CanonicalHeaderKey(k)
			switch {
			case !httpguts.ValidHeaderFieldName(k):
				t.Fatalf("invalid name %q forwarded", k)
			case refusedHeaders[ck] || (strings.HasPrefix(ck, "Proxy-") && ck != "Proxy-Connection"):
				t.Fatalf("%s forwarded", ck)
			case droppedHeaders[ck] || portalHeaders[ck] || listed[ck]:
				t.Fatalf("%s (hop-by-hop, listed in Connection or the portal's) forwarded", ck)
			case isOverrideHeader(ck):
				t.Fatalf("override header %s forwarded without forwardHeaders", ck)
			}
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("%s: invalid value %q forwarded", ck, v)
				}
			}
		}
	})
}
