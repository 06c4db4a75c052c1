package websocket

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/internal/wsframe"
	"github.com/busbar/busbar/transport"
)

// Conn is an upgraded WebSocket connection seen as a byte stream, so the
// NATS and MQTT protocol code runs on it unchanged. Its framing is the
// server end of an internal/wsframe codec.
//
// Read decodes client frames in place: the raw bytes are read into the
// caller's buffer and the unmasked payloads are moved down over the frame
// headers, so the connection keeps no read buffer of its own (a few dozen
// bytes for a header or a control frame cut by a read). Pings and the
// client's close frame are answered by the codec. The read side is used
// by one goroutine (the protocol's read loop).
//
// Writes go out as binary frames: Sink frames a whole outbound batch with
// one header and writev, no payload copied; Write frames one buffer.
type Conn struct {
	nc net.Conn // the raw (or TLS) connection, after the upgrade
	fc *wsframe.Codec

	code     atomic.Int32
	reason   atomic.Pointer[string]
	onceDone sync.Once
}

var _ net.Conn = (*Conn)(nil)

// newConn wraps nc once the upgrade response is written. permessage-deflate
// is negotiated without context takeover either way (the transport's
// wsflate.Extension answers so).
func newConn(nc net.Conn, maxMsg int, deflate bool) *Conn {
	c := &Conn{nc: nc}
	c.fc = wsframe.New(nc, transport.ConnSink(nc), wsframe.Config{MaxMessage: maxMsg, Deflate: deflate, ReadEnd: c.readEnd})
	return c
}

// Read returns decoded message bytes. After the client's close frame it
// returns io.EOF; after a violation of the protocol it closes the
// connection with the violation's code (1002, 1007, 1009) and returns the
// *wsframe.CloseError. Read loop only.
func (c *Conn) Read(p []byte) (int, error) { return c.fc.Read(p) }

// readEnd records why the read side ended (wsframe.Config.ReadEnd).
// Read loop only.
func (c *Conn) readEnd(err error) error {
	var ce *wsframe.CloseError
	if !errors.As(err, &ce) {
		return err
	}
	if ce.Remote { // the codec answered it with the same code
		code := ce.Code
		if code == CloseNoStatus {
			code = CloseNormal
		}
		c.SetCloseStatus(code, "")
		return io.EOF
	}
	c.SetCloseStatus(ce.Code, ce.Reason)
	c.Close()
	return err
}

// Ping sends a ping frame (websocket { ping_interval }).
func (c *Conn) Ping() error { return c.fc.Ping(nil) }

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
		// A writer stuck on a slow peer holds the codec: then the socket
		// is closed at once, without a close frame, which unblocks it.
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		sent, _ := c.fc.WriteClose(int(c.code.Load()), reason, false)
		// The client answers a close frame with its own: stop writing but
		// keep reading a moment, so its answer does not meet a reset
		// socket and hide what was sent before (an -ERR, a CONNACK).
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && sent && !c.fc.PeerClosed() {
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
func (c *Conn) Write(p []byte) (int, error) { return c.fc.Write(p) }

// Sink returns the writer the protocol's outbound queue uses: one frame
// per batch, a 2-10 byte header ahead of the batch's buffers in one
// writev (transport.SinkProvider). Server frames are not masked, so the
// payload goes out unchanged.
func (c *Conn) Sink() transport.Sink { return c.fc }

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
