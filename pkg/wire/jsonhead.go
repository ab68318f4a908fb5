package wire

import (
	"encoding/binary"
	"slices"
	"strconv"
	"unicode/utf8"
)

// A response's metadata is encoded for every job: appendResponseMeta writes
// the bytes encoding/json's Marshal writes for a responseMeta (field order,
// omitted empty fields, sorted header names, the same string escaping,
// HTML characters included), without its reflection and map sorting
// machinery. TestResponseMetaMatchesMarshal holds it to that.

// appendResponseMeta appends the JSON of m to dst.
func appendResponseMeta(dst []byte, m *responseMeta) []byte {
	dst = append(dst, `{"status":`...)
	dst = strconv.AppendInt(dst, int64(m.Status), 10)
	if len(m.Headers) > 0 {
		dst = append(dst, `,"headers":{`...)
		names := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			names = append(names, k)
		}
		slices.Sort(names)
		for i, k := range names {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			vs := m.Headers[k]
			if vs == nil {
				dst = append(dst, "null"...)
				continue
			}
			dst = append(dst, '[')
			for j, v := range vs {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, v)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	if m.ErrorKind != "" {
		dst = append(dst, `,"errorKind":`...)
		dst = appendJSONString(dst, string(m.ErrorKind))
	}
	if m.ErrorMessage != "" {
		dst = append(dst, `,"errorMessage":`...)
		dst = appendJSONString(dst, m.ErrorMessage)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json does
// with HTML escaping: ", \ and control characters escaped, <, > and &
// as \u003c, \u003e and \u0026, invalid UTF-8 as \ufffd, U+2028 and U+2029
// escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// responseHeadOf is the prefix and metadata of a response payload with a
// body of bodyLen bytes.
func responseHeadOf(m *responseMeta, bodyLen int) ([]byte, error) {
	h := make([]byte, PrefixSize, PrefixSize+64+32*len(m.Headers)+len(m.ErrorMessage))
	h = appendResponseMeta(h, m)
	js := len(h) - PrefixSize
	if js > MaxMetadataBytes {
		return nil, tooLarge("metadata", "%d bytes of metadata, the limit is %d", js, MaxMetadataBytes)
	}
	if total := int64(len(h)) + int64(bodyLen); total > MaxPayloadBytes {
		return nil, tooLarge("payload", "%d bytes, the limit is %d", total, MaxPayloadBytes)
	}
	h[0], h[1], h[2], h[3] = magic0, magic1, Version, payloadTypeResponse
	binary.BigEndian.PutUint32(h[4:8], uint32(js))
	return h, nil
}
