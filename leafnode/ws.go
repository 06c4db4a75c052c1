package leafnode

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/busbar/busbar/transport"
)

// WebSocket leaf links (ws:// and wss:// remotes). A nats-server hub
// takes leaf connections on its `websocket {}` port: the upgrade request's
// path ends in "/leafnode" (anything else is a client), and from then on
// the leaf protocol travels in binary frames. wsConn turns the framed
// connection back into a byte stream, so the rest of the link sees a
// plain net.Conn.
//
// Frames from the leaf are masked, as RFC 6455 wants of a client, unless
// the remote sets ws_no_masking and the hub accepts it (it answers the
// Nats-No-Masking request header with the same header). ws_compression
// asks for permessage-deflate without context takeover either way, which
// is what nats-server offers.

// ErrWebSocket is a failed WebSocket upgrade to a hub.
var ErrWebSocket = errors.New("leafnode: websocket upgrade")

const (
	wsLeafPath        = "leafnode"
	wsNoMaskingHeader = "Nats-No-Masking"
	wsNoMaskingValue  = "true"
	// wsMaxMessage bounds one (inflated) message from the hub, as
	// nats-server bounds what it reads.
	wsMaxMessage = 64 << 20
	// wsCompressMin is the batch size from which a compressed link
	// deflates (smaller batches do not shrink).
	wsCompressMin = 64
	wsReadBuf     = 32 << 10

	wsOpCont   = 0x0
	wsOpText   = 0x1
	wsOpBinary = 0x2
	wsOpClose  = 0x8
	wsOpPing   = 0x9
	wsOpPong   = 0xA
	wsFin      = 0x80
	wsRsv1     = 0x40
	wsMaskBit  = 0x80
	wsMaxHdr   = 14
)

func isWS(u *url.URL) bool { return u.Scheme == "ws" || u.Scheme == "wss" }

// wsUpgrade sends the upgrade request for u on nc (TCP, or TLS already
// for wss://) and returns the framed connection. The whole exchange is
// bounded by the remote's first_info_timeout, as nats-server does.
func (l *link) wsUpgrade(nc net.Conn, u *url.URL) (*wsConn, error) {
	r := &l.r
	req := *u
	req.User = nil
	req.Path, req.RawPath = path.Join("/", u.Path, wsLeafPath), ""
	noMasking := false
	d := ws.Dialer{
		OnHeader: func(k, v []byte) error {
			if strings.EqualFold(string(k), wsNoMaskingHeader) && string(v) == wsNoMaskingValue {
				noMasking = true
			}
			return nil
		},
	}
	if r.WSNoMasking {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{wsNoMaskingHeader: {wsNoMaskingValue}})
	}
	if r.WSCompression {
		p := wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
		d.Extensions = []httphead.Option{p.Option()}
	}
	_ = nc.SetDeadline(time.Now().Add(r.FirstInfoTimeout))
	br, hs, err := d.Upgrade(nc, &req)
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) && int(se) == http.StatusNotFound {
			return nil, fmt.Errorf("%w %s: %w (is it the hub's websocket port?)", ErrWebSocket, redact(&req), err)
		}
		return nil, fmt.Errorf("%w %s: %w", ErrWebSocket, redact(&req), err)
	}
	c := &wsConn{nc: nc, mask: !(r.WSNoMasking && noMasking), sink: transport.ConnSink(nc)}
	for _, e := range hs.Extensions {
		if string(e.Name) != wsflate.ExtensionName {
			continue
		}
		var p wsflate.Parameters
		if err := p.Parse(e); err != nil || !p.ServerNoContextTakeover || !p.ClientNoContextTakeover {
			return nil, fmt.Errorf("%w %s: the hub's permessage-deflate parameters %q are not supported", ErrWebSocket, redact(&req), e.String())
		}
		c.deflate = true
	}
	var src io.Reader = nc
	if br != nil {
		pre, _ := br.Peek(br.Buffered())
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
		ws.PutReader(br)
	}
	c.r = bufio.NewReaderSize(src, wsReadBuf)
	l.log.Debug("leafnode: websocket upgraded", "url", redact(u), "compression", c.deflate, "masking", c.mask)
	return c, nil
}

// wsConn is a client WebSocket connection seen as a byte stream. Read is
// used by the link's read loop only; writes (the outbound writer's
// batches, the read loop's pongs and Close) hold wmu.
type wsConn struct {
	nc      net.Conn
	r       *bufio.Reader
	mask    bool // mask what we send (the hub did not accept no-masking)
	deflate bool // permessage-deflate was negotiated

	// Read loop state.
	hb       [wsMaxHdr]byte
	left     uint64 // payload bytes of the current data frame still to read
	rmask    [4]byte
	masked   bool // the current frame is masked (hubs do not mask; tolerated)
	maskPos  int
	inMsg    bool // a fragmented message is in progress
	zmsg     bool // ... and it is compressed
	zbuf     []byte
	pend     []byte // inflated bytes not yet returned
	pbuf     []byte // pend's buffer, reused
	inflater *wsflate.Reader
	ctrl     [125]byte
	rerr     error

	wmu     sync.Mutex // guards the fields below and writes to nc
	closed  bool       // a close frame was sent
	whdr    [wsMaxHdr]byte
	wbufs   net.Buffers
	scratch []byte
	sink    transport.Sink
	zw      *wsflate.Writer
	zout    bytes.Buffer
	once    sync.Once
}

var (
	_ net.Conn               = (*wsConn)(nil)
	_ transport.SinkProvider = (*wsConn)(nil)
)

// wsCloseError is the hub's close frame.
type wsCloseError struct {
	code   int
	reason string
}

func (e *wsCloseError) Error() string {
	if e.reason == "" {
		return fmt.Sprintf("leafnode: the hub closed the websocket (code %d)", e.code)
	}
	return fmt.Sprintf("leafnode: the hub closed the websocket (code %d: %s)", e.code, e.reason)
}

// Unwrap makes a close frame an io.EOF to callers.
func (e *wsCloseError) Unwrap() error { return io.EOF }

// Read returns message bytes. Read loop only.
func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if len(c.pend) > 0 {
			n := copy(p, c.pend)
			c.pend = c.pend[n:]
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.left > 0 {
			k := len(p)
			if uint64(k) > c.left {
				k = int(c.left)
			}
			n, err := c.r.Read(p[:k])
			if c.masked {
				ws.Cipher(p[:n], c.rmask, c.maskPos)
				c.maskPos += n
			}
			c.left -= uint64(n)
			if err != nil {
				c.rerr = eofUnexpected(err)
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err := c.nextFrame(); err != nil {
			c.rerr = err
		}
	}
}

func eofUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// nextFrame reads one frame header and handles what it can at once:
// control frames, and compressed frames (read whole, inflated at the
// end of their message). A plain data frame leaves c.left for Read.
func (c *wsConn) nextFrame() error {
	if _, err := io.ReadFull(c.r, c.hb[:2]); err != nil {
		return err
	}
	b0, b1 := c.hb[0], c.hb[1]
	n := 0
	switch b1 & 0x7F {
	case 126:
		n = 2
	case 127:
		n = 8
	}
	if b1&wsMaskBit != 0 {
		n += 4
	}
	if _, err := io.ReadFull(c.r, c.hb[2:2+n]); err != nil {
		return eofUnexpected(err)
	}
	size := uint64(b1 & 0x7F)
	switch size {
	case 126:
		size = uint64(binary.BigEndian.Uint16(c.hb[2:4]))
	case 127:
		size = binary.BigEndian.Uint64(c.hb[2:10])
	}
	c.masked = b1&wsMaskBit != 0
	if c.masked {
		copy(c.rmask[:], c.hb[2+n-4:2+n])
	}
	c.maskPos = 0
	fin, op, rsv := b0&wsFin != 0, b0&0x0F, b0&0x70
	switch op {
	case wsOpPing, wsOpPong, wsOpClose:
		if !fin || size > 125 || rsv != 0 {
			return c.protocolError("bad control frame")
		}
		return c.control(op, int(size))
	case wsOpText, wsOpBinary:
		if c.inMsg {
			return c.protocolError("new data frame inside a fragmented message")
		}
		if rsv&^wsRsv1 != 0 || (rsv == wsRsv1 && !c.deflate) {
			return c.protocolError("reserved bits set without a negotiated extension")
		}
		c.zmsg = rsv == wsRsv1
	case wsOpCont:
		if !c.inMsg || rsv != 0 {
			return c.protocolError("bad continuation frame")
		}
	default:
		return c.protocolError(fmt.Sprintf("unknown opcode %#x", op))
	}
	c.inMsg = !fin
	if !c.zmsg {
		c.left = size
		return nil
	}
	if size > uint64(wsMaxMessage-len(c.zbuf)) {
		return c.protocolError("compressed message too large")
	}
	start := len(c.zbuf)
	c.zbuf = append(c.zbuf, make([]byte, size)...)
	if _, err := io.ReadFull(c.r, c.zbuf[start:]); err != nil {
		return eofUnexpected(err)
	}
	if c.masked {
		ws.Cipher(c.zbuf[start:], c.rmask, 0)
	}
	if fin {
		return c.inflate()
	}
	return nil
}

// control reads a control frame's payload of n bytes and answers it.
func (c *wsConn) control(op byte, n int) error {
	body := c.ctrl[:n]
	if _, err := io.ReadFull(c.r, body); err != nil {
		return eofUnexpected(err)
	}
	if c.masked {
		ws.Cipher(body, c.rmask, 0)
	}
	switch op {
	case wsOpPing:
		return c.writeControl(wsOpPong, body)
	case wsOpPong:
		return nil
	}
	ce := &wsCloseError{code: 1005}
	if n >= 2 {
		ce.code = int(binary.BigEndian.Uint16(body))
		ce.reason = string(body[2:])
	}
	echo := body
	if n < 2 {
		echo = nil
	}
	_ = c.writeControl(wsOpClose, echo)
	return ce
}

func (c *wsConn) protocolError(what string) error {
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], 1002)
	_ = c.writeControl(wsOpClose, body[:])
	return fmt.Errorf("leafnode: websocket protocol error from the hub: %s", what)
}

// inflate decompresses the message in zbuf onto pend.
func (c *wsConn) inflate() error {
	if c.inflater == nil {
		c.inflater = wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor {
			return flate.NewReader(r)
		})
	}
	c.inflater.Reset(bytes.NewReader(c.zbuf))
	buf := bytes.NewBuffer(c.pbuf[:0])
	_, err := buf.ReadFrom(&io.LimitedReader{R: c.inflater, N: wsMaxMessage + 1})
	c.pbuf = buf.Bytes()
	if cap(c.pbuf) > 256<<10 {
		c.pbuf = nil
	}
	c.pend = buf.Bytes()
	c.zbuf = c.zbuf[:0]
	if cap(c.zbuf) > 256<<10 {
		c.zbuf = nil
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return c.protocolError("compressed message does not inflate")
	}
	if len(c.pend) > wsMaxMessage {
		return c.protocolError("inflated message too large")
	}
	return nil
}

// appendWSHeader encodes a frame header (FIN set) for n payload bytes,
// with the mask key when masked.
func appendWSHeader(dst []byte, b0 byte, n int, masked bool, key [4]byte) []byte {
	var mb byte
	if masked {
		mb = wsMaskBit
	}
	dst = append(dst, wsFin|b0)
	switch {
	case n <= 125:
		dst = append(dst, mb|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, mb|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, mb|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if masked {
		dst = append(dst, key[:]...)
	}
	return dst
}

func newMaskKey() (k [4]byte) {
	binary.LittleEndian.PutUint32(k[:], rand.Uint32())
	return k
}

// writeControl writes one control frame. Any goroutine.
func (c *wsConn) writeControl(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	if op == wsOpClose {
		c.closed = true
	}
	return c.writeLocked(op, net.Buffers{payload}, len(payload))
}

// writeLocked writes bufs (total bytes) as the payload of one frame.
// c.wmu held.
func (c *wsConn) writeLocked(b0 byte, bufs net.Buffers, total int) error {
	if !c.mask {
		hdr := appendWSHeader(c.whdr[:0], b0, total, false, [4]byte{})
		iov := append(append(c.wbufs[:0], hdr), bufs...)
		c.wbufs = iov
		_, err := c.sink.WriteBuffers(&iov)
		clear(c.wbufs) // drop payload references for the GC
		if cap(c.wbufs) > 1024 {
			c.wbufs = nil
		}
		return err
	}
	// A masked payload is XORed in a copy: the buffers are shared.
	key := newMaskKey()
	buf := appendWSHeader(c.scratch[:0], b0, total, true, key)
	hl := len(buf)
	for _, p := range bufs {
		buf = append(buf, p...)
	}
	ws.Cipher(buf[hl:], key, 0)
	_, err := c.nc.Write(buf)
	c.scratch = buf[:0]
	if cap(c.scratch) > 1<<20 {
		c.scratch = nil
	}
	return err
}

// writeData sends bufs as one binary frame, deflated when negotiated and
// worth it. Any goroutine.
func (c *wsConn) writeData(bufs net.Buffers) (int, error) {
	total := 0
	for _, p := range bufs {
		total += len(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if !c.deflate || total < wsCompressMin {
		if err := c.writeLocked(wsOpBinary, bufs, total); err != nil {
			return 0, err
		}
		return total, nil
	}
	c.zout.Reset()
	if c.zw == nil {
		c.zw = wsflate.NewWriter(&c.zout, func(w io.Writer) wsflate.Compressor {
			fw, _ := flate.NewWriter(w, flate.BestSpeed)
			return fw
		})
	} else {
		c.zw.Reset(&c.zout)
	}
	for _, p := range bufs {
		if _, err := c.zw.Write(p); err != nil {
			return 0, err
		}
	}
	if err := c.zw.Flush(); err != nil {
		return 0, err
	}
	err := c.writeLocked(wsOpBinary|wsRsv1, net.Buffers{c.zout.Bytes()}, c.zout.Len())
	if c.zout.Cap() > 256<<10 {
		c.zout = bytes.Buffer{}
	}
	if err != nil {
		return 0, err
	}
	return total, nil
}

// Write sends p as one binary frame. Any goroutine.
func (c *wsConn) Write(p []byte) (int, error) { return c.writeData(net.Buffers{p}) }

// Sink frames each outbound batch as one message (transport.SinkProvider).
func (c *wsConn) Sink() transport.Sink { return wsSink{c} }

type wsSink struct{ c *wsConn }

func (s wsSink) WriteBuffers(b *net.Buffers) (int64, error) {
	n, err := s.c.writeData(*b)
	*b = (*b)[:0]
	return int64(n), err
}

// Close sends a close frame (1000) unless a writer is stuck on the
// socket, then closes it. Any goroutine; idempotent.
func (c *wsConn) Close() error {
	var err error
	c.once.Do(func() {
		if c.wmu.TryLock() {
			if !c.closed {
				c.closed = true
				var body [2]byte
				binary.BigEndian.PutUint16(body[:], 1000)
				_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				_ = c.writeLocked(wsOpClose, net.Buffers{body[:]}, 2)
			}
			c.wmu.Unlock()
		}
		err = c.nc.Close()
	})
	return err
}

// LocalAddr, RemoteAddr and the deadlines are the underlying connection's.
func (c *wsConn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
