package wire

import (
	"net/http"
	"testing"
)

func benchRequest(bodyLen int) *Request {
	return &Request{
		ID: NewJobID(), Method: "POST", Path: "/v1/items", RawQuery: "a=1",
		Header:         http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}},
		Body:           bigBody(bodyLen),
		ReplyPartition: NoPartition,
		Traceparent:    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

var sizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}, {"16MiB", 16 << 20}}

func BenchmarkEncodeRequest(b *testing.B) {
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			r := benchRequest(s.n)
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeRequest(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSplit(b *testing.B) {
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			r := benchRequest(s.n)
			p, _ := EncodeRequest(r)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Split(r.ID, TypeRequest, p, 900*1024); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRequestMessages is the requester's whole path: encode, split,
// build producer messages with headers.
func BenchmarkRequestMessages(b *testing.B) {
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			r := benchRequest(s.n)
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := RequestMessages("requests", NoPartition, r, 900*1024); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseChunk(b *testing.B) {
	r := benchRequest(1 << 10)
	p, _ := EncodeRequest(r)
	cs, _ := Split(r.ID, TypeRequest, p, 900*1024)
	hs := consumerHeaders(ChunkHeaders(cs[0]))
	key := []byte(r.ID)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseChunk(key, hs, cs[0].Data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			p, _ := EncodeRequest(benchRequest(s.n))
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeRequest(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJoin includes the CRC-32C of the whole payload.
func BenchmarkJoin(b *testing.B) {
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			r := benchRequest(s.n)
			p, _ := EncodeRequest(r)
			cs, _ := Split(r.ID, TypeRequest, p, 900*1024)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Join(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
