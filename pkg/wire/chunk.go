package wire

import (
	"hash/crc32"
	"strconv"

	"github.com/IBM/sarama"
)

// MessageType tells requests from responses: the ks-type header.
type MessageType string

// The message types.
const (
	TypeRequest  MessageType = "request"
	TypeResponse MessageType = "response"
)

// Kafka record header names of the format.
const (
	HeaderVersion  = "ks-version"
	HeaderType     = "ks-type"
	HeaderChunk    = "ks-chunk"
	HeaderChunks   = "ks-chunks"
	HeaderSize     = "ks-size"
	HeaderChecksum = "ks-crc32c"
)

// Chunk is one Kafka record of a job: a slice of its payload plus what is
// needed to put the payload back together and check it.
type Chunk struct {
	// JobID is the record key.
	JobID string
	// Type is request or response.
	Type MessageType
	// Index is 0-based; Count is the number of chunks of the payload.
	Index, Count int
	// Size is the length of the whole payload in bytes.
	Size int
	// Checksum is the CRC-32C (Castagnoli) of the whole payload.
	Checksum uint32
	// Data is bytes [Offset(), Offset()+len(Data)) of the payload.
	Data []byte
}

// IsLast reports whether c is the payload's last chunk.
func (c Chunk) IsLast() bool { return c.Index == c.Count-1 }

// Offset is where c.Data starts in the payload. Every chunk but the last has
// the same length L, so chunk i starts at i*L, and the last chunk ends the
// payload. Offset assumes c passed ParseChunk's checks.
func (c Chunk) Offset() int {
	if c.IsLast() {
		return c.Size - len(c.Data)
	}
	return c.Index * len(c.Data)
}

// castagnoli is the CRC-32C table; crc32 uses the CPU's CRC instructions
// (SSE 4.2, ARMv8) for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ChecksumOf returns the CRC-32C (Castagnoli) of payload.
func ChecksumOf(payload []byte) uint32 { return crc32.Checksum(payload, castagnoli) }

// VerifyChecksum checks payload against the CRC-32C its chunks declared.
func VerifyChecksum(payload []byte, want uint32) error {
	if got := ChecksumOf(payload); got != want {
		return formatErr(ErrChecksum, "payload", "CRC-32C is %08x, the chunks declare %08x", got, want)
	}
	return nil
}

// Worst-case lengths of the header values, used for the size budget so that
// it does not depend on the chunk count it determines.
const (
	maxChunkDigits = 7  // MaxChunks-1 = 1048575
	maxSizeDigits  = 10 // MaxPayloadBytes = 2147483647
	// Kafka's record batch header (61 bytes) plus sarama's worst case for the
	// varints of one record (36 bytes); each header adds two varints of at
	// most 5 bytes.
	batchOverhead     = 61
	recordOverhead    = 36
	perHeaderOverhead = 10
	headersOverhead   = 6*perHeaderOverhead +
		len(HeaderVersion) + 1 +
		len(HeaderType) + len(TypeResponse) +
		len(HeaderChunk) + maxChunkDigits +
		len(HeaderChunks) + maxChunkDigits +
		len(HeaderSize) + maxSizeDigits +
		len(HeaderChecksum) + 8
)

// ChunkDataBudget returns how many payload bytes fit in one record of a job
// so that the record batch holding it stays within maxMessageBytes (the
// broker's message.max.bytes or the topic's max.message.bytes, and sarama's
// Producer.MaxMessageBytes): maxMessageBytes minus the batch and record
// overhead, the key and this format's headers. Callers that add headers of
// their own subtract len(key)+len(value)+10 for each.
func ChunkDataBudget(jobID string, maxMessageBytes int) int {
	return maxMessageBytes - batchOverhead - recordOverhead - len(jobID) - headersOverhead
}

// Split cuts payload into chunks of at most ChunkDataBudget(jobID,
// maxMessageBytes) bytes each: every chunk but the last is full, the last
// holds the rest, and an empty payload is one empty chunk. Chunk data alias
// payload (no copy).
func Split(jobID string, t MessageType, payload []byte, maxMessageBytes int) ([]Chunk, error) {
	return splitParts(jobID, t, payload, nil, maxMessageBytes)
}

// splitParts is Split of the payload head followed by body, without joining
// them: chunk data alias head or body, and only a chunk that straddles the
// two is copied.
func splitParts(jobID string, t MessageType, head, body []byte, maxMessageBytes int) ([]Chunk, error) {
	if err := ValidateJobID(jobID); err != nil {
		return nil, err
	}
	if t != TypeRequest && t != TypeResponse {
		return nil, malformed(HeaderType, "unknown message type %q", t)
	}
	size := len(head) + len(body)
	if size > MaxPayloadBytes {
		return nil, tooLarge("payload", "%d bytes, the limit is %d", size, MaxPayloadBytes)
	}
	per := ChunkDataBudget(jobID, maxMessageBytes)
	if per < 1 {
		return nil, &FormatError{Field: "maxMessageBytes", Problem: "max message bytes " + strconv.Itoa(maxMessageBytes) +
			" leaves no room for data after the key and headers", kind: ErrTooLarge}
	}
	count := 1
	if size > per {
		count = (size + per - 1) / per
	}
	if count > MaxChunks {
		return nil, tooLarge(HeaderChunks, "%d bytes need %d chunks of %d bytes, the limit is %d chunks", size, count, per, MaxChunks)
	}
	sum := crc32.Update(ChecksumOf(head), castagnoli, body)
	h := len(head)
	chunks := make([]Chunk, count)
	for i := range chunks {
		lo := i * per
		hi := min(lo+per, size)
		var data []byte
		switch {
		case hi <= h:
			data = head[lo:hi:hi]
		case lo >= h:
			data = body[lo-h : hi-h : hi-h]
		default:
			data = make([]byte, 0, hi-lo)
			data = append(append(data, head[lo:]...), body[:hi-h]...)
		}
		chunks[i] = Chunk{JobID: jobID, Type: t, Index: i, Count: count, Size: size, Checksum: sum, Data: data}
	}
	return chunks, nil
}

// Header names and values that never change; sarama only reads them.
var (
	keyVersion    = []byte(HeaderVersion)
	keyType       = []byte(HeaderType)
	keyChunk      = []byte(HeaderChunk)
	keyChunks     = []byte(HeaderChunks)
	keySize       = []byte(HeaderSize)
	keyChecksum   = []byte(HeaderChecksum)
	versionValue  = []byte(strconv.Itoa(Version))
	requestValue  = []byte(TypeRequest)
	responseValue = []byte(TypeResponse)
)

// ChunkHeaders returns the Kafka record headers of c, in the order
// ks-version, ks-type, ks-chunk, ks-chunks, ks-size, ks-crc32c. The names
// and the version and type values are shared: do not modify them.
func ChunkHeaders(c Chunk) []sarama.RecordHeader {
	typ := requestValue
	if c.Type == TypeResponse {
		typ = responseValue
	}
	// One buffer for the four variable values.
	buf := make([]byte, 0, 2*maxChunkDigits+maxSizeDigits+8)
	buf = strconv.AppendInt(buf, int64(c.Index), 10)
	i1 := len(buf)
	buf = strconv.AppendInt(buf, int64(c.Count), 10)
	i2 := len(buf)
	buf = strconv.AppendInt(buf, int64(c.Size), 10)
	i3 := len(buf)
	buf = appendHex8(buf, c.Checksum)
	return []sarama.RecordHeader{
		{Key: keyVersion, Value: versionValue},
		{Key: keyType, Value: typ},
		{Key: keyChunk, Value: buf[:i1:i1]},
		{Key: keyChunks, Value: buf[i1:i2:i2]},
		{Key: keySize, Value: buf[i2:i3:i3]},
		{Key: keyChecksum, Value: buf[i3:]},
	}
}

func appendHex8(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>uint(shift))&0xf])
	}
	return b
}

// Bits of ParseChunk's seen-header mask.
const (
	seenVersion = 1 << iota
	seenType
	seenChunk
	seenChunks
	seenSize
	seenChecksum
	seenAll = seenVersion | seenType | seenChunk | seenChunks | seenSize | seenChecksum
)

// ParseChunk reads one consumed record (sarama's ConsumerMessage has Key,
// Headers and Value) and checks everything that one chunk alone can tell:
// the job ID, every header (present once, well-formed, supported version),
// the index against the count, the sizes against the limits, and the data's
// length against the chunking rule. Headers of other names are ignored. The
// chunk's Data aliases value.
//
// When the key is a valid job ID but the rest breaks the format (a header
// missing, repeated or invalid, ks-chunks=0, ks-chunk >= ks-chunks, a data
// length the chunking rule forbids, an unsupported ks-version), the error is
// a *ChunkError: it carries the job ID and, when the value starts with a
// readable request payload, the job's routing, so that the job can be
// answered rather than only skipped. An invalid or missing key is a plain
// *FormatError: there is no job ID to answer under.
func ParseChunk(key []byte, headers []*sarama.RecordHeader, value []byte) (Chunk, error) {
	if err := validateJobIDBytes(key); err != nil {
		return Chunk{}, err
	}
	c, err := parseChunk(key, headers, value)
	if err != nil {
		return Chunk{}, newChunkError(key, headers, value, err)
	}
	return c, nil
}

// parseChunk is ParseChunk after the key was checked.
func parseChunk(key []byte, headers []*sarama.RecordHeader, value []byte) (Chunk, error) {
	var c Chunk
	var seen int
	var size, count, index uint64
	for _, h := range headers {
		if h == nil {
			continue
		}
		var bit int
		var err error
		switch string(h.Key) {
		case HeaderVersion:
			bit = seenVersion
			var v uint64
			if v, err = parseDecimal(HeaderVersion, h.Value, 10); err == nil && v != Version {
				err = formatErr(ErrUnsupportedVersion, HeaderVersion, "version %d, this implementation reads version %d", v, Version)
			}
		case HeaderType:
			bit = seenType
			switch string(h.Value) {
			case string(TypeRequest):
				c.Type = TypeRequest
			case string(TypeResponse):
				c.Type = TypeResponse
			default:
				err = malformed(HeaderType, "%q, want request or response", truncate(h.Value))
			}
		case HeaderChunk:
			bit = seenChunk
			index, err = parseDecimal(HeaderChunk, h.Value, maxChunkDigits)
		case HeaderChunks:
			bit = seenChunks
			count, err = parseDecimal(HeaderChunks, h.Value, maxChunkDigits)
		case HeaderSize:
			bit = seenSize
			size, err = parseDecimal(HeaderSize, h.Value, maxSizeDigits)
		case HeaderChecksum:
			bit = seenChecksum
			c.Checksum, err = parseHex32(h.Value)
		default:
			continue
		}
		if err != nil {
			return Chunk{}, err
		}
		if seen&bit != 0 {
			return Chunk{}, malformed(string(h.Key), "header appears more than once")
		}
		seen |= bit
	}
	if seen != seenAll {
		for _, m := range []struct {
			bit  int
			name string
		}{{seenVersion, HeaderVersion}, {seenType, HeaderType}, {seenChunk, HeaderChunk}, {seenChunks, HeaderChunks}, {seenSize, HeaderSize}, {seenChecksum, HeaderChecksum}} {
			if seen&m.bit == 0 {
				return Chunk{}, malformed(m.name, "missing header")
			}
		}
	}
	if size > MaxPayloadBytes {
		return Chunk{}, tooLarge(HeaderSize, "%d bytes, the limit is %d", size, MaxPayloadBytes)
	}
	if count == 0 {
		return Chunk{}, malformed(HeaderChunks, "0, a payload has at least one chunk")
	}
	if count > MaxChunks {
		return Chunk{}, tooLarge(HeaderChunks, "%d chunks, the limit is %d", count, MaxChunks)
	}
	if index >= count {
		return Chunk{}, malformed(HeaderChunk, "index %d is out of range for %d chunks", index, count)
	}
	c.JobID = string(key)
	c.Index, c.Count, c.Size = int(index), int(count), int(size)
	c.Data = value
	if err := checkChunkLength(c); err != nil {
		return Chunk{}, err
	}
	return c, nil
}

// Validate checks what ParseChunk checks of a chunk built in memory: the
// job ID, the type, the index against the count, the limits and the data's
// length against the chunking rule.
func (c Chunk) Validate() error {
	if err := ValidateJobID(c.JobID); err != nil {
		return err
	}
	if c.Type != TypeRequest && c.Type != TypeResponse {
		return malformed(HeaderType, "%q, want request or response", c.Type)
	}
	switch {
	case c.Size < 0:
		return malformed(HeaderSize, "negative size %d", c.Size)
	case c.Size > MaxPayloadBytes:
		return tooLarge(HeaderSize, "%d bytes, the limit is %d", c.Size, MaxPayloadBytes)
	case c.Count < 1:
		return malformed(HeaderChunks, "%d, a payload has at least one chunk", c.Count)
	case c.Count > MaxChunks:
		return tooLarge(HeaderChunks, "%d chunks, the limit is %d", c.Count, MaxChunks)
	case c.Index < 0 || c.Index >= c.Count:
		return malformed(HeaderChunk, "index %d is out of range for %d chunks", c.Index, c.Count)
	}
	return checkChunkLength(c)
}

// checkChunkLength applies the chunking rule: every chunk but the last holds
// L >= 1 bytes, the last holds the rest, between 1 and L bytes (an empty
// payload is one empty chunk).
func checkChunkLength(c Chunk) error {
	n, size, count := int64(len(c.Data)), int64(c.Size), int64(c.Count)
	switch {
	case count == 1:
		if n != size {
			return malformed("value", "the only chunk has %d bytes, ks-size says %d", n, size)
		}
	case !c.IsLast():
		// (count-1)*L < size <= count*L
		if n == 0 || (count-1)*n >= size || count*n < size {
			return malformed("value", "chunk %d of %d has %d bytes; chunks of that length cannot make a payload of %d bytes", c.Index, count, n, size)
		}
	default:
		rest := size - n
		if n == 0 || rest <= 0 || rest%(count-1) != 0 || rest/(count-1) < n {
			return malformed("value", "last chunk %d of %d has %d bytes; it cannot end a payload of %d bytes", c.Index, count, n, size)
		}
	}
	return nil
}

// Join puts a complete, ordered set of chunks of one payload back together,
// checking that they agree with each other and the checksum. It is the
// simple counterpart of Split for callers that collect all chunks first
// (the portal's assembler handles interleaved, partial and duplicate chunks).
func Join(chunks []Chunk) ([]byte, error) {
	if len(chunks) == 0 {
		return nil, malformed("chunks", "no chunks")
	}
	first := chunks[0]
	if first.Count != len(chunks) {
		return nil, malformed(HeaderChunks, "%d chunks given, they declare %d", len(chunks), first.Count)
	}
	if first.Size < 0 || first.Size > MaxPayloadBytes {
		return nil, tooLarge(HeaderSize, "%d bytes, the limit is %d", first.Size, MaxPayloadBytes)
	}
	out := make([]byte, first.Size)
	for i, c := range chunks {
		switch {
		case c.JobID != first.JobID:
			return nil, malformed("key", "chunk %d belongs to job %q, not %q", i, c.JobID, first.JobID)
		case c.Type != first.Type || c.Count != first.Count || c.Size != first.Size || c.Checksum != first.Checksum:
			return nil, malformed("chunks", "chunk %d's type, count, size or checksum differs from chunk 0's", i)
		case c.Index != i:
			return nil, malformed(HeaderChunk, "chunk at position %d has index %d", i, c.Index)
		case !c.IsLast() && len(c.Data) != len(first.Data):
			return nil, malformed("value", "chunk %d has %d bytes, chunk 0 has %d", i, len(c.Data), len(first.Data))
		}
		if err := checkChunkLength(c); err != nil {
			return nil, err
		}
		copy(out[c.Offset():], c.Data)
	}
	if last := chunks[len(chunks)-1]; last.Count > 1 && last.Offset() != (last.Count-1)*len(first.Data) {
		return nil, malformed("value", "last chunk has %d bytes, the others %d: they do not make %d bytes", len(last.Data), len(first.Data), first.Size)
	}
	if err := VerifyChecksum(out, first.Checksum); err != nil {
		return nil, err
	}
	return out, nil
}

// parseDecimal parses an unsigned ASCII decimal of 1 to maxDigits digits
// without allocating.
func parseDecimal(field string, b []byte, maxDigits int) (uint64, error) {
	if len(b) == 0 {
		return 0, malformed(field, "empty value, want a decimal number")
	}
	if len(b) > maxDigits {
		return 0, malformed(field, "%q has more than %d digits", truncate(b), maxDigits)
	}
	var v uint64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, malformed(field, "%q is not an unsigned decimal number", truncate(b))
		}
		v = v*10 + uint64(d-'0')
	}
	return v, nil
}

// parseHex32 parses 1 to 8 hex digits, either case.
func parseHex32(b []byte) (uint32, error) {
	if len(b) == 0 || len(b) > 8 {
		return 0, malformed(HeaderChecksum, "%q, want 8 hex digits", truncate(b))
	}
	var v uint32
	for _, d := range b {
		var x byte
		switch {
		case d >= '0' && d <= '9':
			x = d - '0'
		case d >= 'a' && d <= 'f':
			x = d - 'a' + 10
		case d >= 'A' && d <= 'F':
			x = d - 'A' + 10
		default:
			return 0, malformed(HeaderChecksum, "%q, want 8 hex digits", truncate(b))
		}
		v = v<<4 | uint32(x)
	}
	return v, nil
}

// truncate bounds a header value quoted in an error message.
func truncate(b []byte) string {
	const max = 40
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
