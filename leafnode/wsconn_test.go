package leafnode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"

	"github.com/busbar/busbar/internal/wsframe"
	"github.com/busbar/busbar/transport"
)

// newTestWSConn is the client end of a WebSocket link whose hub end is
// the returned connection.
func newTestWSConn(t *testing.T) (*wsConn, net.Conn) {
	t.Helper()
	leaf, hub := net.Pipe()
	t.Cleanup(func() { leaf.Close(); hub.Close() })
	c := &wsConn{nc: leaf}
	c.fc = wsframe.New(leaf, transport.ConnSink(leaf), wsframe.Config{Client: true, ReadEnd: c.readEnd})
	return c, hub
}

// TestWSConnEnds: how a WebSocket link's read side ends. The hub's close
// frame is echoed and is the link's error (an io.EOF); a framing error
// from the hub (here a masked frame, which a server must not send) is
// answered with close 1002 and reported as one; what the link writes is
// masked.
func TestWSConnEnds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hubFrame ws.Frame
		want     error
		code     int
	}{
		{"hub close", ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "restart")), errWSClosed, 1001},
		{"masked frame", ws.MaskFrameWith(ws.NewBinaryFrame([]byte("PING\r\n")), [4]byte{1, 2, 3, 4}), errWSProtocol, 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, hub := newTestWSConn(t)
			go func() { _ = ws.WriteFrame(hub, tc.hubFrame) }()
			errc := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 64))
				errc <- err
			}()
			f, err := ws.ReadFrame(hub)
			if err != nil || f.Header.OpCode != ws.OpClose || !f.Header.Masked {
				t.Fatalf("the leaf answered %+v, %v", f.Header, err)
			}
			f = ws.UnmaskFrameInPlace(f)
			if got := int(binary.BigEndian.Uint16(f.Payload)); got != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
			err = <-errc
			if !errors.Is(err, tc.want) || errors.Is(err, io.EOF) != (tc.want == errWSClosed) {
				t.Fatalf("read error %v, want %v", err, tc.want)
			}
			if _, again := c.Read(make([]byte, 8)); again != err {
				t.Fatalf("error not sticky: %v then %v", err, again)
			}
		})
	}
}

// TestWSConnBatch: an outbound batch is one masked binary frame whose
// payload is the batch, the caller's buffers left unmasked.
func TestWSConnBatch(t *testing.T) {
	c, hub := newTestWSConn(t)
	a, b := []byte("LMSG a 2\r\n"), []byte("hi\r\n")
	go func() {
		bufs := net.Buffers{a, b}
		_, _ = transport.ConnSink(c).WriteBuffers(&bufs)
	}()
	f, err := ws.ReadFrame(hub)
	if err != nil || f.Header.OpCode != ws.OpBinary || !f.Header.Masked || !f.Header.Fin {
		t.Fatalf("%+v, %v", f.Header, err)
	}
	if p := ws.UnmaskFrameInPlace(f).Payload; !bytes.Equal(p, []byte("LMSG a 2\r\nhi\r\n")) || string(a) != "LMSG a 2\r\n" {
		t.Fatalf("payload %q, buffers %q %q", p, a, b)
	}
}
