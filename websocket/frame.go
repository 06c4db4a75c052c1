package websocket

import (
	"encoding/binary"
	"unicode/utf8"
)

// WebSocket opcodes and close codes (RFC 6455 §5.2, §7.4) and the
// application codes busbar uses for refusals in on_failure: "close" mode.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA

	finBit  = 0x80
	rsv1Bit = 0x40 // permessage-deflate: the message is compressed

	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseNoStatus        = 1005 // never sent: "no code in the frame"
	CloseInvalidPayload  = 1007 // text that is not UTF-8
	ClosePolicyViolation = 1008 // refused after the upgrade (nats-server: authorization)
	CloseMessageTooBig   = 1009
	CloseInternalError   = 1011
	CloseTryAgainLater   = 1013 // (busbar, on_failure: close) over a connection limit
	CloseUnauthorized    = 4401 // (busbar, on_failure: close) the HTTP 401 as a close code
	CloseForbidden       = 4403 // (busbar, on_failure: close) the HTTP 403 as a close code
)

// maxHeader is the largest frame header: 2 bytes, 8 of length, 4 of mask.
const maxHeader = 14

// appendHeader encodes an unmasked server frame header (FIN set) for a
// payload of n bytes into dst, which has room for maxHeader bytes.
func appendHeader(dst []byte, op byte, rsv byte, n int) []byte {
	dst = append(dst, finBit|rsv|op)
	switch {
	case n <= 125:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return dst
}

// headerLen reports the full length of a client frame header from its
// first two bytes (clients always mask: 4 more bytes).
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// closePayload is a close frame body: a big-endian code and a reason,
// cut to the 123 bytes a control frame leaves for it (on a rune boundary).
func closePayload(dst []byte, code int, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	if len(reason) > 123 {
		reason = reason[:123]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return append(dst, reason...)
}

// validCloseCode reports whether a client may send code (RFC 6455 §7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// utf8State validates text a chunk at a time: tail holds the bytes of a
// rune cut by a chunk boundary.
type utf8State struct {
	tail [utf8.UTFMax]byte
	n    int
}

// check validates the next chunk of a text message.
func (u *utf8State) check(p []byte) bool {
	// Complete a rune cut by the previous chunk, a byte at a time.
	for u.n > 0 {
		if len(p) == 0 {
			return true
		}
		u.tail[u.n] = p[0]
		u.n++
		p = p[1:]
		if utf8.FullRune(u.tail[:u.n]) {
			if !utf8.Valid(u.tail[:u.n]) {
				return false
			}
			u.n = 0
		}
	}
	// Hold back an incomplete rune at the end.
	end := len(p)
	for i := 1; i < utf8.UTFMax && i <= len(p); i++ {
		c := p[len(p)-i]
		if c&0xC0 != 0x80 { // a rune start
			if !utf8.FullRune(p[len(p)-i:]) {
				end = len(p) - i
			}
			break
		}
	}
	if !utf8.Valid(p[:end]) {
		return false
	}
	u.n = copy(u.tail[:], p[end:])
	return true
}

// done reports whether the message ended on a rune boundary.
func (u *utf8State) done() bool {
	ok := u.n == 0
	u.n = 0
	return ok
}
