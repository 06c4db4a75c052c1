package packet

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// maxRemaining is the largest remaining length a 4-byte varint carries
// (268,435,455: 3.1.1 §2.2.3, 5.0 §1.5.5).
const maxRemaining = 1<<28 - 1

// Frame reports whether buf starts with a whole packet. It returns the
// packet's total length (fixed header plus remaining length), or 0 with a
// nil error when more bytes are needed. The error wraps MalformedPacket for
// a remaining length longer than 4 bytes or not in its minimal encoding
// (5.0 [MQTT-1.5.5-1]; 3.1.1 §2.2.3 defines only the minimal encoding, so
// it is refused for every version), or PacketTooLarge when the total length
// is over max (0 means the protocol limit, 256 MiB). PacketTooLarge is
// reported as soon as the length is known, before the body arrives.
// Frame does not look at the packet type or flags; Decode does.
func Frame(buf []byte, max int) (n int, err error) {
	n, err = Size(buf, max)
	if err != nil || n > len(buf) {
		return 0, err
	}
	return n, nil
}

// Size is Frame for a packet not yet whole: the total length of the
// packet buf starts with as soon as its fixed header is complete, however
// much of the rest buf holds (0 while the header is incomplete), so a
// reader can make room for exactly that. Errors as Frame.
func Size(buf []byte, max int) (n int, err error) {
	if len(buf) < 2 {
		return 0, nil
	}
	rem, mult := 0, 1
	for i := 1; ; i++ {
		if i > 4 {
			return 0, fmt.Errorf("%w: remaining length over 4 bytes", MalformedPacket)
		}
		if i >= len(buf) {
			return 0, nil
		}
		c := buf[i]
		rem += int(c&0x7F) * mult
		mult <<= 7
		if c&0x80 == 0 {
			if c == 0 && i > 1 {
				return 0, fmt.Errorf("%w: remaining length not minimally encoded [MQTT-1.5.5-1]", MalformedPacket)
			}
			n = i + 1 + rem
			break
		}
	}
	if max > 0 && n > max {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", PacketTooLarge, n, max)
	}
	return n, nil
}

// readVarint decodes a Variable Byte Integer from a whole packet body.
func readVarint(b []byte) (v, n int, err error) {
	mult := 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, fmt.Errorf("%w: truncated variable byte integer", MalformedPacket)
		}
		c := b[i]
		v += int(c&0x7F) * mult
		mult <<= 7
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, fmt.Errorf("%w: variable byte integer not minimally encoded [MQTT-1.5.5-1]", MalformedPacket)
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: variable byte integer over 4 bytes", MalformedPacket)
}

func varintLen(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v int) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

func readU16(b []byte) (uint16, []byte, error) {
	if len(b) < 2 {
		return 0, nil, fmt.Errorf("%w: truncated two byte integer", MalformedPacket)
	}
	return binary.BigEndian.Uint16(b), b[2:], nil
}

// readBinary reads a two-byte length and that many bytes (Binary Data,
// 5.0 §1.5.6). The result aliases b; a zero-length field is nil.
func readBinary(b []byte) ([]byte, []byte, error) {
	n, b, err := readU16(b)
	if err != nil {
		return nil, nil, err
	}
	if int(n) > len(b) {
		return nil, nil, fmt.Errorf("%w: %d byte field past the packet end", MalformedPacket, n)
	}
	if n == 0 {
		return nil, b, nil
	}
	return b[:n:n], b[n:], nil
}

// readString reads a UTF-8 Encoded String and checks it is well-formed
// with no U+0000 (3.1.1 [MQTT-1.5.3-1] [MQTT-1.5.3-2], 5.0 [MQTT-1.5.4-1]
// [MQTT-1.5.4-2]). The result aliases b.
func readString(b []byte) ([]byte, []byte, error) {
	s, b, err := readBinary(b)
	if err != nil {
		return nil, nil, err
	}
	if !ValidUTF8(s) {
		return nil, nil, fmt.Errorf("%w: ill-formed UTF-8 or U+0000 in a string [MQTT-1.5.3-1] [MQTT-1.5.4-1]", MalformedPacket)
	}
	return s, b, nil
}

// ValidUTF8 reports whether b is well-formed UTF-8 (no surrogates, no
// overlong forms) without U+0000, as every MQTT string must be.
func ValidUTF8(b []byte) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == 0 {
			return false
		}
		if c >= utf8.RuneSelf {
			// Slow path for the rest; U+0000 is only ever the byte 0.
			rest := b[i:]
			for _, c := range rest {
				if c == 0 {
					return false
				}
			}
			return utf8.Valid(rest)
		}
	}
	return true
}

func appendBytes(dst, s []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func bitIndex(m uint64) int { return bits.TrailingZeros64(m) }
