package wsframe

import (
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// Read returns decoded message bytes: the payloads of the data frames,
// messages back to back, as a byte stream. Read loop only.
//
// Frames are decoded in place: raw bytes are read into p and the
// unmasked payloads are moved down over the frame headers, so the codec
// keeps no read buffer of its own (a header or control frame cut by a
// read waits in a few dozen bytes). An inflated message waits in a
// pending buffer that later raw bytes queue behind.
//
// Pings are answered with a pong. The peer's close frame is answered
// with its code and ends the stream with a *CloseError (Remote; an
// io.EOF to errors.Is). A violation ends it with a *CloseError whose
// code the owner should close with (WriteClose); the bytes decoded
// before it are returned first. Errors are sticky; Config.ReadEnd sees
// the first.
func (c *Codec) Read(p []byte) (int, error) {
	for {
		if len(c.pend) > 0 {
			n := copy(p, c.pend)
			c.pend = c.pend[n:]
			if len(c.pend) == 0 {
				c.pend = c.pend[:0:0]
			}
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := c.src.Read(p)
		w, derr := c.decode(p[:n])
		if derr != nil {
			err = derr
		}
		if err != nil {
			if c.cfg.ReadEnd != nil {
				err = c.cfg.ReadEnd(err)
			}
			c.rerr = err
		}
		if w > 0 {
			return w, nil
		}
	}
}

// decode turns raw bytes b into payload bytes moved to the front of b
// (and to pend, once something had to be inflated). Read loop only.
func (c *Codec) decode(b []byte) (int, error) {
	w, i := 0, 0
	for i < len(b) && !c.peerDone.Load() {
		if c.left == 0 {
			k, done, err := c.header(b[i:])
			i += k
			if err != nil {
				return w, err
			}
			if done && c.left == 0 { // an empty frame
				if err := c.frameEnd(); err != nil {
					return w, err
				}
			}
			continue
		}
		k := len(b) - i
		if int64(k) > c.left {
			k = int(c.left)
		}
		seg := b[i : i+k]
		if c.h.Masked {
			ws.Cipher(seg, c.h.Mask, c.maskPos)
			c.maskPos += k
		}
		c.left -= int64(k)
		i += k
		switch {
		case c.h.OpCode.IsControl():
			c.ctrl = append(c.ctrl, seg...)
		case c.zmsg:
			c.zbuf = append(c.zbuf, seg...)
		default:
			if c.text && !c.utf.check(seg) {
				return w, invalidPayload("text frame is not valid UTF-8")
			}
			if len(c.pend) > 0 {
				c.pend = append(c.pend, seg...)
			} else {
				w += copy(b[w:], seg)
			}
		}
		if c.left == 0 {
			if err := c.frameEnd(); err != nil {
				return w, err
			}
		}
	}
	return w, nil
}

// header collects a frame header from b and starts the frame once it is
// complete; it returns how many bytes it used.
func (c *Codec) header(b []byte) (used int, done bool, err error) {
	if c.hn < 2 {
		k := copy(c.hdr[c.hn:2], b)
		c.hn += k
		used += k
		if c.hn < 2 {
			return used, false, nil
		}
	}
	need := headerLen(c.hdr[1])
	k := copy(c.hdr[c.hn:need], b[used:])
	c.hn += k
	used += k
	if c.hn < need {
		return used, false, nil
	}
	c.hn = 0
	return used, true, c.startFrame(need)
}

// startFrame starts the frame whose header of n bytes is complete, once
// it passes the checks, and applies the message size limit.
func (c *Codec) startFrame(n int) error {
	b0, b1 := c.hdr[0], c.hdr[1]
	h := &c.h // filled in place: a violation ends the stream anyway
	*h = ws.Header{Fin: b0&0x80 != 0, Rsv: b0 >> 4 & 7, OpCode: ws.OpCode(b0 & 0x0F), Masked: b1&0x80 != 0}
	switch l := b1 & 0x7F; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(c.hdr[2:4]))
	case 127:
		h.Length = int64(binary.BigEndian.Uint64(c.hdr[2:10]))
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], c.hdr[n-4:n])
	}
	compressed := false
	// The frame a connection mostly carries (final, binary or text, no
	// reserved bits, masked as this end expects, outside a fragmented
	// message) passes every check below: it skips them.
	usual := h.Fin && h.Rsv == 0 && !c.inMsg && h.Masked != c.cfg.Client &&
		(h.OpCode == ws.OpBinary || h.OpCode == ws.OpText) && h.Length >= 0
	if !usual {
		var err error
		if compressed, err = c.check(h); err != nil {
			return err
		}
	}
	c.maskPos, c.left = 0, h.Length
	if h.OpCode.IsControl() {
		c.ctrl = c.ctrl[:0]
		return nil
	}
	if h.OpCode != ws.OpContinuation {
		c.inMsg, c.text, c.zmsg, c.msgLen = true, h.OpCode == ws.OpText, compressed, 0
	}
	if h.Length > int64(c.cfg.MaxMessage-c.msgLen) {
		return &CloseError{Code: CloseMessageTooBig, Reason: fmt.Sprintf("message larger than %d bytes", c.cfg.MaxMessage)}
	}
	c.msgLen += int(h.Length)
	return nil
}

// check applies RFC 6455 §5 to h (ws.CheckHeader: opcodes, control
// frames, masking by side, reserved bits, continuation order) and RFC
// 7692 (RSV1 only on a message's first frame, cleared from h here); it
// reports whether the frame starts a compressed message.
func (c *Codec) check(h *ws.Header) (compressed bool, err error) {
	if h.Length < 0 {
		return false, protocolError("frame length with its most significant bit set")
	}
	var state ws.State // no masking rule when NoMasking on the server end
	switch {
	case c.cfg.Client:
		state = ws.StateClientSide
	case !c.cfg.NoMasking:
		state = ws.StateServerSide
	}
	if c.cfg.Deflate {
		state |= ws.StateExtended
	}
	if c.inMsg {
		state |= ws.StateFragmented
	}
	if err := ws.CheckHeader(*h, state); err != nil {
		return false, protocolError(err.Error())
	}
	var ms wsflate.MessageState
	if c.cfg.Deflate {
		if *h, err = ms.UnsetBits(*h); err != nil {
			return false, protocolError(err.Error())
		}
	}
	if h.Rsv != 0 {
		return false, protocolError("reserved bits set that no negotiated extension defines")
	}
	return ms.IsCompressed(), nil
}

// frameEnd runs when the current frame's payload is complete.
func (c *Codec) frameEnd() error {
	switch c.h.OpCode {
	case ws.OpPing:
		return c.writeControl(ws.OpPong, c.ctrl)
	case ws.OpPong:
		return nil
	case ws.OpClose:
		return c.peerClose()
	}
	if !c.h.Fin {
		return nil
	}
	c.inMsg = false
	if c.zmsg {
		return c.inflate()
	}
	if c.text && !c.utf.done() {
		return invalidPayload("text message ends inside a UTF-8 sequence")
	}
	return nil
}

// peerClose answers the peer's close frame with its code (1000 when it
// gave none) and ends the read side.
func (c *Codec) peerClose() error {
	code, reason := CloseNoStatus, ""
	switch {
	case len(c.ctrl) == 1:
		return protocolError("close frame with a one-byte body")
	case len(c.ctrl) >= 2:
		code = int(binary.BigEndian.Uint16(c.ctrl))
		if !validCloseCode(code) {
			return protocolError(fmt.Sprintf("close code %d is not allowed", code))
		}
		if !utf8.Valid(c.ctrl[2:]) {
			return invalidPayload("close reason is not valid UTF-8")
		}
		reason = string(c.ctrl[2:])
	}
	c.peerDone.Store(true)
	echo := code
	if echo == CloseNoStatus {
		echo = CloseNormal
	}
	// A write error here changes nothing: the stream ends either way.
	_, _ = c.WriteClose(echo, "", true)
	return &CloseError{Code: code, Reason: reason, Remote: true}
}

// inflate decompresses the message collected in zbuf onto pend, capped
// at MaxMessage inflated bytes; text is checked after inflating.
func (c *Codec) inflate() error {
	c.zr.Reset(c.zbuf)
	if c.inflater == nil {
		c.inflater = wsflate.NewReader(&c.zr, c.decompressor)
	} else {
		c.inflater.Reset(&c.zr)
	}
	start := len(c.pend)
	limit := start + c.cfg.MaxMessage + 1
	var err error
	for len(c.pend) < limit {
		if len(c.pend) == cap(c.pend) {
			c.pend = slices.Grow(c.pend, min(max(len(c.pend), 4096), limit-len(c.pend)))
		}
		var n int
		n, err = c.inflater.Read(c.pend[len(c.pend):cap(c.pend)])
		c.pend = c.pend[:len(c.pend)+n]
		if err != nil {
			break
		}
	}
	c.zbuf = c.zbuf[:0]
	if cap(c.zbuf) > 64<<10 {
		c.zbuf = nil
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return invalidPayload("compressed message does not inflate")
	}
	if len(c.pend)-start > c.cfg.MaxMessage {
		return &CloseError{Code: CloseMessageTooBig, Reason: fmt.Sprintf("inflated message larger than %d bytes", c.cfg.MaxMessage)}
	}
	msg := c.pend[start:]
	if c.text {
		var u utf8State
		if !u.check(msg) || !u.done() {
			return invalidPayload("text message is not valid UTF-8")
		}
	}
	if c.cfg.ReadTakeover {
		c.window = appendWindow(c.window, msg)
	}
	return nil
}

// decompressor is the wsflate.Reader's constructor: one flate reader,
// reset for each message, with the previous messages' window when the
// peer keeps its context.
func (c *Codec) decompressor(r io.Reader) wsflate.Decompressor {
	var dict []byte
	if c.cfg.ReadTakeover {
		dict = c.window
	}
	if c.fr == nil {
		c.fr = flate.NewReaderDict(r, dict)
	} else {
		_ = c.fr.(flate.Resetter).Reset(r, dict)
	}
	return c.fr
}

// windowSize is DEFLATE's largest window (RFC 1951): a message may refer
// back this far into the messages before it under context takeover.
const windowSize = 32 << 10

// appendWindow keeps the last windowSize bytes of w followed by p.
func appendWindow(w, p []byte) []byte {
	if len(p) >= windowSize {
		return append(w[:0], p[len(p)-windowSize:]...)
	}
	if over := len(w) + len(p) - windowSize; over > 0 {
		w = w[:copy(w, w[over:])]
	}
	return append(w, p...)
}
