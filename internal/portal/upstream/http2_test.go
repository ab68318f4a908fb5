package upstream_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"kafkasend.io/kafkasend/internal/portal/config"
	"kafkasend.io/kafkasend/pkg/wire"
)

// newH2CUpstream starts a plain-HTTP upstream that also speaks HTTP/2
// without TLS (prior knowledge), and counts the connections made to it.
func newH2CUpstream(t *testing.T, h http.HandlerFunc) (*fakeUpstream, *atomic.Int64) {
	t.Helper()
	f := &fakeUpstream{}
	var conns atomic.Int64
	f.Server = httptest.NewUnstartedServer(record(f, h))
	f.Config.Protocols = new(http.Protocols)
	f.Config.Protocols.SetHTTP1(true)
	f.Config.Protocols.SetUnencryptedHTTP2(true)
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	f.Start()
	t.Cleanup(f.Close)
	return f, &conns
}

func TestHTTP2Modes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode      string
		tls       bool
		wantProto int
	}{
		{"", false, 1},
		{config.HTTP2Auto, false, 1},
		{config.HTTP2Always, false, 2}, // h2c
		{config.HTTP2Never, false, 1},
		{config.HTTP2Auto, true, 2}, // ALPN
		{config.HTTP2Always, true, 2},
		{config.HTTP2Never, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.mode+"/tls="+strconv.FormatBool(tc.tls), func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			var up *fakeUpstream
			opts := baseOptions("")
			if tc.tls {
				up = newTLSUpstream(t, ok)
				opts = baseOptions(up.URL)
				opts.Upstream.AllowInsecureHTTP = false
				opts.Upstream.CAFile = writeCA(t, up.Server)
			} else {
				up, _ = newH2CUpstream(t, ok)
				opts = baseOptions(up.URL)
			}
			opts.Upstream.HTTP2 = tc.mode
			e := newExecutor(t, opts)
			resp := e.Do(context.Background(), &wire.Request{ID: "j", Method: "POST", Path: "x", Body: []byte("body")})
			g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
			g.Expect(string(resp.Body)).To(Equal("ok"))
			g.Expect(up.last().Proto).To(Equal(tc.wantProto))
			g.Expect(up.last().Body).To(Equal("body"))
			g.Expect(up.last().CL).To(Equal(int64(4)), "the body is sent with its Content-Length")
		})
	}
}

// TestH2CMultiplexesCalls checks what upstream.http2 "always" is for: many
// calls in flight share one connection instead of one connection each.
func TestH2CMultiplexesCalls(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	const calls = 50
	var arrived sync.WaitGroup
	arrived.Add(calls)
	release := make(chan struct{})
	var warm atomic.Bool
	up, conns := newH2CUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		if warm.Load() {
			arrived.Done()
			<-release
		}
		_, _ = w.Write([]byte("ok"))
	})
	opts := baseOptions(up.URL)
	opts.Upstream.HTTP2 = config.HTTP2Always
	e := newExecutor(t, opts)
	// A first call opens the connection and learns the server's stream
	// limit (250), as a running portal has.
	g.Expect(e.Do(context.Background(), &wire.Request{ID: "warm", Method: "GET", Path: "x"}).Status).To(Equal(http.StatusOK))
	warm.Store(true)
	results := make([]*wire.Response, calls)
	var done sync.WaitGroup
	for i := range calls {
		done.Add(1)
		go func() {
			defer done.Done()
			results[i] = e.Do(context.Background(), &wire.Request{ID: strconv.Itoa(i), Method: "GET", Path: "x"})
		}()
	}
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatal("not all calls reached the upstream at once")
	}
	g.Expect(conns.Load()).To(Equal(int64(1)), "50 calls in flight on one HTTP/2 connection")
	close(release)
	done.Wait()
	for _, r := range results {
		g.Expect(r.Status).To(Equal(http.StatusOK), describe(r))
	}
}

// TestH2CRefusedByHTTP1Upstream checks that "always" against an upstream
// that speaks only HTTP/1.1 fails the call as unreachable.
func TestH2CRefusedByHTTP1Upstream(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	up := &fakeUpstream{}
	up.Server = httptest.NewUnstartedServer(record(up, ok))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetHTTP1(true)
	up.Start()
	t.Cleanup(up.Close)
	opts := baseOptions(up.URL)
	opts.Upstream.HTTP2 = config.HTTP2Always
	opts.Retries.Attempts = 1
	e := newExecutor(t, opts)
	resp := e.Do(context.Background(), &wire.Request{ID: "j", Method: "GET", Path: "x"})
	g.Expect(resp.ErrorKind).To(Equal(wire.ErrorUnreachable), describe(resp))
	for _, s := range up.all() {
		// An HTTP/1.1 server reads the HTTP/2 connection preface as a
		// request "PRI *"; the job's own GET never reaches it.
		g.Expect(s.Method).To(Equal("PRI"))
	}
}

// TestH2CTokenEndpointKeepsHTTP1 checks that "always" applies to the
// upstream only: the token endpoint, another server, is still reached over
// HTTP/1.1.
func TestH2CTokenEndpointKeepsHTTP1(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ts := newTokenServer(t, 3600, 0, false) // HTTP/1.1 only
	up, _ := newH2CUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Header.Get("Authorization")))
	})
	opts := oauthOptions(up, newSecretVolume(t, "id", "s3cr3t"), ts)
	opts.Upstream.HTTP2 = config.HTTP2Always
	e := newExecutor(t, opts)
	resp := e.Do(context.Background(), &wire.Request{ID: "j", Method: "GET", Path: "x"})
	g.Expect(resp.Status).To(Equal(http.StatusOK), describe(resp))
	g.Expect(string(resp.Body)).To(Equal("Bearer tok-1"))
	g.Expect(up.last().Proto).To(Equal(2))
	g.Expect(ts.requests.Load()).To(Equal(int64(1)))
}
