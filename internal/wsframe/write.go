package wsframe

import (
	"bytes"
	"compress/flate"
	"net"

	"github.com/gobwas/ws"
)

// WriteBuffers sends the buffers as one binary message, one frame: a
// header ahead of them and one call to the BuffersWriter (writev), the
// payload deflated first when that was negotiated and it is at least
// CompressMin bytes. It empties *b and returns the payload bytes
// written. The buffers are neither changed nor kept (a masked frame is
// XORed in a copy), so they may be shared. A Codec is a transport.Sink
// this way. Any goroutine.
func (c *Codec) WriteBuffers(b *net.Buffers) (int64, error) {
	n, err := c.writeMessage(*b)
	*b = (*b)[:0]
	return int64(n), err
}

// Write sends p as one binary message. Any goroutine.
func (c *Codec) Write(p []byte) (int, error) {
	return c.writeMessage(net.Buffers{p})
}

// writeMessage sends bufs as one binary message.
func (c *Codec) writeMessage(bufs net.Buffers) (int, error) {
	total := 0
	for _, p := range bufs {
		total += len(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	if !c.cfg.Deflate || total < c.cfg.CompressMin {
		return c.writeFrame(ws.OpBinary, 0, bufs, total)
	}
	z, err := c.compress(bufs)
	if err != nil {
		return 0, err
	}
	_, err = c.writeFrame(ws.OpBinary, rsv1, net.Buffers{z}, len(z))
	if c.zout.Cap() > 256<<10 {
		c.zout = bytes.Buffer{}
	}
	if err != nil {
		return 0, err
	}
	return total, nil
}

// writeFrame writes bufs (total bytes) as the payload of one final frame
// and returns the payload bytes written. c.wmu held.
func (c *Codec) writeFrame(op ws.OpCode, rsv byte, bufs net.Buffers, total int) (int, error) {
	h := ws.Header{Fin: true, Rsv: rsv, OpCode: op, Length: int64(total)}
	if !c.mask {
		hdr := c.hb.encode(h)
		c.iov = append(append(c.iov[:0], hdr), bufs...)
		n, err := c.writeIOV()
		return max(int(n)-len(hdr), 0), err
	}
	h.Masked, h.Mask = true, ws.NewMask()
	buf := append(c.scratch[:0], c.hb.encode(h)...)
	hl := len(buf)
	for _, p := range bufs {
		buf = append(buf, p...)
	}
	ws.Cipher(buf[hl:], h.Mask, 0)
	c.iov = append(c.iov[:0], buf)
	n, err := c.writeIOV()
	c.scratch = buf[:0]
	if cap(c.scratch) > 1<<20 {
		c.scratch = nil
	}
	return max(int(n)-hl, 0), err
}

// writeIOV writes c.iov, then forgets its payload references (for the
// GC) and an array grown past a usual batch. WriteBuffers consumes the
// slice it is given: it gets c.wv, a copy kept in the Codec so that
// passing its address allocates nothing. c.wmu held.
func (c *Codec) writeIOV() (int64, error) {
	c.wv = c.iov
	n, err := c.out.WriteBuffers(&c.wv)
	c.wv = nil
	clear(c.iov)
	if cap(c.iov) > 1024 {
		c.iov = nil
	}
	return n, err
}

// compressTail is the sync-flush marker (an empty stored block) that
// ends a flushed DEFLATE stream; RFC 7692 §7.2.1 strips it from the
// message and the reader puts it back.
var compressTail = []byte{0x00, 0x00, 0xff, 0xff}

// compress deflates bufs as one message: a fresh context each time, or
// the running one under WriteTakeover. The result lives in c.zout until
// the next call. c.wmu held.
func (c *Codec) compress(bufs net.Buffers) ([]byte, error) {
	c.zout.Reset()
	switch {
	case c.zw == nil:
		c.zw, _ = flate.NewWriter(&c.zout, flate.BestSpeed) // fails only for a bad level
	case !c.cfg.WriteTakeover:
		c.zw.Reset(&c.zout)
	}
	for _, p := range bufs {
		if _, err := c.zw.Write(p); err != nil {
			return nil, err
		}
	}
	if err := c.zw.Flush(); err != nil {
		return nil, err
	}
	z, ok := bytes.CutSuffix(c.zout.Bytes(), compressTail)
	if !ok {
		return nil, errBadCompressor
	}
	return z, nil
}

// writeControl writes one control frame; nothing once the close frame
// was sent. Any goroutine.
func (c *Codec) writeControl(op ws.OpCode, payload []byte) error {
	if len(payload) > ws.MaxControlFramePayloadSize {
		return ErrControlTooLong
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	_, err := c.writeFrame(op, 0, net.Buffers{payload}, len(payload))
	return err
}

// Ping sends a ping frame with payload (at most 125 bytes); nothing once
// the close frame was sent. Any goroutine.
func (c *Codec) Ping(payload []byte) error { return c.writeControl(ws.OpPing, payload) }

// WriteClose sends the close frame, unless one was sent already: code
// and reason (made valid UTF-8 and cut to fit; code 0 or 1005 sends an
// empty body). Every data write after it fails with ErrClosed. With wait
// false it gives up at once while another write is in progress (a
// writer stuck on a slow peer: the owner then closes the socket without
// a close frame, which unblocks it). sent reports whether this call
// wrote the frame. Any goroutine.
func (c *Codec) WriteClose(code int, reason string, wait bool) (sent bool, err error) {
	if wait {
		c.wmu.Lock()
	} else if !c.wmu.TryLock() {
		return false, nil
	}
	defer c.wmu.Unlock()
	if c.closed {
		return false, nil
	}
	c.closed = true
	var body [ws.MaxControlFramePayloadSize]byte
	p := closeBody(body[:0], code, reason)
	_, err = c.writeFrame(ws.OpClose, 0, net.Buffers{p}, len(p))
	return err == nil, err
}
