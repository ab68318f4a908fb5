package wire

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// kafkaBatchHeader is the size of a v2 record batch header, which a broker
// counts against message.max.bytes (written out here, not taken from the
// code under test).
const kafkaBatchHeader = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4

func TestSplitFillsChunksAndFitsTheBudget(t *testing.T) {
	for _, maxMsg := range []int{1024, 1500, 4096, 900 * 1024} {
		for _, keyLen := range []int{1, 26, MaxJobIDBytes} {
			id := strings.Repeat("k", keyLen)
			per := ChunkDataBudget(id, maxMsg)
			for _, size := range []int{0, 1, per - 1, per, per + 1, 3*per - 1, 3 * per, 3*per + 1} {
				payload := bigBody(size)
				chunks, err := Split(id, TypeRequest, payload, maxMsg)
				if err != nil {
					t.Fatalf("Split(%d bytes, max %d): %v", size, maxMsg, err)
				}
				wantCount := max(1, (size+per-1)/per)
				if len(chunks) != wantCount {
					t.Fatalf("Split(%d bytes, max %d) = %d chunks, want %d", size, maxMsg, len(chunks), wantCount)
				}
				for i, c := range chunks {
					if !c.IsLast() && len(c.Data) != per {
						t.Fatalf("chunk %d of %d has %d bytes, want a full %d", i, len(chunks), len(c.Data), per)
					}
					if c.Offset() != i*per {
						t.Fatalf("chunk %d offset %d, want %d", i, c.Offset(), i*per)
					}
					// What sarama and the broker will count: sarama's own
					// estimate for the record plus the 61-byte batch header.
					m := ProducerMessages("t", NoPartition, []Chunk{c})[0]
					used := m.ByteSize(2) + kafkaBatchHeader
					if used > maxMsg {
						t.Fatalf("record of chunk %d needs %d bytes, over %d", i, used, maxMsg)
					}
					if c.IsLast() == false && used < maxMsg-32 {
						t.Fatalf("full chunk leaves %d of %d bytes unused", maxMsg-used, maxMsg)
					}
				}
				joined, err := Join(chunks)
				if err != nil || !bytes.Equal(joined, payload) {
					t.Fatalf("Join after Split: %v (equal=%v)", err, bytes.Equal(joined, payload))
				}
			}
		}
	}
}

func TestSplitErrors(t *testing.T) {
	if _, err := Split("", TypeRequest, []byte("x"), 1024); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty job ID: %v", err)
	}
	if _, err := Split("j", "query", []byte("x"), 1024); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad type: %v", err)
	}
	minMsg := 1024 - ChunkDataBudget("j", 1024) // budget 0 at this size
	if _, err := Split("j", TypeRequest, []byte("x"), minMsg); err == nil || !strings.Contains(err.Error(), "leaves no room") {
		t.Errorf("max message bytes %d: %v, want 'leaves no room'", minMsg, err)
	}
	if chunks, err := Split("j", TypeRequest, []byte("xy"), minMsg+1); err != nil || len(chunks) != 2 {
		t.Errorf("one data byte per record: %d chunks, %v", len(chunks), err)
	}
	if _, err := Split("j", TypeRequest, make([]byte, MaxChunks+1), minMsg+1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("more than MaxChunks chunks: %v, want ErrTooLarge", err)
	}
}

// record is one consumed Kafka record of a test.
type record struct {
	key     []byte
	headers map[string]string
	order   []string
	value   []byte
}

func recordOf(c Chunk) record {
	r := record{key: []byte(c.JobID), headers: map[string]string{}, value: c.Data}
	for _, h := range ChunkHeaders(c) {
		r.headers[string(h.Key)] = string(h.Value)
		r.order = append(r.order, string(h.Key))
	}
	return r
}

func (r record) parse() (Chunk, error) {
	var hs []*sarama.RecordHeader
	for _, k := range r.order {
		if v, ok := r.headers[k]; ok {
			hs = append(hs, &sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		}
	}
	return ParseChunk(r.key, hs, r.value)
}

func TestParseChunkErrors(t *testing.T) {
	payload := bigBody(250)
	chunks, err := Split("job-1", TypeRequest, payload, 1024-ChunkDataBudget("job-1", 1024)+100)
	if err != nil || len(chunks) != 3 {
		t.Fatalf("Split: %d chunks, %v", len(chunks), err)
	}
	first, last := recordOf(chunks[0]), recordOf(chunks[2])
	set := func(r record, k, v string) record {
		h := map[string]string{}
		for kk, vv := range r.headers {
			h[kk] = vv
		}
		h[k] = v
		r.headers = h
		return r
	}
	del := func(r record, k string) record {
		r = set(r, k, "")
		delete(r.headers, k)
		return r
	}
	withValue := func(r record, v []byte) record { r.value = v; return r }
	withKey := func(r record, k []byte) record { r.key = k; return r }
	dup := func(r record, k string) record { r.order = append(append([]string{}, r.order...), k); return r }

	cases := []struct {
		name  string
		rec   record
		field string
		is    error
		text  string
	}{
		{"no key", withKey(first, nil), "key", ErrMalformed, "record has no key"},
		{"empty key", withKey(first, []byte{}), "key", ErrMalformed, "empty job ID"},
		{"key with space", withKey(first, []byte("job 1")), "key", ErrMalformed, "not visible ASCII"},
		{"key too long", withKey(first, bytes.Repeat([]byte("k"), 129)), "key", ErrMalformed, "limit is 128"},
		{"no version", del(first, HeaderVersion), HeaderVersion, ErrMalformed, "missing header"},
		{"no type", del(first, HeaderType), HeaderType, ErrMalformed, "missing header"},
		{"no chunk", del(first, HeaderChunk), HeaderChunk, ErrMalformed, "missing header"},
		{"no chunks", del(first, HeaderChunks), HeaderChunks, ErrMalformed, "missing header"},
		{"no size", del(first, HeaderSize), HeaderSize, ErrMalformed, "missing header"},
		{"no checksum", del(first, HeaderChecksum), HeaderChecksum, ErrMalformed, "missing header"},
		{"header twice", dup(first, HeaderChunk), HeaderChunk, ErrMalformed, "more than once"},
		{"version 2", set(first, HeaderVersion, "2"), HeaderVersion, ErrUnsupportedVersion, "version 2"},
		{"version not a number", set(first, HeaderVersion, "v1"), HeaderVersion, ErrMalformed, "not an unsigned decimal"},
		{"unknown type", set(first, HeaderType, "Request"), HeaderType, ErrMalformed, `"Request", want request or response`},
		{"negative index", set(first, HeaderChunk, "-1"), HeaderChunk, ErrMalformed, "not an unsigned decimal"},
		{"empty index", set(first, HeaderChunk, ""), HeaderChunk, ErrMalformed, "empty value"},
		{"index with space", set(first, HeaderChunk, " 0"), HeaderChunk, ErrMalformed, "not an unsigned decimal"},
		{"index too many digits", set(first, HeaderChunk, "00000000"), HeaderChunk, ErrMalformed, "more than 7 digits"},
		{"index out of range", set(first, HeaderChunk, "3"), HeaderChunk, ErrMalformed, "index 3 is out of range for 3 chunks"},
		{"zero chunks", set(first, HeaderChunks, "0"), HeaderChunks, ErrMalformed, "at least one chunk"},
		{"too many chunks", set(first, HeaderChunks, strconv.Itoa(MaxChunks+1)), HeaderChunks, ErrTooLarge, "the limit is 1048576"},
		{"size over limit", set(first, HeaderSize, "2147483648"), HeaderSize, ErrTooLarge, "the limit is 2147483647"},
		{"size hex", set(first, HeaderSize, "0x10"), HeaderSize, ErrMalformed, "not an unsigned decimal"},
		{"checksum not hex", set(first, HeaderChecksum, "xyz"), HeaderChecksum, ErrMalformed, "want 8 hex digits"},
		{"checksum 9 digits", set(first, HeaderChecksum, "123456789"), HeaderChecksum, ErrMalformed, "want 8 hex digits"},
		{"checksum empty", set(first, HeaderChecksum, ""), HeaderChecksum, ErrMalformed, "want 8 hex digits"},
		{"only chunk short", set(set(first, HeaderChunks, "1"), HeaderChunk, "0"), "value", ErrMalformed, "the only chunk has 100 bytes, ks-size says 250"},
		{"middle chunk too short", withValue(first, first.value[:50]), "value", ErrMalformed, "chunk 0 of 3 has 50 bytes"},
		{"middle chunk too long", withValue(first, bytes.Repeat([]byte("x"), 125)), "value", ErrMalformed, "chunk 0 of 3 has 125 bytes"},
		{"middle chunk empty", withValue(first, nil), "value", ErrMalformed, "chunk 0 of 3 has 0 bytes"},
		{"last chunk longer than others", withValue(last, bytes.Repeat([]byte("x"), 90)), "value", ErrMalformed, "last chunk 2 of 3 has 90 bytes"},
		{"last chunk empty", withValue(last, nil), "value", ErrMalformed, "last chunk 2 of 3 has 0 bytes"},
		{"last chunk misaligned", withValue(last, bytes.Repeat([]byte("x"), 49)), "value", ErrMalformed, "last chunk 2 of 3 has 49 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.rec.parse()
			assertFormatError(t, err, tc.field, tc.is, tc.text)
		})
	}

	// Unknown and nil headers are ignored; case of hex digits does not matter.
	ok := set(first, "x-other", "whatever")
	ok.order = append(append([]string{}, ok.order...), "x-other")
	ok = set(ok, HeaderChecksum, strings.ToUpper(first.headers[HeaderChecksum]))
	c, err := ok.parse()
	if err != nil {
		t.Fatalf("valid chunk with extra header: %v", err)
	}
	if c.JobID != "job-1" || c.Index != 0 || c.Count != 3 || c.Size != 250 || c.Checksum != ChecksumOf(payload) || c.Type != TypeRequest {
		t.Errorf("parsed %+v", c)
	}
	if _, err := ParseChunk([]byte("job-1"), append([]*sarama.RecordHeader{nil}, consumerHeaders(ChunkHeaders(chunks[1]))...), chunks[1].Data); err != nil {
		t.Errorf("nil header entry: %v", err)
	}
	// Leading zeros and short checksums are accepted, as documented.
	short := set(set(last, HeaderChunk, "002"), HeaderChecksum, "0")
	if c, err := short.parse(); err != nil || c.Index != 2 || c.Checksum != 0 {
		t.Errorf("leading zeros: %+v, %v", c, err)
	}
}

func TestJoinErrors(t *testing.T) {
	payload := bigBody(250)
	maxMsg := 1024 - ChunkDataBudget("j", 1024) + 100
	chunks, err := Split("j", TypeRequest, payload, maxMsg)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(cs []Chunk) []Chunk) []Chunk {
		cs := append([]Chunk(nil), chunks...)
		return f(cs)
	}
	cases := []struct {
		name   string
		chunks []Chunk
		is     error
		text   string
	}{
		{"none", nil, ErrMalformed, "no chunks"},
		{"missing chunk", chunks[:2], ErrMalformed, "2 chunks given, they declare 3"},
		{"out of order", mod(func(cs []Chunk) []Chunk { cs[0], cs[1] = cs[1], cs[0]; return cs }), ErrMalformed, "has index 1"},
		{"other job", mod(func(cs []Chunk) []Chunk { cs[1].JobID = "k"; return cs }), ErrMalformed, `belongs to job "k"`},
		{"size differs", mod(func(cs []Chunk) []Chunk { cs[2].Size = 251; return cs }), ErrMalformed, "differs from chunk 0"},
		{"corrupted byte", mod(func(cs []Chunk) []Chunk {
			cs[1].Data = bytes.Clone(cs[1].Data)
			cs[1].Data[7] ^= 1
			return cs
		}), ErrChecksum, "CRC-32C is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Join(tc.chunks)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Join = %v, want %v saying %q", err, tc.is, tc.text)
			}
		})
	}
}

func TestChunkHeadersForKcat(t *testing.T) {
	c := Chunk{JobID: "j", Type: TypeResponse, Index: 12, Count: 345, Size: 6789012, Checksum: 0x00ab00cd}
	var got []string
	for _, h := range ChunkHeaders(c) {
		got = append(got, string(h.Key)+"="+string(h.Value))
	}
	want := "ks-version=1 ks-type=response ks-chunk=12 ks-chunks=345 ks-size=6789012 ks-crc32c=00ab00cd"
	if strings.Join(got, " ") != want {
		t.Errorf("headers %q, want %q", strings.Join(got, " "), want)
	}
}

func TestPartitioner(t *testing.T) {
	p := NewPartitioner("t")
	if !p.RequiresConsistency() {
		t.Error("partitioner must require consistency")
	}
	msgs := ProducerMessages("t", 5, []Chunk{{JobID: "a"}, {JobID: "a"}})
	for _, m := range msgs {
		got, err := p.Partition(m, 8)
		if err != nil || got != 5 {
			t.Errorf("explicit partition 5: got %d, %v", got, err)
		}
	}
	if _, err := p.Partition(msgs[0], 4); !errors.Is(err, sarama.ErrInvalidPartition) {
		t.Errorf("partition 5 of 4: %v", err)
	}
	// By key: every chunk of a job goes to the same partition, and jobs spread.
	hits := map[int32]bool{}
	for i := range 64 {
		id := "job-" + strconv.Itoa(i)
		var first int32 = -1
		for _, m := range ProducerMessages("t", NoPartition, []Chunk{{JobID: id}, {JobID: id}, {JobID: id}}) {
			got, err := p.Partition(m, 8)
			if err != nil {
				t.Fatal(err)
			}
			if first >= 0 && got != first {
				t.Fatalf("job %s chunks went to partitions %d and %d", id, first, got)
			}
			first = got
		}
		hits[first] = true
	}
	if len(hits) < 4 {
		t.Errorf("64 jobs used only %d of 8 partitions", len(hits))
	}
}
