package wire

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// The hand-written encoding of a response's metadata is byte for byte what
// encoding/json writes, for headers and messages with every kind of
// character a response may carry.
func TestResponseMetaMatchesMarshal(t *testing.T) {
	pieces := []string{"", "a", "Content-Type", "text/html; charset=utf-8", `"`, `\`, "<", ">", "&", "\b", "\f", "\n",
		"\r", "\t", "\x00", "\x1f", "\x7f", "é", "日本", "\u2028", "\u2029", "\xff", "\xe2\x80", "💡", " ", "/"}
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		var b []byte
		for range rng.IntN(6) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		return string(b)
	}
	metas := []*responseMeta{
		{Status: 200},
		{Status: 0},
		{Status: 599, Headers: map[string][]string{}},
		{Status: 204, Headers: map[string][]string{"X-Nil": nil, "X-Empty": {}}},
		{Status: 502, ErrorKind: ErrorUnreachable, ErrorMessage: "dial tcp 127.0.0.1:1: connection refused"},
	}
	for range 2000 {
		m := &responseMeta{Status: rng.IntN(1000), Headers: map[string][]string{}}
		for range rng.IntN(5) {
			var vs []string
			for range rng.IntN(3) {
				vs = append(vs, str())
			}
			m.Headers[str()] = vs
		}
		if rng.IntN(3) == 0 {
			m.ErrorKind, m.ErrorMessage = ErrorKind(str()), str()
		}
		metas = append(metas, m)
	}
	for _, m := range metas {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendResponseMeta(nil, m); !bytes.Equal(got, want) {
			t.Fatalf("%+v:\n got %s\nwant %s", m, got, want)
		}
	}
}

func BenchmarkResponseHead(b *testing.B) {
	r := &Response{Status: 200, Header: map[string][]string{
		"Content-Type": {"application/octet-stream"}, "Date": {"Wed, 02 Dec 2026 02:20:00 GMT"}, "X-Path": {"/job/1"},
	}, Body: make([]byte, 1024)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := responseHead(r); err != nil {
			b.Fatal(err)
		}
	}
}
