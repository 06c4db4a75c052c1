package websocket

import (
	"bytes"
	"compress/flate"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/busbar/busbar/transport"
)

// Conn is an upgraded WebSocket connection seen as a byte stream, so the
// NATS and MQTT protocol code runs on it unchanged.
//
// Read decodes client frames in place: the raw bytes are read into the
// caller's buffer and the unmasked payloads are moved down over the frame
// headers, so the connection keeps no read buffer of its own (a few dozen
// bytes for a header or a control frame cut by a read). Control frames are
// answered here. The read side is used by one goroutine (the protocol's
// read loop).
//
// Writes go out as binary frames: Sink frames a whole outbound batch with
// one header and writev, no payload copied; Write frames one buffer. Both,
// and the control frames the reader sends, hold wmu.
type Conn struct {
	nc net.Conn // the raw (or TLS) connection, after the upgrade

	maxMsg  int // largest message payload accepted (close 1009 past it)
	deflate bool

	// Read loop state.
	hdr      [maxHeader]byte // a frame header being collected
	hn       int
	left     uint64 // payload bytes of the current frame still to come
	mask     [4]byte
	maskPos  int
	op       byte // opcode of the current frame
	fin      bool
	inMsg    bool // a fragmented data message is in progress
	text     bool // ... and it is a text message
	zmsg     bool // ... and it is compressed
	msgLen   int  // payload bytes of the message so far
	ctrl     []byte
	utf      utf8State
	zbuf     []byte // a compressed message being collected
	pend     []byte // decoded bytes not yet returned (after inflating)
	inflater *wsflate.Reader
	rerr     error       // an error to return once pend is empty
	peerDone atomic.Bool // the client sent a close frame

	wmu      sync.Mutex // guards the write side below and writes to nc
	whdr     [maxHeader]byte
	wbufs    net.Buffers
	sink     transport.Sink
	zw       *wsflate.Writer
	zout     bytes.Buffer
	closed   bool // a close frame was sent
	code     atomic.Int32
	reason   atomic.Pointer[string]
	onceDone sync.Once
}

var _ net.Conn = (*Conn)(nil)

// newConn wraps nc once the upgrade response is written.
func newConn(nc net.Conn, maxMsg int, deflate bool) *Conn {
	return &Conn{nc: nc, maxMsg: maxMsg, deflate: deflate, sink: transport.ConnSink(nc)}
}

// closeError is a reason to close the connection with a close code.
type closeError struct {
	code int
	msg  string
}

func (e *closeError) Error() string { return fmt.Sprintf("websocket: %s (close %d)", e.msg, e.code) }

// errPeerClosed is returned by Read after the client's close frame was read.
var errPeerClosed = io.EOF

func protoErr(format string, args ...any) error {
	return &closeError{code: CloseProtocolError, msg: fmt.Sprintf(format, args...)}
}

// Read returns decoded message bytes. Read loop only.
func (c *Conn) Read(p []byte) (int, error) {
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
		n, err := c.nc.Read(p)
		w, derr := c.decode(p[:n])
		if derr != nil {
			c.fail(derr)
			err = derr
		}
		if err != nil {
			c.rerr = err
		}
		if w > 0 {
			return w, nil
		}
	}
}

// fail records why the connection is being closed by the server.
func (c *Conn) fail(err error) {
	var ce *closeError
	if errors.As(err, &ce) {
		c.SetCloseStatus(ce.code, ce.msg)
		c.Close()
	}
}

// decode turns raw bytes b into payload bytes moved to the front of b
// (and to pend, once something had to be inflated). Read loop only.
func (c *Conn) decode(b []byte) (int, error) {
	w, i := 0, 0
	for i < len(b) && !c.peerDone.Load() {
		if c.left == 0 && c.hn >= 0 {
			k, err := c.header(b[i:])
			i += k
			if err != nil {
				return w, err
			}
			if c.hn != 0 || c.left > 0 {
				continue // header incomplete, or payload follows
			}
			if err := c.frameEnd(); err != nil { // an empty frame
				return w, err
			}
			continue
		}
		k := len(b) - i
		if uint64(k) > c.left {
			k = int(c.left)
		}
		seg := b[i : i+k]
		ws.Cipher(seg, c.mask, c.maskPos)
		c.maskPos += k
		c.left -= uint64(k)
		i += k
		switch {
		case c.op >= opClose:
			c.ctrl = append(c.ctrl, seg...)
		case c.zmsg:
			c.zbuf = append(c.zbuf, seg...)
		default:
			if c.text && !c.utf.check(seg) {
				return w, &closeError{code: CloseInvalidPayload, msg: "text frame is not valid UTF-8"}
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

// header collects and checks a frame header from b; it returns how many
// bytes it used. c.hn is 0 once a header is complete.
func (c *Conn) header(b []byte) (int, error) {
	used := 0
	if c.hn < 2 {
		k := copy(c.hdr[c.hn:2], b)
		c.hn += k
		used += k
		if c.hn < 2 {
			return used, nil
		}
	}
	need := headerLen(c.hdr[1])
	k := copy(c.hdr[c.hn:need], b[used:])
	c.hn += k
	used += k
	if c.hn < need {
		return used, nil
	}
	c.hn = 0
	return used, c.startFrame(need)
}

// startFrame applies the rules of RFC 6455 §5 and RFC 7692 to a complete
// header of n bytes.
func (c *Conn) startFrame(n int) error {
	b0, b1 := c.hdr[0], c.hdr[1]
	c.fin = b0&finBit != 0
	c.op = b0 & 0x0F
	rsv := b0 & 0x70
	if b1&0x80 == 0 {
		return protoErr("client frame is not masked")
	}
	var size uint64
	switch l := b1 & 0x7F; l {
	case 126:
		size = uint64(binary.BigEndian.Uint16(c.hdr[2:4]))
	case 127:
		size = binary.BigEndian.Uint64(c.hdr[2:10])
	default:
		size = uint64(l)
	}
	copy(c.mask[:], c.hdr[n-4:n])
	c.maskPos = 0
	c.left = size
	switch c.op {
	case opClose, opPing, opPong:
		if !c.fin || size > 125 {
			return protoErr("control frame fragmented or longer than 125 bytes")
		}
		if rsv != 0 {
			return protoErr("reserved bits set on a control frame")
		}
		c.ctrl = c.ctrl[:0]
		return nil
	case opText, opBinary:
		if c.inMsg {
			return protoErr("new data frame before the previous message ended")
		}
		if rsv&^rsv1Bit != 0 || (rsv == rsv1Bit && !c.deflate) {
			return protoErr("reserved bits set without a negotiated extension")
		}
		c.inMsg, c.text, c.zmsg, c.msgLen = true, c.op == opText, rsv == rsv1Bit, 0
	case opContinuation:
		if !c.inMsg {
			return protoErr("continuation frame without a message")
		}
		if rsv != 0 {
			return protoErr("reserved bits set on a continuation frame")
		}
	default:
		return protoErr("unknown opcode %#x", c.op)
	}
	if size > uint64(c.maxMsg-c.msgLen) {
		return &closeError{code: CloseMessageTooBig, msg: fmt.Sprintf("message larger than %d bytes", c.maxMsg)}
	}
	c.msgLen += int(size)
	return nil
}

// frameEnd runs when the current frame's payload is complete.
func (c *Conn) frameEnd() error {
	switch c.op {
	case opPing:
		return c.control(opPong, c.ctrl)
	case opPong:
		return nil
	case opClose:
		return c.peerClose()
	}
	if !c.fin {
		return nil
	}
	c.inMsg = false
	if c.zmsg {
		return c.inflate()
	}
	if c.text && !c.utf.done() {
		return &closeError{code: CloseInvalidPayload, msg: "text message ends inside a UTF-8 sequence"}
	}
	return nil
}

// inflate decompresses the message collected in zbuf onto pend, capped
// at maxMsg inflated bytes; text is checked after inflating.
func (c *Conn) inflate() error {
	if c.inflater == nil {
		c.inflater = wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor {
			return flate.NewReader(r)
		})
	}
	c.inflater.Reset(bytes.NewReader(c.zbuf))
	start := len(c.pend)
	lr := io.LimitedReader{R: c.inflater, N: int64(c.maxMsg) + 1}
	buf := bytes.NewBuffer(c.pend)
	_, err := buf.ReadFrom(&lr)
	c.pend = buf.Bytes()
	c.zbuf = c.zbuf[:0]
	if cap(c.zbuf) > 64<<10 {
		c.zbuf = nil
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return &closeError{code: CloseInvalidPayload, msg: "compressed message does not inflate"}
	}
	if len(c.pend)-start > c.maxMsg {
		return &closeError{code: CloseMessageTooBig, msg: fmt.Sprintf("inflated message larger than %d bytes", c.maxMsg)}
	}
	if c.text {
		var u utf8State
		if !u.check(c.pend[start:]) || !u.done() {
			return &closeError{code: CloseInvalidPayload, msg: "text message is not valid UTF-8"}
		}
	}
	return nil
}

// peerClose answers the client's close frame with the same code and ends
// the read side.
func (c *Conn) peerClose() error {
	code := CloseNoStatus
	var reason []byte
	switch {
	case len(c.ctrl) == 1:
		return protoErr("close frame with a one-byte body")
	case len(c.ctrl) >= 2:
		code = int(binary.BigEndian.Uint16(c.ctrl))
		reason = c.ctrl[2:]
		if !validCloseCode(code) {
			return protoErr("close code %d is not allowed", code)
		}
		if !utf8.Valid(reason) {
			return &closeError{code: CloseInvalidPayload, msg: "close reason is not valid UTF-8"}
		}
	}
	c.peerDone.Store(true)
	if code == CloseNoStatus {
		code = CloseNormal
	}
	c.SetCloseStatus(code, "")
	c.rerr = errPeerClosed
	return nil
}

// control writes one control frame. Any goroutine.
func (c *Conn) control(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	if op == opClose {
		c.closed = true
	}
	hdr := appendHeader(c.whdr[:0], op, 0, len(payload))
	iov := append(c.wbufs[:0], hdr, payload)
	c.wbufs = iov
	_, err := iov.WriteTo(c.nc)
	clear(c.wbufs)
	return err
}

// Ping sends a ping frame (websocket { ping_interval }).
func (c *Conn) Ping() error { return c.control(opPing, nil) }

// SetCloseStatus sets the code and reason of the close frame sent when
// the connection closes (the first call wins). It implements
// transport.CloseStatuser. Any goroutine.
func (c *Conn) SetCloseStatus(code int, reason string) {
	if c.code.CompareAndSwap(0, int32(code)) {
		c.reason.Store(&reason)
	}
}

// Close sends the close frame (code 1000 unless set) and closes the
// connection. Any goroutine; idempotent.
func (c *Conn) Close() error {
	var err error
	c.onceDone.Do(func() {
		c.code.CompareAndSwap(0, CloseNormal)
		reason := ""
		if r := c.reason.Load(); r != nil {
			reason = *r
		}
		// A writer stuck on a slow peer holds wmu: then the socket is
		// closed at once, without a close frame, which unblocks it.
		sent := false
		if c.wmu.TryLock() {
			if !c.closed {
				c.closed = true
				var body [125]byte
				_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				payload := closePayload(body[:0], int(c.code.Load()), reason)
				hdr := appendHeader(c.whdr[:0], opClose, 0, len(payload))
				iov := append(c.wbufs[:0], hdr, payload)
				_, werr := iov.WriteTo(c.nc)
				sent = werr == nil
			}
			c.wmu.Unlock()
		}
		// The client answers a close frame with its own: stop writing but
		// keep reading a moment, so its answer does not meet a reset
		// socket and hide what was sent before (an -ERR, a CONNACK).
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && sent && !c.peerDone.Load() {
			err = cw.CloseWrite()
			time.AfterFunc(closeLinger, func() { _ = c.nc.Close() })
			return
		}
		err = c.nc.Close()
	})
	return err
}

// closeLinger is how long a closed connection waits for the client's
// close frame before the socket is closed.
const closeLinger = time.Second

// Write sends p as one binary frame. Any goroutine.
func (c *Conn) Write(p []byte) (int, error) {
	bufs := net.Buffers{p}
	n, err := c.writeFrame(&bufs)
	if n > len(p) {
		n = len(p)
	}
	return n, err
}

// Sink returns the writer the protocol's outbound queue uses: one frame
// per batch (transport.SinkProvider).
func (c *Conn) Sink() transport.Sink { return frameSink{c} }

type frameSink struct{ c *Conn }

func (s frameSink) WriteBuffers(b *net.Buffers) (int64, error) {
	n, err := s.c.writeFrame(b)
	*b = (*b)[:0]
	return int64(n), err
}

// compressMin is the batch size from which a compressed connection
// deflates (as nats-server, smaller batches are not worth it).
const compressMin = 64

// writeFrame writes the buffers as the payload of one binary frame.
func (c *Conn) writeFrame(b *net.Buffers) (int, error) {
	total := 0
	for _, p := range *b {
		total += len(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.deflate && total >= compressMin {
		return c.writeDeflated(b, total)
	}
	hdr := appendHeader(c.whdr[:0], opBinary, 0, total)
	// wbufs keeps its array across flushes: WriteBuffers consumes the
	// slice it is given, so it gets a copy of the header.
	iov := append(append(c.wbufs[:0], hdr), *b...)
	c.wbufs = iov
	n, err := c.sink.WriteBuffers(&iov)
	clear(c.wbufs) // drop payload references for the GC
	if cap(c.wbufs) > 1024 {
		c.wbufs = nil
	}
	return int(n) - len(hdr), err
}

// writeDeflated compresses a batch into one frame (no context takeover:
// each frame is compressed on its own). c.wmu held.
func (c *Conn) writeDeflated(b *net.Buffers, total int) (int, error) {
	c.zout.Reset()
	if c.zw == nil {
		c.zw = wsflate.NewWriter(&c.zout, func(w io.Writer) wsflate.Compressor {
			fw, _ := flate.NewWriter(w, flate.BestSpeed)
			return fw
		})
	} else {
		c.zw.Reset(&c.zout)
	}
	for _, p := range *b {
		if _, err := c.zw.Write(p); err != nil {
			return 0, err
		}
	}
	if err := c.zw.Flush(); err != nil {
		return 0, err
	}
	hdr := appendHeader(c.whdr[:0], opBinary, rsv1Bit, c.zout.Len())
	iov := append(c.wbufs[:0], hdr, c.zout.Bytes())
	c.wbufs = iov
	_, err := c.sink.WriteBuffers(&iov)
	clear(c.wbufs)
	if c.zout.Cap() > 256<<10 {
		c.zout = bytes.Buffer{}
	}
	if err != nil {
		return 0, err
	}
	return total, nil
}

// LocalAddr, RemoteAddr and the deadlines are the underlying connection's.
func (c *Conn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// TLSState is the TLS state of a wss:// connection, nil for ws://
// (transport.TLSStateProvider: verify_and_map works over WebSocket).
func (c *Conn) TLSState() *tls.ConnectionState { return transport.TLSState(c.nc) }

// NetConn is the connection under the WebSocket framing (TLS state).
func (c *Conn) NetConn() net.Conn { return c.nc }
