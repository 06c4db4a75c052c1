package websocket_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// env is one broker with NATS, MQTT and WebSocket listeners on free
// loopback ports.
type env struct {
	b    *broker.Broker
	nats *natsproto.Transport
	mqtt *mqtt.Transport
	ws   *websocket.Transport
}

func start(t testing.TB, bo broker.Options, wo websocket.Options) *env {
	t.Helper()
	b, err := broker.New(bo)
	require.NoError(t, err)
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	mt, err := mqtt.New(mqtt.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	wo.Host, wo.NATS, wo.MQTT = "127.0.0.1", nt, mt
	wt, err := websocket.New(wo)
	require.NoError(t, err)
	for _, l := range []interface{ Listen() error }{nt, mt, wt} {
		require.NoError(t, l.Listen())
	}
	require.NoError(t, b.Start(nt, mt, wt))
	e := &env{b: b, nats: nt, mqtt: mt, ws: wt}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

func (e *env) wsURL() string   { return "ws://" + e.ws.Addr().String() }
func (e *env) natsURL() string { return "nats://" + e.nats.Addr().String() }

func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(3 * time.Second), nats.MaxReconnects(0)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// rawResponse is an HTTP response read off a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   string
	conn   net.Conn
	br     *bufio.Reader
}

// upgradeRequest is a valid upgrade request for path with extra header
// lines ("Key: value").
func upgradeRequest(path string, extra ...string) string {
	req := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	return req + "\r\n"
}

// send writes a raw request and reads the response head (and, when not
// 101, the body up to its Content-Length).
func send(t testing.TB, addr, req string) *rawResponse {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	r := &rawResponse{status: resp.StatusCode, header: resp.Header, conn: c, br: br}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		r.body = string(body)
	}
	return r
}

// frame builds a masked client frame.
func frame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

// readFrame reads one unmasked server frame.
func readFrame(t testing.TB, br *bufio.Reader) (op byte, payload []byte) {
	t.Helper()
	h := make([]byte, 2)
	_, err := io.ReadFull(br, h)
	require.NoError(t, err)
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		ext := make([]byte, 2)
		_, err = io.ReadFull(br, ext)
		require.NoError(t, err)
		n = int(ext[0])<<8 | int(ext[1])
	case 127:
		ext := make([]byte, 8)
		_, err = io.ReadFull(br, ext)
		require.NoError(t, err)
		n = 0
		for _, b := range ext {
			n = n<<8 | int(b)
		}
	}
	require.Zero(t, h[1]&0x80, "server frames are not masked")
	payload = make([]byte, n)
	_, err = io.ReadFull(br, payload)
	require.NoError(t, err)
	return h[0] & 0x0F, payload
}

// readUntilClose reads frames until a close frame and returns its code
// and reason, plus the data read before it.
func readUntilClose(t testing.TB, br *bufio.Reader) (code int, reason string, data string) {
	t.Helper()
	var sb strings.Builder
	for {
		op, p := readFrame(t, br)
		if op == 0x8 {
			if len(p) >= 2 {
				return int(p[0])<<8 | int(p[1]), string(p[2:]), sb.String()
			}
			return 1005, "", sb.String()
		}
		sb.Write(p)
	}
}
