package matrix

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// A will's CONNECT is written by hand: the cells need the exact CONNACK
// code, to see the server close a refused connection, and to drop an
// accepted one without DISCONNECT (the will's trigger).

// CONNACK codes the will cells expect.
const (
	v311NotAuthorized = 0x05
	v5NotAuthorized   = 0x87
	v5TopicInvalid    = 0x90
)

// rawMQTT is a hand-driven MQTT connection over TCP or WebSocket.
type rawMQTT struct {
	conn net.Conn
	r    io.Reader // MQTT bytes from the server
	w    io.Writer // MQTT bytes to the server
	v    byte      // protocol level: 4 (3.1.1) or 5
}

// mqttLevel is the protocol level a transport of the matrix speaks.
func mqttLevel(x tp) byte {
	if x == mqtt5 {
		return 5
	}
	return 4
}

func dialRaw(t *testing.T, s *server, x tp) *rawMQTT {
	t.Helper()
	s.mu.Lock()
	mqttHP, wsURL := s.mqttHP, s.wsURL
	s.mu.Unlock()
	r := &rawMQTT{v: mqttLevel(x)}
	if x != mqttWS {
		conn, err := net.DialTimeout("tcp", mqttHP, wait)
		if err != nil {
			t.Fatalf("dial MQTT: %v", err)
		}
		r.conn, r.r, r.w = conn, conn, conn
		t.Cleanup(func() { conn.Close() })
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, br, _, err := ws.Dialer{Protocols: []string{"mqtt"}}.Dial(ctx, wsURL+"/mqtt")
	if err != nil {
		t.Fatalf("dial MQTT over WebSocket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	var src io.Reader = conn
	if br != nil && br.Buffered() > 0 {
		src = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), conn)
	}
	fr := &wsFrames{rw: struct {
		io.Reader
		io.Writer
	}{src, conn}}
	r.conn, r.r, r.w = conn, bufio.NewReader(fr), fr
	return r
}

// wsFrames carries a byte stream in client WebSocket frames.
type wsFrames struct {
	rw  io.ReadWriter
	buf []byte
}

func (f *wsFrames) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		data, _, err := wsutil.ReadServerData(f.rw)
		if err != nil {
			return 0, err
		}
		f.buf = data
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

func (f *wsFrames) Write(p []byte) (int, error) {
	if err := wsutil.WriteClientBinary(f.rw, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// will describes the will of a CONNECT.
type will struct {
	topic  string // MQTT topic
	retain bool
}

// connect sends CONNECT (user, password(user), clean start, the will at
// QoS 1) and returns the CONNACK code, or ok=false when the server closed
// the connection without a CONNACK.
func (r *rawMQTT) connect(t *testing.T, clientID, user string, w will) (code byte, ok bool) {
	t.Helper()
	flags := byte(0x80 | 0x40 | 0x02 | 0x04 | 1<<3) // user, password, clean, will, will QoS 1
	if w.retain {
		flags |= 0x20
	}
	var vh []byte
	vh = appendStr(vh, "MQTT")
	vh = append(vh, r.v, flags, 0, 60) // keep alive 60 s
	if r.v == 5 {
		vh = append(vh, 0) // no properties
	}
	vh = appendStr(vh, clientID)
	if r.v == 5 {
		vh = append(vh, 0) // no will properties
	}
	vh = appendStr(vh, w.topic)
	vh = appendStr(vh, "will of "+clientID)
	vh = appendStr(vh, user)
	vh = appendStr(vh, password(user))
	pkt := append([]byte{0x10}, appendVarint(nil, len(vh))...)
	pkt = append(pkt, vh...)
	_ = r.conn.SetDeadline(time.Now().Add(wait))
	if _, err := r.w.Write(pkt); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	hdr, body, err := r.readPacket()
	if err != nil {
		if errors.Is(err, io.EOF) || isClosed(err) {
			return 0, false
		}
		t.Fatalf("read CONNACK: %v", err)
	}
	if hdr>>4 != 2 || len(body) < 2 {
		t.Fatalf("want CONNACK, got packet type %d (%d bytes)", hdr>>4, len(body))
	}
	_ = r.conn.SetDeadline(time.Time{})
	return body[1], true
}

// readPacket reads one MQTT packet: its first header byte and its body.
func (r *rawMQTT) readPacket() (byte, []byte, error) {
	var one [1]byte
	if _, err := io.ReadFull(r.r, one[:]); err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		var b [1]byte
		if _, err := io.ReadFull(r.r, b[:]); err != nil {
			return 0, nil, err
		}
		n += int(b[0]&0x7f) * mul
		mul *= 128
		if b[0]&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, fmt.Errorf("malformed remaining length")
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.r, body); err != nil {
		return 0, nil, err
	}
	return one[0], body, nil
}

// waitClosed reads until the server closes the connection.
func (r *rawMQTT) waitClosed(t *testing.T) {
	t.Helper()
	_ = r.conn.SetDeadline(time.Now().Add(wait))
	for {
		if _, _, err := r.readPacket(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("the server kept a refused MQTT connection open for %v", wait)
			}
			return
		}
	}
}

// drop closes the socket without DISCONNECT: the will's trigger.
func (r *rawMQTT) drop() { r.conn.Close() }

func isClosed(err error) bool {
	var ce wsutil.ClosedError
	return errors.As(err, &ce) || errors.Is(err, net.ErrClosed)
}

func appendStr(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// willResult is what became of a CONNECT with a will.
type willResult struct {
	code     byte
	accepted bool // CONNACK 0
	closed   bool // closed without CONNACK
}

func (w willResult) String() string {
	switch {
	case w.closed:
		return "connection closed without CONNACK"
	case w.accepted:
		return "CONNACK 0x00 (accepted)"
	}
	return fmt.Sprintf("CONNACK 0x%02x", w.code)
}

// connectWill connects user over x with a will on topic. An accepted
// connection is dropped without DISCONNECT unless keep is set (then the
// caller drops it); a refused one is read until the server closes it.
func connectWill(t *testing.T, s *server, x tp, user, topic string, keep bool) (willResult, *rawMQTT) {
	t.Helper()
	r := dialRaw(t, s, x)
	code, ok := r.connect(t, uniqueID("w"), user, will{topic: topic, retain: true})
	res := willResult{code: code, accepted: ok && code == 0, closed: !ok}
	switch {
	case res.accepted && !keep:
		r.drop()
	case !res.accepted:
		r.waitClosed(t)
	}
	return res, r
}
